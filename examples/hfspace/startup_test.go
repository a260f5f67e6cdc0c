package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file run the server as a Space does (see space_test.go)
// through the startup faults of issue 10: a caller's deadline against a
// silent primary, a FIFO at SQLITE_PATH, SIGTERM while the database is
// still opening, and notes left in SQLite when PostgreSQL returns.

// silentPrimary listens on loopback, accepts and never answers.
func silentPrimary(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// TestSpaceOpenDeadline: with DB_OPEN_TIMEOUT=2s and a primary that
// accepts and stays silent (connect_timeout=30), the Space is ready on
// SQLite within the deadline, by the first Open (the reason says the
// primary's share ran out), not by the app's retry.
func TestSpaceOpenDeadline(t *testing.T) {
	tmpDB(t)
	primary := fmt.Sprintf("DATABASE_URL=postgres://app:Hunter22@127.0.0.1:%d/app?connect_timeout=30", silentPrimary(t))
	s := startSpace(t, freePort(t), primary, "DB_OPEN_TIMEOUT=2s")
	readyAt, body := s.waitStatus("/readyz", 200, 10*time.Second)
	assert.Less(t, readyAt, 2500*time.Millisecond, "ready within the deadline (plus the process start)")
	ready := readyJSON(t, body)
	assert.Equal(t, "sqlite", ready["dialect"])
	assert.Contains(t, ready["reason"], "not kept for the fallback")
	assert.NotContains(t, s.logs.String(), "did not open within DB_OPEN_TIMEOUT")
	code, created := s.do("POST", "/api/notes", `{"title":"in time"}`)
	assert.Equal(t, 201, code, created)
	assert.NotContains(t, s.logs.String(), "Hunter22")
	exit, took := s.stop()
	assert.Equal(t, 0, exit)
	assert.Less(t, took, 5*time.Second)
}

// TestSpaceOpenDeadlineMissed: a DB_OPEN_TIMEOUT too short for anything
// (1 ms) does not leave the Space unready: it opens SQLite without the
// deadline and says so.
func TestSpaceOpenDeadlineMissed(t *testing.T) {
	tmpDB(t)
	primary := fmt.Sprintf("DATABASE_URL=postgres://app:Hunter22@127.0.0.1:%d/app?connect_timeout=30", silentPrimary(t))
	s := startSpace(t, freePort(t), primary, "DB_OPEN_TIMEOUT=1ms")
	_, body := s.waitStatus("/readyz", 200, 10*time.Second)
	assert.Equal(t, "sqlite", readyJSON(t, body)["dialect"])
	assert.Contains(t, s.logs.String(), "did not open within DB_OPEN_TIMEOUT")
	exit, _ := s.stop()
	assert.Equal(t, 0, exit)
}

// TestSpaceSIGTERMWhileOpening: SIGTERM while the database is still
// opening (a silent primary with connect_timeout=30, and a FIFO at
// SQLITE_PATH) ends the process within five seconds.
func TestSpaceSIGTERMWhileOpening(t *testing.T) {
	tmpDB(t)
	dir := spaceDir(t, true)
	fifo := filepath.Join(dir, "notes.db")
	require.NoError(t, syscall.Mkfifo(fifo, 0o666))
	primary := fmt.Sprintf("DATABASE_URL=postgres://app:Hunter22@127.0.0.1:%d/app?connect_timeout=30", silentPrimary(t))
	s := startSpace(t, freePort(t), primary, "SQLITE_PATH="+fifo)
	s.waitStatus("/healthz", 200, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	code, _ := s.do("GET", "/readyz", "")
	require.Equal(t, 503, code, "still opening")
	exit, took := s.stop()
	assert.Equal(t, 0, exit)
	assert.Less(t, took, 5*time.Second)
	assert.Contains(t, s.logs.String(), "hfspace: stopped")
}

// TestSpaceFIFOAtSQLitePath: a named pipe at SQLITE_PATH is never opened
// (an earlier version blocked on it forever, answering 503 and ignoring
// SIGTERM); the Space is ready on the next location with the reason.
func TestSpaceFIFOAtSQLitePath(t *testing.T) {
	tmpDB(t)
	dir := spaceDir(t, true)
	fifo := filepath.Join(dir, "notes.db")
	require.NoError(t, syscall.Mkfifo(fifo, 0o666))
	s := startSpace(t, freePort(t), "SQLITE_PATH="+fifo)
	readyAt, body := s.waitStatus("/readyz", 200, 5*time.Second)
	assert.Less(t, readyAt, time.Second)
	ready := readyJSON(t, body)
	assert.Equal(t, "sqlite", ready["dialect"])
	assert.NotContains(t, ready["target"], fifo)
	assert.Contains(t, ready["reason"], "named pipe (FIFO)")
	st, err := os.Stat(fifo)
	require.NoError(t, err)
	assert.NotZero(t, st.Mode()&os.ModeNamedPipe, "left as it was")
	exit, took := s.stop()
	assert.Equal(t, 0, exit)
	assert.Less(t, took, 5*time.Second)
}

// TestSpaceStrandedNotes follows issue 10's story: PostgreSQL is down,
// the Space runs on a persistent SQLITE_PATH and takes three notes;
// PostgreSQL returns; after a restart the Space is on PostgreSQL and says
// where the notes are (readyz, the page, the log). The README's merge
// example, run as written, moves them into PostgreSQL, and
// DBFALLBACK_MERGED stops the report.
func TestSpaceStrandedNotes(t *testing.T) {
	pgURL := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if pgURL == "" {
		t.Skip("needs PostgreSQL: set DBFALLBACK_TEST_DATABASE_URL (.ci/run starts a server and sets it)")
	}
	for _, tool := range []string{"sqlite3", "psql", "bash"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the README's merge example needs %s (.ci/run installs it)", tool)
	}
	u, err := url.Parse(pgURL)
	require.NoError(t, err)
	realAddr := u.Host
	port := freePort(t)
	u.Host = fmt.Sprintf("127.0.0.1:%d", port)
	proxied := u.String()
	dir := spaceDir(t, true)
	sqlitePath := filepath.Join(dir, "notes.db")
	env := []string{"DATABASE_URL=" + proxied, "SQLITE_PATH=" + sqlitePath}
	marker := fmt.Sprintf("stranded-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		db, err := dbfallback.Open(context.Background(), dbfallback.WithURL(pgURL), dbfallback.WithStrategy(dbfallback.PrimaryOnly),
			dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }))
		if err == nil {
			db.Exec("DELETE FROM notes WHERE title LIKE $1", marker+"%")
			db.Close()
		}
	})

	// PostgreSQL is down (nothing listens on the port): SQLite takes notes.
	s := startSpace(t, freePort(t), env...)
	_, body := s.waitStatus("/readyz", 200, 10*time.Second)
	require.Equal(t, "sqlite", readyJSON(t, body)["dialect"])
	notes := []struct{ title, body string }{
		{marker + " one", "plain"},
		{marker + " two", "a comma, a \"quote\" and a 'single' one"},
		{marker + " three", ""},
		{marker + " four", "two\nlines"},
	}
	for _, n := range notes[:3] {
		code, resp := s.do("POST", "/api/notes", fmt.Sprintf(`{"title":%q,"body":%q}`, n.title, n.body))
		require.Equal(t, 201, code, resp)
	}
	code, resp := s.do("POST", "/api/notes", `{"title":"`+notes[3].title+`","body":"two\nlines"}`)
	require.Equal(t, 201, code, resp)
	exit, took := s.stop()
	require.Equal(t, 0, exit)
	assert.Less(t, took, 5*time.Second)

	// PostgreSQL returns; the Space restarts on it and reports the notes.
	startProxy(t, port, realAddr)
	s = startSpace(t, freePort(t), env...)
	_, body = s.waitStatus("/readyz", 200, 10*time.Second)
	ready := readyJSON(t, body)
	require.Equal(t, "postgres", ready["dialect"], body)
	assert.Equal(t, false, ready["fallback"])
	assert.Contains(t, ready["reason"], "holds 4 rows written while the primary was not in use (notes: 4)")
	stranded, ok := ready["stranded"].([]any)
	require.True(t, ok && len(stranded) == 1, body)
	entry := stranded[0].(map[string]any)
	assert.Equal(t, sqlitePath, entry["path"])
	assert.Equal(t, float64(4), entry["rows"])
	assert.Equal(t, []any{map[string]any{"name": "notes", "rows": float64(4), "after_rowid": float64(0)}}, entry["tables"])
	_, page := s.do("GET", "/", "")
	assert.Contains(t, page, "holds 4 rows")
	assert.Contains(t, s.logs.String(), "a fallback file holds rows written while the primary was not in use")
	assert.NotContains(t, body+page+s.logs.String(), "ci#Pw@dbf/1")
	exit, _ = s.stop()
	require.Equal(t, 0, exit)

	// The README's example, run as written.
	runMergeExample(t, sqlitePath, 0, pgURL)
	since := entry["since"].(string)
	s = startSpace(t, freePort(t), append(env, "DBFALLBACK_MERGED="+sqlitePath+"@"+since)...)
	_, body = s.waitStatus("/readyz", 200, 10*time.Second)
	ready = readyJSON(t, body)
	assert.Equal(t, "postgres", ready["dialect"])
	assert.Nil(t, ready["stranded"], "merged: the report stops")
	assert.NotContains(t, fmt.Sprint(ready["reason"]), "holds")
	assert.Contains(t, s.logs.String(), "marked merged")
	_, list := s.do("GET", "/api/notes?limit=200", "")
	for _, n := range notes {
		assert.Contains(t, list, fmt.Sprintf(`"title":%q,"body":%q`, n.title, n.body), "merged into PostgreSQL as it was")
	}
	exit, _ = s.stop()
	assert.Equal(t, 0, exit)
}

// runMergeExample runs the shell block that follows <!-- merge-example -->
// in the repository's README, with FILE, AFTER and DATABASE_URL set by the
// test (their example assignments and the doctor line are left out).
func runMergeExample(t *testing.T, file string, after int, databaseURL string) {
	t.Helper()
	f, err := os.Open("../../README.md")
	require.NoError(t, err)
	defer f.Close()
	var script []string
	state := 0 // 0 before the marker, 1 before the fence, 2 inside
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == "<!-- merge-example -->":
			state = 1
		case state == 1 && line == "```sh":
			state = 2
		case state == 2 && line == "```":
			state = 3
		case state == 2 && !strings.HasPrefix(line, "FILE=") && !strings.HasPrefix(line, "AFTER=") && !strings.HasPrefix(line, "go run"):
			script = append(script, line)
		}
	}
	require.Equal(t, 3, state, "the README has the merge example")
	work := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "FILE="+file, fmt.Sprintf("AFTER=%d", after), "DATABASE_URL="+databaseURL)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the README's merge example failed:\n%s\n%s", strings.Join(script, "\n"), out)
}

// startProxy forwards loopback connections on port to addr until the test
// ends.
func startProxy(t *testing.T, port int, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
}
