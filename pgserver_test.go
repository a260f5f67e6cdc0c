package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pgServer is a throwaway PostgreSQL instance for tests that need a server
// to die: initdb into a temporary directory, pg_ctl on a free loopback
// port, run as the postgres user when the test runs as root.
type pgServer struct {
	tb       testing.TB
	bin      string
	dataDir  string
	sockDir  string
	port     int
	cred     *syscall.Credential
	maxConns int
	settings []string // more -c name=value server settings (see pgpair_test.go)
}

// pgBinDir finds the newest PostgreSQL server binaries.
func pgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// pgServerBin returns the server binaries' directory, or skips when
// PostgreSQL is not installed and no test database is configured (CI
// installs it, so there the test runs).
func pgServerBin(tb testing.TB) string {
	tb.Helper()
	bin := pgBinDir()
	if bin == "" {
		if os.Getenv("DBFALLBACK_TEST_DATABASE_URL") != "" {
			tb.Fatal("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
		}
		tb.Skip("needs PostgreSQL server binaries (apt-get install postgresql; .ci/run does)")
	}
	return bin
}

// newPGServer makes the temporary directory of a server on a free port,
// owned by the postgres user when the test runs as root; nothing is in it
// yet.
func newPGServer(tb testing.TB, bin string) *pgServer {
	tb.Helper()
	base, err := os.MkdirTemp("", "dbfallback-pg-")
	require.NoError(tb, err)
	s := &pgServer{tb: tb, bin: bin, dataDir: filepath.Join(base, "data"), sockDir: base, port: freePort(tb), maxConns: 20}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		require.NoError(tb, err, "running as root needs the postgres user to own the server")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(tb, os.Chown(base, uid, gid))
	}
	watcher := startWatcher(tb, s.cred, `[ -f "$2/postmaster.pid" ] && "$1" -D "$2" -m immediate -w stop; rm -rf "$3"`,
		filepath.Join(s.bin, "pg_ctl"), s.dataDir, base)
	tb.Cleanup(func() { // after the server's own cleanup (stop), registered later
		stopWatcher(watcher)
		os.RemoveAll(base)
	})
	return s
}

// startPGServer starts a throwaway server, or skips when PostgreSQL is not
// installed and no test database is configured (CI installs it, so there
// the test runs).
func startPGServer(tb testing.TB) *pgServer {
	tb.Helper()
	s := newPGServer(tb, pgServerBin(tb))
	s.run("initdb", "-D", s.dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	s.start()
	tb.Cleanup(func() { s.stop("immediate") })
	return s
}

func (s *pgServer) run(name string, args ...string) {
	s.tb.Helper()
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = s.sockDir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	require.NoErrorf(s.tb, err, "%s %v: %s", name, args, out)
}

// start starts the server and waits until it accepts connections.
func (s *pgServer) start() {
	s.tb.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=%d -c superuser_reserved_connections=1",
		s.port, s.sockDir, s.maxConns)
	for _, kv := range s.settings {
		opts += " -c " + kv
	}
	s.run("pg_ctl", "-D", s.dataDir, "-o", opts, "-l", filepath.Join(s.sockDir, "log"), "-w", "-t", "30", "start")
}

// stop stops the server: "immediate" is a crash as far as clients can tell.
func (s *pgServer) stop(mode string) {
	cmd := exec.Command(filepath.Join(s.bin, "pg_ctl"), "-D", s.dataDir, "-m", mode, "-w", "stop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Run()
}

// startWatcher starts a shell, as cred, that waits for this test process
// to end and then runs script with args as $1, $2, …: the cleanup of a
// server or a pooler for when the process dies without running its own
// (killed, or a -timeout panic), which would leave the server running on
// its port and its files in the temporary directory. It has its own
// process group, so a terminal's ^C reaches it only through that death.
// stopWatcher ends it once the test has cleaned up itself.
func startWatcher(tb testing.TB, cred *syscall.Credential, script string, args ...string) *exec.Cmd {
	tb.Helper()
	loop := `while [ -d /proc/$0 ]; do sleep 1; done; ` + script
	cmd := exec.Command("/bin/sh", append([]string{"-c", loop, strconv.Itoa(os.Getpid())}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	require.NoError(tb, cmd.Start())
	return cmd
}

// stopWatcher kills a watcher (and its sleep) and reaps it; nil is a
// no-op.
func stopWatcher(cmd *exec.Cmd) {
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

// url is the server's URL for the postgres superuser.
func (s *pgServer) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// freePort returns a loopback TCP port nobody listens on (now).
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// silentListener accepts connections on loopback and never answers: a hung
// server.
func silentListener(tb testing.TB) int {
	tb.Helper()
	return silentListenerOn(tb, 0)
}

// silentListenerOn is silentListener on a given port (0: any free one),
// such as the port of a server that was just stopped.
func silentListenerOn(tb testing.TB, port int) int {
	tb.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(tb, err)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// exec runs SQL on the server as the superuser.
func (s *pgServer) exec(query string) {
	s.tb.Helper()
	db, err := sql.Open("pgx", s.url())
	require.NoError(s.tb, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, query)
	require.NoError(s.tb, err)
}

// restart stops the server and starts it again with maxConns connections.
func (s *pgServer) restart(maxConns int) {
	s.tb.Helper()
	s.stop("fast")
	s.maxConns = maxConns
	s.start()
}
