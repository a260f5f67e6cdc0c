package dbfallback

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// attack_open_test.go attacks Open's promise to return a usable database
// before the caller's deadline, the way services really bound startup.

// tlsStallListener accepts, answers PostgreSQL's SSLRequest with 'S' (TLS
// accepted) and then says nothing: a server that hangs in the TLS
// handshake.
func tlsStallListener(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				var req [8]byte
				if _, err := c.Read(req[:]); err == nil {
					c.Write([]byte("S"))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}

// requireUsable writes and reads a row through db.
func requireUsable(t *testing.T, db *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS attack_probe (n INTEGER)")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "INSERT INTO attack_probe VALUES (1)")
	require.NoError(t, err)
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM attack_probe").Scan(&n))
	assert.Positive(t, n)
}

// TestAttackOpenDeadlineSilentPrimary: under a caller's deadline, every
// shape of a primary that never answers still leaves a usable SQLite
// database before the deadline.
func TestAttackOpenDeadlineSilentPrimary(t *testing.T) {
	silent1, silent2, silent3 := silentListener(t), silentListener(t), silentListener(t)
	tlsStall := tlsStallListener(t)
	lastOnly := func(r Resolution) []Target {
		return []Target{r.Primary, r.Primary, r.Fallbacks[0], r.Fallbacks[len(r.Fallbacks)-1]}
	}
	tests := []struct {
		name     string
		url      string
		deadline time.Duration
		opts     []Option
	}{
		{name: "silent primary", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silent1), deadline: time.Second},
		{name: "silent primary with WithPrimaryWait longer than the deadline", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silent1),
			deadline: time.Second, opts: []Option{WithPrimaryWait(time.Minute)}},
		{name: "every host of a multi-host URL silent, connect_timeout=30", deadline: time.Second,
			url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/app?connect_timeout=30&target_session_attrs=read-write", silent1, silent2, silent3)},
		{name: "TLS accepted then the handshake stalls", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app?sslmode=require", tlsStall), deadline: time.Second},
		{name: "TLS stall under sslmode=prefer (two tries)", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app?sslmode=prefer", tlsStall), deadline: time.Second},
		{name: "deadline shorter than the reserve's floor", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silent1), deadline: 300 * time.Millisecond},
		{name: "PGCONNECT_TIMEOUT longer than the deadline", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silent1), deadline: time.Second,
			opts: []Option{WithConnectTimeout(time.Hour)}},
		{name: "custom strategy trying the primary twice", url: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silent1), deadline: 1500 * time.Millisecond,
			opts: []Option{WithStrategy(StrategyFunc(lastOnly))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			start := time.Now()
			db, err := Open(ctx, dirs.opts(map[string]string{"DATABASE_URL": tt.url, "PGCONNECT_TIMEOUT": "3600"}, tt.opts...)...)
			took := time.Since(start)
			require.NoError(t, err)
			defer db.Close()
			assert.Less(t, took, tt.deadline, "Open must return before the caller's deadline")
			assert.True(t, db.Fallback())
			assert.Equal(t, SQLite, db.Dialect())
			assert.NotContains(t, db.Reason(), ":pw@")
			requireUsable(t, db)
		})
	}
}

// TestAttackOpenContextAlreadyDone: a ctx that is already done returns its
// error at once and creates nothing.
func TestAttackOpenContextAlreadyDone(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{name: "deadline passed", want: context.DeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}},
		{name: "canceled", want: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			db, err := Open(ctx, dirs.opts(map[string]string{"DATABASE_URL": "postgres://u:pw@127.0.0.1:1/app"})...)
			assert.Nil(t, db)
			assert.ErrorIs(t, err, tt.want)
			assert.Less(t, time.Since(start), 100*time.Millisecond)
			assert.Empty(t, namesIn(t, dirs.work), "nothing may be created")
			assert.Empty(t, namesIn(t, dirs.tmp), "nothing may be created")
		})
	}
}

// TestAttackOpenPrimaryOnlyDeadline: PrimaryOnly keeps nothing in reserve
// but still returns by the deadline, with an error.
func TestAttackOpenPrimaryOnlyDeadline(t *testing.T) {
	dirs := isolateAttack(t)
	url := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silentListener(t))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	db, err := Open(ctx, dirs.opts(map[string]string{"DATABASE_URL": url}, WithStrategy(PrimaryOnly))...)
	assert.Nil(t, db)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
}

