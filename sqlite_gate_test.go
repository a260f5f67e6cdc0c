package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteGate(t *testing.T) {
	g := newWriteGate(50 * time.Millisecond)
	_, err := g.acquire(context.Background())
	require.NoError(t, err)
	g.hold(nil)

	start := time.Now()
	waited, err := g.acquire(context.Background())
	assert.ErrorIs(t, err, errWriteLockWait)
	var lw *lockWaitError
	require.ErrorAs(t, err, &lw)
	assert.False(t, IsRetryable(err), "a wait that used the busy timeout is not retried")
	assert.Contains(t, err.Error(), "left open")
	assert.Contains(t, err.Error(), "inside db.Tx")
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	assert.GreaterOrEqual(t, waited, 50*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = g.acquire(ctx)
	assert.ErrorIs(t, err, context.Canceled)

	s := &Session{}
	g.release()
	_, err = g.acquire(context.WithValue(context.Background(), sessionKey{}, s))
	require.NoError(t, err)
	g.hold(s)
	start = time.Now()
	_, err = g.acquire(context.WithValue(context.Background(), sessionKey{}, s))
	assert.ErrorIs(t, err, errOwnWriteLock, "a write that would wait for its own session's transaction")
	assert.Less(t, time.Since(start), 40*time.Millisecond, "fails at once")
	other := make(chan error)
	go func() { // another goroutine of the same request: its wait can end
		_, err := g.acquire(context.WithValue(context.Background(), sessionKey{}, s))
		other <- err
	}()
	assert.ErrorIs(t, <-other, errWriteLockWait, "another goroutine of the session waits its turn")
	_, err = g.acquire(context.WithValue(context.Background(), sessionKey{}, &Session{}))
	assert.ErrorIs(t, err, errWriteLockWait, "another session waits its turn")
	g.release()

	zero := newWriteGate(0)
	_, err = zero.acquire(context.Background())
	require.NoError(t, err)
	_, err = zero.acquire(context.Background())
	assert.ErrorIs(t, err, errWriteLockBusy, "with a zero busy timeout the gate does not wait")
	assert.True(t, IsRetryable(err))
}

func TestFirstKeyword(t *testing.T) {
	tests := []struct{ query, want string }{
		{"SELECT 1", "SELECT"},
		{"  \n\tselect x from t", "select"},
		{"-- a comment\nINSERT INTO t VALUES (1)", "INSERT"},
		{"/* a */ /* b */ WITH x AS (SELECT 1) SELECT * FROM x", "WITH"},
		{"(SELECT 1)", "SELECT"},
		{"VALUES (1)", "VALUES"},
		{"-- only a comment", ""},
		{"/* unterminated", ""},
		{"", ""},
		{"PRAGMA busy_timeout", "PRAGMA"},
		{"update t set x = 1", "update"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			assert.Equal(t, tt.want, firstKeyword(tt.query))
		})
	}
}

// openSQLiteBusy opens a SQLite file whose URL sets the busy timeout, the
// bound of every lock wait; extra parameters follow it.
func openSQLiteBusy(t *testing.T, busy time.Duration, params string) (*DB, string) {
	t.Helper()
	isolatedDirs(t)
	path := filepath.Join(t.TempDir(), "busy.db")
	db, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(PrimaryOnly),
		WithURL("file:"+path+"?_busy_timeout="+strconv.FormatInt(busy.Milliseconds(), 10)+params))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.Equal(t, path, db.Target().Path)
	_, err = db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO t VALUES (1, 0)")
	require.NoError(t, err)
	return db, path
}

// otherProcess opens the file as another process would: a plain
// pool of the engine outside the write gate.
func otherProcess(t *testing.T, path string) *sql.DB {
	t.Helper()
	return rawSQLite(t, "file:"+path+"?_busy_timeout=5000&_txlock=immediate")
}

