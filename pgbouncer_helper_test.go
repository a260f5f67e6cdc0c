package dbfallback

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pgBouncer is a real PgBouncer (Debian's pgbouncer package) that a test
// starts on a free loopback port in front of a PostgreSQL server, as the
// postgres user when the test runs as root (PgBouncer refuses root). It
// authenticates clients with SCRAM from a userlist holding the role's
// password, which it also uses to log in to the server (SCRAM
// passthrough), and stops when the test ends.
type pgBouncer struct {
	tb      testing.TB
	dir     string
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
	watcher *exec.Cmd // see startWatcher
}

// pgBouncerConfig is what a test chooses of PgBouncer's settings.
type pgBouncerConfig struct {
	mode     string // pool_mode: "transaction" or "session"
	poolSize int    // default_pool_size: server connections per user and database
	// upstream is the URL of the server (host, port, role and password are
	// read from it); "" means the shared test server.
	upstream string
	// loginTimeout is client_login_timeout; 0 keeps PgBouncer's 60s.
	loginTimeout time.Duration
	// settings are more "name = value" lines, after (and so overriding)
	// the ones above.
	settings []string
}

// pgBouncerBin finds the pgbouncer binary, or skips when it is missing and
// no test database is configured (.ci/run installs it, so there the test
// runs).
func pgBouncerBin(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if os.Getenv("DBFALLBACK_TEST_DATABASE_URL") != "" {
		tb.Fatal("pgbouncer not found (apt-get install pgbouncer; .ci/run does)")
	}
	tb.Skip("needs PgBouncer (apt-get install pgbouncer; .ci/run does)")
	return ""
}

// startPgBouncer starts PgBouncer with c in front of c.upstream and waits
// until it accepts connections.
func startPgBouncer(tb testing.TB, c pgBouncerConfig) *pgBouncer {
	tb.Helper()
	bin := pgBouncerBin(tb)
	if c.upstream == "" {
		c.upstream = testPostgresURL(tb)
	}
	up, err := Validate(c.upstream)
	require.NoError(tb, err)
	pw, _ := up.Password()
	dir, err := os.MkdirTemp("", "dbfallback-pgbouncer-")
	require.NoError(tb, err)
	tb.Cleanup(func() { os.RemoveAll(dir) })
	b := &pgBouncer{tb: tb, dir: dir, port: freePort(tb), done: make(chan struct{})}
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(quote(up.User)+" "+quote(pw)+"\n"), 0o600))
	settings := []string{
		"listen_addr = 127.0.0.1",
		fmt.Sprintf("listen_port = %d", b.port),
		"unix_socket_dir =",
		"auth_type = scram-sha-256",
		"auth_file = " + filepath.Join(dir, "userlist.txt"),
		"pool_mode = " + c.mode,
		fmt.Sprintf("default_pool_size = %d", c.poolSize),
		"max_client_conn = 500",
		"server_login_retry = 1",
		"logfile = " + filepath.Join(dir, "pgbouncer.log"),
		"pidfile = " + filepath.Join(dir, "pgbouncer.pid"),
	}
	if c.loginTimeout > 0 {
		settings = append(settings, fmt.Sprintf("client_login_timeout = %g", c.loginTimeout.Seconds()))
	}
	settings = append(settings, c.settings...)
	ini := fmt.Sprintf("[databases]\n* = host=%s port=%d\n\n[pgbouncer]\n%s\n",
		up.Hosts[0].Name, up.Hosts[0].Port, strings.Join(settings, "\n"))
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600))
	b.cmd = exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	b.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		require.NoError(tb, err, "running as root needs the postgres user to run PgBouncer")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, f := range []string{dir, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.ini")} {
			require.NoError(tb, os.Chown(f, uid, gid))
		}
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	require.NoError(tb, b.cmd.Start())
	var cred *syscall.Credential
	if b.cmd.SysProcAttr != nil {
		cred = b.cmd.SysProcAttr.Credential
	}
	b.watcher = startWatcher(tb, cred, `kill -INT "$1"; sleep 5; kill -KILL "$1"; rm -rf "$2"`,
		strconv.Itoa(b.cmd.Process.Pid), dir)
	go func() {
		b.cmd.Wait()
		close(b.done)
	}()
	tb.Cleanup(b.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), time.Second)
		if err == nil {
			conn.Close()
			return b
		}
		select {
		case <-b.done:
			tb.Fatalf("pgbouncer exited at start: %s", b.log())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgbouncer does not listen on port %d: %v", b.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends PgBouncer (SIGINT: a safe shutdown), or kills it after 5s.
func (b *pgBouncer) stop() {
	if b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
	stopWatcher(b.watcher)
	b.watcher = nil
}

// url is the upstream URL with PgBouncer's address instead of the
// server's, plus extra query parameters ("" for none).
func (b *pgBouncer) url(tb testing.TB, upstream, extra string) string {
	tb.Helper()
	if upstream == "" {
		upstream = testPostgresURL(tb)
	}
	up, err := Validate(upstream)
	require.NoError(tb, err)
	pw, _ := up.Password()
	u := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", escapeComponent(up.User), escapeComponent(pw), b.port, escapeComponent(up.Database))
	if extra != "" {
		u += "&" + extra
	}
	return u
}

// log returns what PgBouncer logged so far.
func (b *pgBouncer) log() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	return string(out)
}

// addr is PgBouncer's address.
func (b *pgBouncer) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }
