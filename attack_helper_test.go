package dbfallback

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// attack_helper_test.go opens the databases the attack tests
// (attack_tx_test.go, attack_session_test.go) run on, the way a new user
// would: through Open, with nothing from the environment but the test
// server's URL.

// atkDialect is one database the attacks run on.
type atkDialect struct {
	name string
	open func(t *testing.T, pool PoolConfig) *DB
}

// atkDialects are the two databases, PostgreSQL first. The PostgreSQL
// entry skips (a failure in CI) without DBFALLBACK_TEST_DATABASE_URL.
func atkDialects() []atkDialect {
	return []atkDialect{
		{name: "postgres", open: atkOpenPG},
		{name: "sqlite", open: func(t *testing.T, pool PoolConfig) *DB { return atkOpenSQLite(t, 0, pool) }},
	}
}

func atkNoEnv(string) (string, bool) { return "", false }

// atkOpenPG opens the test PostgreSQL server, PrimaryOnly, and closes it
// at the end of the test.
func atkOpenPG(t *testing.T, pool PoolConfig) *DB {
	t.Helper()
	return atkOpenPGWith(t, pool, "")
}

// atkOpenPGWith adds query parameters (a=b&c=d) to the server's URL.
func atkOpenPGWith(t *testing.T, pool PoolConfig, params string) *DB {
	t.Helper()
	u := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("DBFALLBACK_TEST_DATABASE_URL is not set")
	}
	if params != "" {
		if strings.Contains(u, "?") {
			u += "&" + params
		} else {
			u += "?" + params
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := Open(ctx, WithURL(u), WithLookupEnv(atkNoEnv), WithStrategy(PrimaryOnly), WithPool(pool))
	require.NoError(t, err)
	require.Equal(t, Postgres, db.Dialect())
	t.Cleanup(func() { db.Close() })
	return db
}

// atkOpenSQLite opens a SQLite file in t.TempDir(); busy sets the URL's
// _busy_timeout (0: the library's default).
func atkOpenSQLite(t *testing.T, busy time.Duration, pool PoolConfig) *DB {
	t.Helper()
	db, _ := atkOpenSQLitePath(t, filepath.Join(t.TempDir(), "atk.db"), busy, pool)
	return db
}

func atkOpenSQLitePath(t *testing.T, path string, busy time.Duration, pool PoolConfig) (*DB, string) {
	t.Helper()
	u := "sqlite:///" + path
	if busy > 0 {
		u += fmt.Sprintf("?_busy_timeout=%d", busy.Milliseconds())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := Open(ctx, WithURL(u), WithLookupEnv(atkNoEnv), WithPool(pool))
	require.NoError(t, err)
	require.Equal(t, SQLite, db.Dialect())
	t.Cleanup(func() { db.Close() })
	return db, path
}

var atkTables atomic.Int64

// atkCounter creates a fresh one-row counter table (id 1, n 0) and returns
// its name; it is dropped at the end of the test.
func atkCounter(t *testing.T, db *DB) string {
	t.Helper()
	name := fmt.Sprintf("atk_%d_%d", os.Getpid(), atkTables.Add(1))
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "CREATE TABLE "+name+" (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "INSERT INTO "+name+" (id, n) VALUES (1, 0)")
	require.NoError(t, err)
	t.Cleanup(func() {
		// Bounded: a test that broke may have left a transaction open.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP TABLE "+name)
	})
	return name
}

// atkCount reads the counter.
func atkCount(t *testing.T, db *DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRowContext(context.Background(), "SELECT n FROM "+table+" WHERE id = 1").Scan(&n))
	return n
}

// atkIncrement is the read-modify-write the issue is about.
func atkIncrement(ctx context.Context, tx *sql.Tx, table string) error {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "UPDATE "+table+" SET n = $1 WHERE id = 1", n+1)
	return err
}

// atkServe runs h for one request whose context the test controls, and
// reports whether ServeHTTP returned within limit. A handler that did not
// return is released by cancelling the request's context (as a client
// that gives up would), so nothing is left behind.
func atkServe(t *testing.T, h http.Handler, limit time.Duration) (returned bool, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		defer func() { recover() }()
		h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	select {
	case <-done:
		return true, time.Since(start)
	case <-time.After(limit):
		took = time.Since(start)
		cancel()
		<-done
		return false, took
	}
}

// The lock holder: a second process that takes SQLite's write lock on a
// file and keeps it until its stdin closes.

const atkLockHolderEnv = "DBFALLBACK_ATK_LOCK_HOLDER" // path of the SQLite file

// atkLockHolder is the child's side: BEGIN IMMEDIATE through a plain
// connection of the engine, a write, "locked" on stdout, then wait.
func atkLockHolder(path string) {
	db, err := openRawSQLite("file:" + path + "?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err == nil {
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	}
	if err == nil {
		_, err = conn.ExecContext(context.Background(), "CREATE TABLE IF NOT EXISTS held (x INTEGER)")
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("locked")
	bufio.NewReader(os.Stdin).ReadString('\n')
	conn.ExecContext(context.Background(), "ROLLBACK")
	conn.Close()
}

// atkHoldLock starts the lock holder on path and returns when it holds the
// lock; the returned function makes it let go and waits for it to exit.
func atkHoldLock(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), atkLockHolderEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("lock holder: %q, %v", line, err)
	}
	var once atomic.Bool
	release = func() {
		if once.CompareAndSwap(false, true) {
			stdin.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	return release
}
