package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dbfallback/dbfallback"
)

const (
	// spacePort is the port a Space's front matter names (app_port).
	spacePort = 7860
	// spaceUID is the user Hugging Face runs a Space's container as.
	spaceUID = 1000
	// spaceID is the Space the checks pretend to be.
	spaceID = "dbfallback-ci/notes"
	// connectTimeout is dbfallback's default connect timeout, which the
	// silent primary must cost.
	connectTimeout = 5 * time.Second
	// stopGrace is how long SIGTERM may take before podman kills.
	stopGrace = 5 * time.Second
	// silentSecret is the password of the silent primary's URL.
	silentSecret = "Imagecheck-S3cret#/"
)

// spaceEnv is what Hugging Face sets in a Space's container (here a Space
// dbfallback-ci/notes on the free CPU tier), as documented under "Helper
// environment variables" in https://huggingface.co/docs/hub/spaces-overview.
// Secrets and variables the owner adds come on top (DATABASE_URL below).
func spaceEnv() []string {
	return []string{
		"SPACE_ID=" + spaceID,
		"SPACE_AUTHOR_NAME=dbfallback-ci",
		"SPACE_REPO_NAME=notes",
		"SPACE_TITLE=dbfallback notes",
		"SPACE_HOST=dbfallback-ci-notes.hf.space",
		"SPACE_CREATOR_USER_ID=000000000000000000000001",
		"CPU_CORES=2",
		"MEMORY=16Gi",
	}
}

// scenario is one run of the image.
type scenario struct {
	name string
	// databaseURL is the DATABASE_URL secret, "" for none; "{silent}"
	// stands for the silent primary's address.
	databaseURL string
	// env holds more variables the Space's owner set (NAME=value).
	env []string
	// ready is what /readyz must report once the database is open.
	ready readiness
	// readyAfter is the least time /readyz may take to answer 200.
	readyAfter time.Duration
	// stopEarly sends SIGTERM while the primary is still being tried.
	stopEarly bool
	// sqliteFile is where the SQLite file must be, inside the container
	// (relative to its working directory), owned by the Space's user and
	// mode 0600; "" when the database is not SQLite.
	sqliteFile string
	// persistentData mounts a directory owned by the Space's user at
	// /data, as persistent storage is on a Space, and checks that a note
	// outlives the container: a second one on the same /data has it.
	persistentData bool
	// baseline copies the server's binary out of the container, to run it
	// outside as the baseline of the figures.
	baseline bool
}

// scenarios lists the runs, in order; pg is a reachable PostgreSQL URL.
func scenarios(pg string) []scenario {
	return []scenario{{
		name:       "sqlite",
		ready:      readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true, target: "data/notes.db"},
		sqliteFile: "data/notes.db",
		baseline:   true,
	}, {
		name:        "postgres",
		databaseURL: pg,
		ready:       readiness{dialect: dbfallback.Postgres},
	}, {
		name:        "silent-primary",
		databaseURL: "postgres://space:" + url.QueryEscape(silentSecret) + "@{silent}/notes",
		// The reason names the Space: its hint about blocked ports.
		ready:      readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true, reason: spaceID},
		readyAfter: connectTimeout,
		sqliteFile: "data/notes.db",
	}, {
		name:        "sigterm-while-opening",
		databaseURL: "postgres://space:" + url.QueryEscape(silentSecret) + "@{silent}/notes",
		stopEarly:   true,
	}, {
		// The Space's README: with persistent storage, set SQLITE_PATH.
		name:           "persistent-storage",
		env:            []string{"SQLITE_PATH=/data/notes.db"},
		ready:          readiness{dialect: dbfallback.SQLite, fallback: true, target: "/data/notes.db"},
		sqliteFile:     "/data/notes.db",
		persistentData: true,
	}}
}

// secretOf returns the password of a database URL, "" when it has none.
func secretOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

// figures are one run's measurements, from the start of `podman run` (or
// of the process, outside a container).
type figures struct {
	runReturned, healthz, readyz, stop time.Duration
	rss                                int64
	// binary is the server's executable copied out of the container.
	binary string
	// kept is a note left for the next container on the same /data.
	kept note
}