// TestAttackOpenDeadlineSQLiteBusy: the SQLite file is held by another
// process (a rollback-journal writer inside BEGIN EXCLUSIVE, or a WAL
// database in exclusive locking mode). SQLite's busy handler ignores ctx,
// so Open must not wait for it past the caller's deadline: it returns
// another location before the deadline, and the other process's database
// is left as it is.
func TestAttackOpenDeadlineSQLiteBusy(t *testing.T) {
	for _, journal := range []string{"DELETE", "WAL"} {
		t.Run(journal, func(t *testing.T) {
			dirs := isolateAttack(t)
			held := filepath.Join(t.TempDir(), "held.db")
			makeSQLite(t, held, journal, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('kept')")
			child := startAttackChild(t, attackRequest{Op: "lock", Path: held, Journal: journal})
			require.Equal(t, "locked", child.first)
			done := settled(t)

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			db, err := Open(ctx, dirs.opts(map[string]string{"SQLITE_PATH": held})...)
			took := time.Since(start)
			require.NoError(t, err)
			assert.Less(t, took, time.Second, "Open must not wait for another process's lock past the deadline")
			assert.NotEqual(t, held, db.Target().Path)
			assert.Contains(t, db.Reason(), held, "Reason names the location passed over")
			requireUsable(t, db)
			require.NoError(t, db.Close())

			child.stop()
			waitSQLiteFree(t, held)
			done()
			var body string
			check, err := openRawSQLite("file:" + held + "?mode=ro")
			require.NoError(t, err)
			defer check.Close()
			require.NoError(t, check.QueryRow("SELECT body FROM notes").Scan(&body))
			assert.Equal(t, "kept", body)
		})
	}
}

// TestAttackOpenCanceledWhileSQLiteBusy: a ctx canceled while SQLite waits
// for another process's lock (SIGTERM during startup) ends Open at once,
// even with no deadline.
func TestAttackOpenCanceledWhileSQLiteBusy(t *testing.T) {
	dirs := isolateAttack(t)
	held := filepath.Join(t.TempDir(), "held.db")
	makeSQLite(t, held, "DELETE", "CREATE TABLE notes (id INTEGER PRIMARY KEY)")
	child := startAttackChild(t, attackRequest{Op: "lock", Path: held, Journal: "DELETE"})
	require.Equal(t, "locked", child.first)
	done := settled(t)

	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(300*time.Millisecond, cancel)
	defer timer.Stop()
	start := time.Now()
	db, err := Open(ctx, dirs.opts(map[string]string{"SQLITE_PATH": held})...)
	if db != nil {
		db.Close()
	}
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), time.Second, "a canceled Open must not wait out SQLite's busy timeout")
	child.stop()
	waitSQLiteFree(t, held)
	done()
}

// TestAttackOpenDeadlineLargeWAL: a persistent file left with a large
// write-ahead log to recover (a crash after heavy writes) must not make
// Open miss the caller's deadline.
func TestAttackOpenDeadlineLargeWAL(t *testing.T) {
	dirs := isolateAttack(t)
	src := filepath.Join(t.TempDir(), "src.db")
	db, err := openRawSQLite("file:" + src + "?_journal_mode=WAL")
	require.NoError(t, err)
	db.SetMaxOpenConns(1)
	for _, s := range []string{
		"PRAGMA wal_autocheckpoint=0",
		"CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 25000) INSERT INTO notes (body) SELECT randomblob(4000) FROM c",
	} {
		_, err := db.Exec(s)
		require.NoError(t, err)
	}
	// Copy the database and its log while the writer still holds them:
	// the copy is what a crash leaves (no -shm, the whole log to replay).
	path := filepath.Join(t.TempDir(), "app.db")
	copyFile(t, src, path)
	copyFile(t, src+"-wal", path+"-wal")
	require.NoError(t, db.Close())

	url := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silentListener(t))
	done := settled(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	got, err := Open(ctx, dirs.opts(map[string]string{"DATABASE_URL": url, "SQLITE_PATH": path})...)
	took := time.Since(start)
	require.NoError(t, err)
	defer got.Close()
	assert.Less(t, took, time.Second)
	requireUsable(t, got)
	require.NoError(t, got.Close())
	done()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o600))
}

// waitSQLiteFree waits until path can be written again (the process that
// held it is gone and any open that Open abandoned has finished).
func waitSQLiteFree(t *testing.T, path string) {
	t.Helper()
	require.Eventually(t, func() bool {
		db, err := openRawSQLite("file:" + path + "?_busy_timeout=0")
		if err != nil {
			return false
		}
		defer db.Close()
		_, err = db.Exec("BEGIN IMMEDIATE; ROLLBACK")
		return err == nil
	}, 20*time.Second, 20*time.Millisecond)
}

// settled returns a function that waits until every goroutine started
// since settled was called has ended: work Open left to SQLite (a busy
// wait, a log replay) finishes on its own, but must finish.
func settled(t *testing.T) func() {
	t.Helper()
	before := goleak.IgnoreCurrent()
	return func() {
		t.Helper()
		require.Eventually(t, func() bool { return goleak.Find(before) == nil }, 10*time.Second, 50*time.Millisecond,
			"goroutines left behind: %v", goleak.Find(before))
	}
}