// TestSQLiteLockWaitBounded: a writer behind a lock waits once, for the
// busy timeout (300ms here), and Tx does not retry that wait; a busy
// reported at once is retried.
func TestSQLiteLockWaitBounded(t *testing.T) {
	const busy = 300 * time.Millisecond
	increment := func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow("SELECT n FROM t WHERE id = 1").Scan(&n); err != nil {
			return err
		}
		_, err := tx.Exec("UPDATE t SET n = ? WHERE id = 1", n+1)
		return err
	}
	tests := []struct {
		name     string
		params   string
		setup    func(t *testing.T, db *DB, path string) // holds a lock, released by t.Cleanup
		fn       func(db *DB) func(*sql.Tx) error
		wantRuns int
		wantWait bool   // the error is a lock wait of the whole busy timeout
		wantMsg  string // in the error
		wantN    int    // the counter afterwards, when the call succeeds
	}{
		{
			name: "a transaction left open in this process",
			setup: func(t *testing.T, db *DB, _ string) {
				tx, err := db.BeginTx(context.Background(), nil)
				require.NoError(t, err)
				t.Cleanup(func() { tx.Rollback() })
			},
			fn:       func(*DB) func(*sql.Tx) error { return increment },
			wantRuns: 0, wantWait: true, wantMsg: "left open",
		},
		{
			name: "a write through db inside Tx",
			fn: func(db *DB) func(*sql.Tx) error {
				return func(tx *sql.Tx) error {
					_, err := db.Exec("UPDATE t SET n = n + 1 WHERE id = 1")
					return err
				}
			},
			wantRuns: 1, wantWait: true, wantMsg: "inside db.Tx",
		},
		{
			name: "a transaction left open in another process",
			setup: func(t *testing.T, _ *DB, path string) {
				tx, err := otherProcess(t, path).Begin()
				require.NoError(t, err)
				t.Cleanup(func() { tx.Rollback() })
			},
			fn:       func(*DB) func(*sql.Tx) error { return increment },
			wantRuns: 0, wantWait: true, wantMsg: "another connection",
		},
		{
			// A deferred transaction that read, then finds that another
			// process wrote meanwhile, gets SQLITE_BUSY_SNAPSHOT at once:
			// only a new transaction can see the new snapshot.
			name:   "a busy reported at once is retried",
			params: "&_txlock=deferred",
			fn: func(db *DB) func(*sql.Tx) error {
				runs := 0
				return func(tx *sql.Tx) error {
					runs++
					var n int
					if err := tx.QueryRow("SELECT n FROM t WHERE id = 1").Scan(&n); err != nil {
						return err
					}
					if runs == 1 {
						raw, err := openRawSQLite("file:" + db.Target().Path)
						if err != nil {
							return err
						}
						defer raw.Close()
						if _, err := raw.Exec("UPDATE t SET n = n + 10 WHERE id = 1"); err != nil {
							return err
						}
					}
					_, err := tx.Exec("UPDATE t SET n = ? WHERE id = 1", n+1)
					return err
				}
			},
			wantRuns: 2, wantN: 11,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, path := openSQLiteBusy(t, busy, tt.params)
			if tt.setup != nil {
				tt.setup(t, db, path)
			}
			fn := tt.fn(db)
			runs := 0
			start := time.Now()
			err := db.Tx(context.Background(), func(tx *sql.Tx) error {
				runs++
				return fn(tx)
			})
			took := time.Since(start)
			assert.Equal(t, tt.wantRuns, runs, "fn runs")
			if !tt.wantWait {
				require.NoError(t, err)
				assert.Less(t, took, busy, "retried without waiting out the busy timeout")
				var n int
				require.NoError(t, db.QueryRow("SELECT n FROM t WHERE id = 1").Scan(&n))
				assert.Equal(t, tt.wantN, n)
				return
			}
			require.Error(t, err)
			var lw *lockWaitError
			assert.ErrorAs(t, err, &lw)
			assert.False(t, IsRetryable(err))
			var te *TxError
			assert.False(t, errors.As(err, &te), "not retried: %v", err)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.GreaterOrEqual(t, took, busy/2)
			assert.Less(t, took, 3*busy, "one busy timeout, not one per attempt")
		})
	}
}

