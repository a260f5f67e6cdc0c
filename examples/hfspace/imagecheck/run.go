package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

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