func (f figures) String() string {
	s := fmt.Sprintf("/healthz 200 at %s", secs(f.healthz))
	if f.runReturned > 0 {
		s = fmt.Sprintf("podman run returned %s, ", secs(f.runReturned)) + s
	}
	if f.readyz > 0 {
		s += fmt.Sprintf(", /readyz 200 at %s", secs(f.readyz))
	}
	if f.rss > 0 {
		s += fmt.Sprintf(", idle RSS %.1f MB", float64(f.rss)/(1<<20))
	}
	return s + fmt.Sprintf(", SIGTERM to exit 0 in %s", secs(f.stop))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// portFree reports an error when something listens on port: the checks
// would talk to it instead of the server they started.
func portFree(port int) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return fmt.Errorf("port %d must be free: %w", port, err)
	}
	return ln.Close()
}

// runScenario starts the image, checks it, stops it and removes it. dir
// receives the server's binary when the scenario asks for a baseline.
func runScenario(ctx context.Context, p podman, image, dir string, sc scenario) (figures, error) {
	var fig figures
	if err := portFree(spacePort); err != nil {
		return fig, err
	}
	env := spaceEnv()
	dbURL := sc.databaseURL
	var silent *silentServer
	if strings.Contains(dbURL, "{silent}") {
		var err error
		if silent, err = listenSilent(); err != nil {
			return fig, err
		}
		defer silent.close()
		dbURL = strings.ReplaceAll(dbURL, "{silent}", fmt.Sprintf("127.0.0.1:%d", silent.port()))
	}
	if dbURL != "" {
		env = append(env, "DATABASE_URL="+dbURL)
	}
	env = append(env, sc.env...)
	var extra []string
	if sc.persistentData {
		data, err := os.MkdirTemp(dir, "data-")
		if err == nil {
			err = os.Chmod(data, 0o755)
		}
		if err == nil {
			err = os.Chown(data, spaceUID, spaceUID)
		}
		if err != nil {
			return fig, err
		}
		extra = []string{"--volume", data + ":/data"}
	}
	name := fmt.Sprintf("imagecheck-%s-%d", sc.name, os.Getpid())
	c, err := p.start(ctx, name, image, env, extra...)
	if err != nil {
		return fig, err
	}
	defer p.remove(name)
	fig.runReturned = c.runReturned
	err = check(ctx, c, image, dir, sc, env, silent, &fig)
	if err = withLogs(ctx, c, dbURL, err); err != nil {
		return fig, err
	}
	if sc.persistentData {
		// A restarted Space is a new container on the same /data.
		again := name + "-restarted"
		c, err := p.start(ctx, again, image, env, extra...)
		if err != nil {
			return fig, err
		}
		defer p.remove(again)
		err = checkKept(ctx, c, fig.kept)
		if err == nil {
			var second figures
			err = stop(ctx, c, &second)
		}
		return fig, withLogs(ctx, c, dbURL, err)
	}
	return fig, nil
}

// withLogs reads the container's logs and checks that they do not hold
// the password of dbURL. When err or that check fails, it returns the
// error with the end of the logs.
func withLogs(ctx context.Context, c *container, dbURL string, err error) error {
	logs, lerr := c.logs(ctx)
	if lerr == nil {
		lerr = leaks(secretOf(dbURL), map[string][]byte{"the container's logs": []byte(logs)})
	}
	if err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("%w\ncontainer logs:\n%s", err, tail(logs, 20))
	}
	return nil
}

// checkKept waits until a restarted container is ready and checks that it
// has the note its predecessor kept.
func checkKept(ctx context.Context, c *container, kept note) error {
	srv := newServer(fmt.Sprintf("http://127.0.0.1:%d", spacePort))
	defer srv.close()
	if _, _, err := srv.waitFor(ctx, "/readyz", 200, c.started, 15*time.Second, nil); err != nil {
		return fmt.Errorf("after a restart: %w", err)
	}
	if err := srv.has(ctx, kept); err != nil {
		return fmt.Errorf("after a restart on the same /data: %w", err)
	}
	return nil
}