// TestSQLiteLockWaitCtx: a deadline shorter than the busy timeout ends
// the wait first, with ctx's error.
func TestSQLiteLockWaitCtx(t *testing.T) {
	db, _ := openSQLiteBusy(t, 5*time.Second, "")
	open, err := db.Begin()
	require.NoError(t, err)
	defer open.Rollback()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = db.Tx(ctx, func(tx *sql.Tx) error { return nil })
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

// TestSQLiteLockWaitBoundedByDefault is the case that took 50s (five
// attempts of 10s each): with the default busy timeout, Tx behind a
// transaction left open, or writing through db inside itself, gives up
// after one busy timeout. BENCHMARKS.md has the measured time.
func TestSQLiteLockWaitBoundedByDefault(t *testing.T) {
	tests := []struct {
		name string
		run  func(db *DB) error
	}{
		{"behind a transaction left open", func(db *DB) error {
			tx, err := db.Begin()
			if err != nil {
				return err
			}
			defer tx.Rollback()
			return db.Tx(context.Background(), func(tx *sql.Tx) error {
				_, err := tx.Exec("INSERT INTO t (n) VALUES (1)")
				return err
			})
		}},
		{"a write through db inside Tx", func(db *DB) error {
			return db.Tx(context.Background(), func(tx *sql.Tx) error {
				_, err := db.Exec("INSERT INTO t (n) VALUES (1)")
				return err
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // so the two waits overlap; no t.Chdir here
			db, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(SQLiteOnly),
				WithSQLitePath(filepath.Join(t.TempDir(), "default.db")))
			require.NoError(t, err)
			defer db.Close()
			_, err = db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
			require.NoError(t, err)
			start := time.Now()
			err = tt.run(db)
			took := time.Since(start)
			var lw *lockWaitError
			assert.ErrorAs(t, err, &lw)
			assert.GreaterOrEqual(t, took, sqliteBusyTimeout/2)
			assert.Less(t, took, sqliteBusyTimeout+5*time.Second, "bounded by the busy timeout, once")
			t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
		})
	}
}

// TestSQLiteGateWaitShortensBusyTimeout: a writer that waited for the
// gate has that much less busy timeout left for other processes, so the
// two waits together stay within one busy timeout.
func TestSQLiteGateWaitShortensBusyTimeout(t *testing.T) {
	db, _ := openSQLiteBusy(t, 2*time.Second, "")
	db.SetMaxOpenConns(2)
	holder, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	time.AfterFunc(400*time.Millisecond, func() { holder.Rollback() })
	var during int64
	require.NoError(t, db.Tx(context.Background(), func(tx *sql.Tx) error {
		return tx.QueryRow("PRAGMA busy_timeout").Scan(&during)
	}))
	assert.Greater(t, during, int64(500), "most of the timeout is left")
	assert.LessOrEqual(t, during, int64(1650), "the wait for the gate was taken off")
	ctx := context.Background()
	c1, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c1.Close()
	c2, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c2.Close()
	for _, c := range []*sql.Conn{c1, c2} {
		var after int64
		require.NoError(t, c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&after))
		assert.Equal(t, int64(2000), after, "restored when the transaction ended")
	}
}

// TestSQLiteWriteShapesTakeTheGate: every way to write outside a
// transaction queues on the gate, so 32 writers of each shape at once see
// no "database is locked", whatever the busy timeout; reads never queue.
func TestSQLiteWriteShapesTakeTheGate(t *testing.T) {
	db, _ := openSQLiteBusy(t, 5*time.Second, "")
	ctx := context.Background()
	ins, err := db.PrepareContext(ctx, "INSERT INTO t (n) VALUES (?)")
	require.NoError(t, err)
	defer ins.Close()
	insRet, err := db.PrepareContext(ctx, "INSERT INTO t (n) VALUES (?) RETURNING id")
	require.NoError(t, err)
	defer insRet.Close()
	shapes := []struct {
		name  string
		write func(i int) error
	}{
		{"exec", func(i int) error { _, err := db.ExecContext(ctx, "INSERT INTO t (n) VALUES (?)", i); return err }},
		{"insert returning", func(i int) error {
			var id int64
			return db.QueryRowContext(ctx, "INSERT INTO t (n) VALUES (?) RETURNING id", i).Scan(&id)
		}},
		{"with insert returning", func(i int) error {
			var id int64
			return db.QueryRowContext(ctx, "WITH v(x) AS (SELECT ?) INSERT INTO t (n) SELECT x FROM v RETURNING id", i).Scan(&id)
		}},
		{"prepared exec", func(i int) error { _, err := ins.ExecContext(ctx, i); return err }},
		{"prepared insert returning", func(i int) error {
			var id int64
			return insRet.QueryRowContext(ctx, i).Scan(&id)
		}},
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			var before int
			require.NoError(t, db.QueryRow("SELECT count(*) FROM t").Scan(&before))
			var first firstError
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 10 {
						if err := sh.write(g*10 + i); err != nil {
							first.set(err)
						}
					}
				}()
			}
			wg.Wait()
			assert.NoError(t, first.get())
			var after int
			require.NoError(t, db.QueryRow("SELECT count(*) FROM t").Scan(&after))
			assert.Equal(t, before+320, after)
			assert.Zero(t, db.Stats().InUse)
		})
	}
	t.Run("reads do not queue behind a writer", func(t *testing.T) {
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback()
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var n int
		assert.NoError(t, db.QueryRowContext(rctx, "SELECT count(*) FROM t").Scan(&n))
		assert.NoError(t, db.QueryRowContext(rctx, "WITH c AS (SELECT count(*) AS k FROM t) SELECT k FROM c").Scan(&n))
		assert.NoError(t, db.QueryRowContext(rctx, "PRAGMA busy_timeout").Scan(&n))
		sel, err := db.PrepareContext(rctx, "SELECT count(*) FROM t")
		require.NoError(t, err)
		defer sel.Close()
		assert.NoError(t, sel.QueryRowContext(rctx).Scan(&n))
	})
	t.Run("column types survive the gate", func(t *testing.T) {
		rows, err := db.QueryContext(ctx, "INSERT INTO t (n) VALUES (1) RETURNING id, n")
		require.NoError(t, err)
		defer rows.Close()
		types, err := rows.ColumnTypes()
		require.NoError(t, err)
		require.Len(t, types, 2)
		assert.Equal(t, "INTEGER", types[0].DatabaseTypeName())
		_, isSQLite := sqliteCode(rows.Err())
		assert.False(t, isSQLite)
	})
}

