package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The tests in this file run the built server the way a Space does: as uid
// 1000 (when the test runs as root), in a working directory that user
// cannot write, with an environment of PATH and HOME only (plus what each
// test adds).

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// spaceUID is the user a Space runs its container as.
const spaceUID = 1000

// serverBinary builds the server once per test run into a directory every
// user can read.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hfspace-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		binPath = filepath.Join(dir, "hfspace")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// TestMain removes the built server and fails the run if a goroutine is
// left behind (idle HTTP client connections aside).
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// spaceDir makes a directory for the server: read-only for it (owned by
// root, or mode 0555 when the test is not root) unless writable.
func spaceDir(t *testing.T, writable bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hfspace-dir-")
	require.NoError(t, err)
	t.Cleanup(func() {
		os.Chmod(dir, 0o755)
		os.RemoveAll(dir)
	})
	switch {
	case writable && os.Geteuid() == 0:
		require.NoError(t, os.Chown(dir, spaceUID, spaceUID))
		require.NoError(t, os.Chmod(dir, 0o755))
	case writable:
		require.NoError(t, os.Chmod(dir, 0o755))
	case os.Geteuid() == 0:
		require.NoError(t, os.Chmod(dir, 0o755))
	default:
		require.NoError(t, os.Chmod(dir, 0o555))
	}
	return dir
}

// space is a running server process.
type space struct {
	t       *testing.T
	cmd     *exec.Cmd
	port    int
	started time.Time
	logs    *lockedBuffer
	exited  chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSpace runs the server with PATH, HOME and extra variables; port 0
// means the default (no PORT variable).
func startSpace(t *testing.T, port int, extra ...string) *space {
	t.Helper()
	bin := serverBinary(t)
	home := spaceDir(t, true)
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home}, extra...)
	if port != 0 {
		env = append(env, "PORT="+strconv.Itoa(port))
	} else {
		port = 7860
	}
	cmd := exec.Command(bin)
	cmd.Dir = spaceDir(t, false)
	cmd.Env = env
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: spaceUID, Gid: spaceUID}}
	}
	s := &space{t: t, cmd: cmd, port: port, logs: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	s.started = time.Now()
	require.NoError(t, cmd.Start())
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *space) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path) }