// check runs a scenario's checks against a started container.
func check(ctx context.Context, c *container, image, dir string, sc scenario, env []string, silent *silentServer, fig *figures) error {
	srv := newServer(fmt.Sprintf("http://127.0.0.1:%d", spacePort))
	defer srv.close()
	running := func() error {
		st, err := c.inspect(ctx, "{{.State.Status}}")
		if err == nil && st != "running" {
			err = fmt.Errorf("container %s", st)
		}
		return err
	}
	var err error
	if fig.healthz, _, err = srv.waitFor(ctx, "/healthz", 200, c.started, 10*time.Second, running); err != nil {
		return err
	}
	if sc.readyAfter > 0 || sc.stopEarly {
		// Liveness does not wait for the database.
		if code, body, err := srv.do(ctx, "GET", "/readyz", nil); err != nil || code != 503 {
			return fmt.Errorf("/readyz while the primary hangs: %d %s %v, want 503", code, body, err)
		}
	}
	if sc.stopEarly {
		for deadline := time.Now().Add(3 * time.Second); silent.accepted.Load() == 0; {
			if time.Now().After(deadline) {
				return errors.New("the container never connected to the silent primary")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return stop(ctx, c, fig)
	}

	_, body, err := srv.waitFor(ctx, "/readyz", 200, c.started, sc.readyAfter+15*time.Second, running)
	if err != nil {
		return err
	}
	fig.readyz = time.Since(c.started)
	if fig.readyz < sc.readyAfter {
		return fmt.Errorf("/readyz answered 200 after %s, before the connect timeout (%s) could pass", secs(fig.readyz), sc.readyAfter)
	}
	if _, err := checkReady(body, sc.ready); err != nil {
		return err
	}
	if silent != nil && silent.accepted.Load() == 0 {
		return errors.New("the container never connected to the silent primary: the fallback was not for the hang")
	}
	pid, err := c.pid(ctx)
	if err != nil {
		return err
	}
	// Idle RSS one second after ready, as the loadtest measures it.
	time.Sleep(time.Second)
	st, err := readStatus(pid)
	if err != nil {
		return err
	}
	fig.rss = st.rss
	if err := checkUser(st, spaceUID); err != nil {
		return err
	}
	if err := checkProcess(ctx, c, image, pid, env); err != nil {
		return err
	}
	if sc.baseline {
		if fig.binary, err = copyBinary(pid, dir); err != nil {
			return err
		}
	}

	seen, err := srv.roundTrip(ctx)
	if err != nil {
		return err
	}
	page, err := srv.page(ctx)
	if err != nil {
		return err
	}
	if sc.sqliteFile != "" {
		path := sc.sqliteFile
		if !filepath.IsAbs(path) {
			wd, err := c.inspect(ctx, "{{.Config.WorkingDir}}")
			if err != nil {
				return err
			}
			path = filepath.Join(wd, path)
		}
		// The container's filesystem, mounts included, seen through its
		// process.
		if err := checkOwnFile(filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path), spaceUID); err != nil {
			return fmt.Errorf("the SQLite file: %w", err)
		}
	}
	if sc.persistentData {
		if fig.kept, err = srv.create(ctx, "kept across restarts", "written before SIGTERM"); err != nil {
			return err
		}
	}
	var dbURL string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			dbURL = v
		}
	}
	if err := leaks(secretOf(dbURL), map[string][]byte{"/readyz": body, "the status page": page, "the API's answers": seen}); err != nil {
		return err
	}
	return stop(ctx, c, fig)
}

// checkProcess checks that the container's process is the server, with
// the environment a Space gives it and nothing else.
func checkProcess(ctx context.Context, c *container, image string, pid int, env []string) error {
	st, err := readStatus(pid)
	if err != nil {
		return err
	}
	if st.name != "hfspace" {
		return fmt.Errorf("the container's process is %q, want hfspace", st.name)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return err
	}
	imageEnv, err := c.p.cmd(ctx, "image", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", image)
	if err != nil {
		return err
	}
	// The image's own ENV lines, and what podman adds to every container.
	allowed := []string{"container", "HOSTNAME"}
	for line := range strings.SplitSeq(imageEnv, "\n") {
		if k, _, ok := strings.Cut(line, "="); ok {
			allowed = append(allowed, k)
		}
	}
	return checkEnviron(environ, env, allowed)
}

// stop sends SIGTERM and checks that the server exits 0 within stopGrace.
func stop(ctx context.Context, c *container, fig *figures) error {
	// podman stop sends the image's stop signal; a Space sends SIGTERM.
	if sig, err := c.inspect(ctx, "{{.Config.StopSignal}}"); err != nil || (sig != "15" && sig != "SIGTERM") {
		return fmt.Errorf("the container's stop signal is %q (%v), want SIGTERM", sig, err)
	}
	took, code, err := c.stop(ctx, stopGrace)
	if err != nil {
		return err
	}
	fig.stop = took
	if code != 0 || took >= stopGrace {
		return fmt.Errorf("SIGTERM: exit %d after %s, want exit 0 within %s", code, secs(took), stopGrace)
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