func TestGoroutineID(t *testing.T) {
	id := goroutineID()
	require.NotZero(t, id)
	assert.Equal(t, id, goroutineID(), "stable within a goroutine")
	other := make(chan uint64)
	go func() { other <- goroutineID() }()
	o := <-other
	assert.NotZero(t, o)
	assert.NotEqual(t, id, o)

	// hold learns the number of the goroutine that calls it.
	g := newWriteGate(time.Second)
	s := &Session{}
	g.hold(s)
	owner := g.owner.Load()
	require.NotNil(t, owner)
	<-owner.learned
	assert.Equal(t, id, owner.goroutine.Load())
	assert.True(t, owner.begunBy(context.Background(), id))
	assert.False(t, owner.begunBy(context.Background(), o))
	assert.False(t, owner.begunBy(context.Background(), 0))
}

func TestSeveralStatements(t *testing.T) {
	tests := []struct {
		q    string
		want bool
	}{
		{"SELECT 1", false},
		{"SELECT 1;", false},
		{"SELECT 1 ;  \n\t", false},
		{"SELECT 1; -- done", false},
		{"SELECT 1; /* done */ ;", false},
		{"SELECT ';' FROM t", false},
		{"SELECT \"a;b\" FROM t", false},
		{"SELECT [a;b] FROM t", false},
		{"SELECT 'it''s; fine'", false},
		{"SELECT 1 -- ; DELETE FROM t", false},
		{"SELECT 1 /* ; DELETE FROM t */", false},
		{"SELECT 1; DELETE FROM t", true},
		{"SELECT 1;DELETE FROM t", true},
		{"SELECT ';'; DELETE FROM t", true},
		{"SELECT 1; -- x\nDELETE FROM t", true},
		{"SELECT 1; /* x */ DELETE FROM t", true},
		{"SELECT 1; 'x'", true},
		{"SELECT 'unterminated; DELETE", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			assert.Equal(t, tt.want, severalStatements(tt.q))
		})
	}
}

func FuzzSeveralStatements(f *testing.F) {
	for _, q := range []string{"SELECT 1; DELETE FROM t", "SELECT ';'", "SELECT 1 -- ;\n", "/* ; */ SELECT [;]", "SELECT 'a''b'; x"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := severalStatements(q)
		if !strings.Contains(q, ";") && got {
			t.Fatalf("no semicolon, yet several statements: %q", q)
		}
		if got && !severalStatements(q+";") {
			t.Fatalf("a trailing semicolon undid several statements: %q", q)
		}
	})
}