// get returns status and body; status 0 when the server does not answer.
func (s *space) do(method, path, body string) (int, string) {
	req, _ := http.NewRequest(method, s.url(path), strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls path until it answers want, and returns how long after
// the process start that was.
func (s *space) waitStatus(path string, want int, within time.Duration) (time.Duration, string) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := s.do("GET", path, "")
		if code == want {
			return time.Since(s.started), body
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not answer %d within %s (last: %d %s)", path, want, within, code, body)
		}
		select {
		case err := <-s.exited:
			s.t.Fatalf("the server exited: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and returns the exit code and how long the exit took.
func (s *space) stop() (int, time.Duration) {
	s.t.Helper()
	start := time.Now()
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Fatal("the server ignored SIGTERM for 10s")
	}
	return s.cmd.ProcessState.ExitCode(), time.Since(start)
}

func readyJSON(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	return m
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tmpDB reports the SQLite file a server lands on when its working
// directory is read-only and TMPDIR is unset, and removes it after the test
// unless it was there before.
func tmpDB(t *testing.T) {
	t.Helper()
	const path = "/tmp/notes.db"
	if _, err := os.Stat(path); err == nil {
		return
	}
	t.Cleanup(func() {
		for _, p := range []string{path, path + "-wal", path + "-shm", path + ".dbfallback.json"} {
			os.Remove(p)
		}
	})
}

func TestSpaceWithoutConfiguration(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:7860")
	require.NoError(t, err, "this test runs the server on the Space port, 7860, which must be free")
	l.Close()
	tmpDB(t)

	s := startSpace(t, 0)
	healthy, _ := s.waitStatus("/healthz", 200, 5*time.Second)
	assert.Less(t, healthy, time.Second, "/healthz answers within a second of the start")
	_, body := s.waitStatus("/readyz", 200, 10*time.Second)
	ready := readyJSON(t, body)
	assert.Equal(t, "sqlite", ready["dialect"])
	assert.Equal(t, true, ready["fallback"])
	assert.Equal(t, true, ready["ephemeral"])
	assert.NotEqual(t, "file:data/notes.db", ready["target"], "the working directory is read-only for the server")

	code, body := s.do("POST", "/api/notes", `{"title":"space note","body":"created as uid 1000"}`)
	require.Equal(t, 201, code, body)
	var created map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	id := strconv.Itoa(int(created["id"].(float64)))
	code, body = s.do("GET", "/api/notes/"+id, "")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "created as uid 1000")
	code, body = s.do("PUT", "/api/notes/"+id, `{"title":"space note","body":"updated"}`)
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `"body":"updated"`)
	code, _ = s.do("DELETE", "/api/notes/"+id, "")
	assert.Equal(t, 204, code)
	code, _ = s.do("GET", "/api/notes/"+id, "")
	assert.Equal(t, 404, code)
	code, body = s.do("HEAD", "/", "")
	assert.Equal(t, 200, code)
	assert.Empty(t, body)

	exit, took := s.stop()
	assert.Equal(t, 0, exit)
	assert.Less(t, took, 5*time.Second)
	assert.Contains(t, s.logs.String(), "hfspace: stopped")
}

func TestSpaceWithPostgres(t *testing.T) {
	url := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("needs PostgreSQL: set DBFALLBACK_TEST_DATABASE_URL (.ci/run starts a server and sets it)")
	}
	s := startSpace(t, freePort(t), "DATABASE_URL="+url)
	_, body := s.waitStatus("/readyz", 200, 10*time.Second)
	ready := readyJSON(t, body)
	assert.Equal(t, "postgres", ready["dialect"])
	assert.Equal(t, false, ready["fallback"])
	code, body := s.do("POST", "/api/notes", `{"title":"in postgres"}`)
	assert.Equal(t, 201, code, body)
	exit, _ := s.stop()
	assert.Equal(t, 0, exit)
	assert.NotContains(t, s.logs.String(), "ci#Pw")
}

func TestSpaceWithSilentPrimary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tmpDB(t)
	port := l.Addr().(*net.TCPAddr).Port
	s := startSpace(t, freePort(t), fmt.Sprintf("DATABASE_URL=postgres://app:Hunter22@127.0.0.1:%d/app?connect_timeout=2", port))
	healthy, _ := s.waitStatus("/healthz", 200, 5*time.Second)
	assert.Less(t, healthy, time.Second, "/healthz answers at once while the primary hangs")
	code, _ := s.do("GET", "/readyz", "")
	assert.Equal(t, 503, code, "not ready while the primary is tried")
	code, body := s.do("GET", "/api/notes", "")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, `"starting"`)
	readyAt, body := s.waitStatus("/readyz", 200, 10*time.Second)
	assert.GreaterOrEqual(t, readyAt, 2*time.Second, "ready after the connect timeout")
	ready := readyJSON(t, body)
	assert.Equal(t, "sqlite", ready["dialect"])
	assert.Contains(t, ready["reason"], "connect timeout")
	_, page := s.do("GET", "/", "")
	for _, text := range []string{body, page, s.logs.String()} {
		assert.NotContains(t, text, "Hunter22")
	}
	exit, _ := s.stop()
	assert.Equal(t, 0, exit)
}

func TestSpaceRestartKeepsRows(t *testing.T) {
	dir := spaceDir(t, true)
	env := "SQLITE_PATH=" + filepath.Join(dir, "notes.db")
	port := freePort(t)
	s := startSpace(t, port, env)
	_, body := s.waitStatus("/readyz", 200, 10*time.Second)
	assert.Equal(t, false, readyJSON(t, body)["ephemeral"], "an explicit SQLITE_PATH is persistent")
	var titles []string
	for i := range 3 {
		title := fmt.Sprintf("survives restart %d", i)
		code, body := s.do("POST", "/api/notes", `{"title":"`+title+`"}`)
		require.Equal(t, 201, code, body)
		titles = append(titles, title)
	}
	exit, _ := s.stop()
	require.Equal(t, 0, exit)

	s = startSpace(t, port, env)
	s.waitStatus("/readyz", 200, 10*time.Second)
	code, body := s.do("GET", "/api/notes", "")
	require.Equal(t, 200, code)
	for _, title := range titles {
		assert.Contains(t, body, title)
	}
	exit, _ = s.stop()
	assert.Equal(t, 0, exit)
}

// TestSpaceDrainsOnSIGTERM: SIGTERM under load ends the process cleanly.
func TestSpaceDrainsOnSIGTERM(t *testing.T) {
	dir := spaceDir(t, true)
	s := startSpace(t, freePort(t), "SQLITE_PATH="+filepath.Join(dir, "notes.db"))
	s.waitStatus("/readyz", 200, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var ok, failed int
	var mu sync.Mutex
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, _ := s.do("POST", "/api/notes", `{"title":"load"}`)
				mu.Lock()
				if code == 201 {
					ok++
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	exit, took := s.stop()
	cancel()
	wg.Wait()
	assert.Equal(t, 0, exit)
	assert.Less(t, took, 5*time.Second)
	assert.Positive(t, ok)
	assert.Contains(t, s.logs.String(), "hfspace: stopped")
}
