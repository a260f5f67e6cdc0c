package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTxCommitRollbackPanic(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "tx.db"))
	_, err := db.Exec("CREATE TABLE t(x INTEGER)")
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, db.QueryRow("SELECT count(*) FROM t").Scan(&n))
		return n
	}
	ctx := context.Background()
	require.NoError(t, db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO t VALUES (1)")
		return err
	}))
	assert.Equal(t, 1, count(), "nil commits")

	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		tx.Exec("INSERT INTO t VALUES (2)")
		return boom
	})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 1, count(), "an error rolls back")

	assert.PanicsWithValue(t, "kaboom", func() {
		db.Tx(ctx, func(tx *sql.Tx) error {
			tx.Exec("INSERT INTO t VALUES (3)")
			panic("kaboom")
		})
	})
	assert.Equal(t, 1, count(), "a panic rolls back and re-panics")
	assert.Zero(t, db.Stats().InUse, "the connection went back")

	err = db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO t VALUES (4)")
		return err
	}, WithReadOnly())
	assert.Error(t, err, "a read-only transaction cannot write")
	assert.Equal(t, 1, count())
}

func TestTxRetries(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "tx.db"))
	busy := realSQLiteError(t, sqlengine.Busy)
	serialization := &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"}
	tests := []struct {
		name     string
		fails    int   // attempts that fail before success
		err      error // what a failing attempt returns
		opts     []TxOption
		wantRuns int // exact, or at least when wantMore
		wantMore bool
		wantErr  bool
		attempts int // the TxError's count, when one is expected
		within   time.Duration
	}{
		{name: "busy then success", fails: 2, err: busy, wantRuns: 3},
		{name: "serialization then success", fails: 1, err: serialization, wantRuns: 2},
		{name: "deadlock", fails: 1, err: &pgconn.PgError{Severity: "ERROR", Code: "40P01"}, wantRuns: 2},
		{name: "conflict after a join with a rollback error", fails: 1, err: errors.Join(serialization, errors.New("rollback: conn closed")), wantRuns: 2},
		{name: "many conflicts fit in the default budget", fails: 30, err: serialization, wantRuns: 31},
		{name: "attempt cap", fails: 100, err: busy, opts: []TxOption{WithAttempts(2)}, wantRuns: 2, wantErr: true, attempts: 2},
		{name: "one attempt", fails: 100, err: busy, opts: []TxOption{WithAttempts(1)}, wantRuns: 1, wantErr: true, attempts: 1},
		{name: "time budget", fails: 1 << 30, err: serialization, opts: []TxOption{WithRetryBudget(300 * time.Millisecond)},
			wantRuns: 3, wantMore: true, wantErr: true, within: 2 * time.Second},
		{name: "other errors are not retried", fails: 100, err: errors.New("constraint"), wantRuns: 1, wantErr: true},
		{name: "a lock wait that used the busy timeout is not retried", fails: 100, err: &lockWaitError{waited: time.Second, err: busy}, wantRuns: 1, wantErr: true},
		{name: "a commit of unknown outcome is not retried", fails: 100, err: &commitUnknownError{err: serialization}, wantRuns: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := 0
			start := time.Now()
			err := db.Tx(context.Background(), func(tx *sql.Tx) error {
				runs++
				if runs <= tt.fails {
					return tt.err
				}
				return nil
			}, tt.opts...)
			if tt.wantMore {
				assert.GreaterOrEqual(t, runs, tt.wantRuns)
			} else {
				assert.Equal(t, tt.wantRuns, runs)
			}
			if tt.within > 0 {
				assert.Less(t, time.Since(start), tt.within)
			}
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.err)
			var te *TxError
			if tt.attempts > 0 || tt.wantMore {
				require.ErrorAs(t, err, &te)
				assert.Equal(t, runs, te.Attempts)
				assert.Contains(t, err.Error(), fmt.Sprintf("after %d attempts", runs))
			} else {
				assert.False(t, errors.As(err, &te), "a final error comes back as it is: %v", err)
			}
		})
	}
	t.Run("stops when ctx is done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		runs := 0
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			runs++
			cancel()
			return busy
		})
		assert.Equal(t, 1, runs)
		var te *TxError
		require.ErrorAs(t, err, &te)
		assert.ErrorIs(t, err, busy)
	})
	t.Run("ctx done before COMMIT is a known rollback", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec("CREATE TABLE never (x INTEGER)")
			cancel()
			return err
		})
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, ErrCommitUnknown)
		var n int
		require.NoError(t, db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'never'").Scan(&n))
		assert.Zero(t, n, "rolled back")
	})
	t.Run("a deadline ends the waits", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := db.Tx(ctx, func(tx *sql.Tx) error { return serialization })
		assert.Error(t, err)
		assert.Less(t, time.Since(start), time.Second, "the 30s budget does not outlive ctx")
	})
}

func TestIsRetryable(t *testing.T) {
	busy := realSQLiteError(t, sqlengine.Busy)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"wrapped serialization failure", fmt.Errorf("update: %w", &pgconn.PgError{Code: "40001"}), true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"busy at once", busy, true},
		{"busy snapshot", realSQLiteError(t, sqlengine.BusySnapshot), true},
		{"table locked", realSQLiteError(t, sqlengine.Locked), true},
		{"write lock taken, zero busy timeout", errWriteLockBusy, true},
		{"busy after the busy timeout", &lockWaitError{waited: 10 * time.Second, err: busy}, false},
		{"write gate timed out", &lockWaitError{waited: 10 * time.Second, err: errWriteLockWait}, false},
		{"own write lock", errOwnWriteLock, false},
		{"commit outcome unknown", &commitUnknownError{err: &pgconn.PgError{Code: "40001"}}, false},
		{"retry budget spent", &TxError{Attempts: 7, Err: &pgconn.PgError{Code: "40001"}}, false},
		{"wrapped spent budget", fmt.Errorf("inner: %w", &TxError{Attempts: 7, Err: busy}), false},
		{"PostgreSQL lock timeout", &pgconn.PgError{Code: "55P03"}, false},
		{"constraint", realSQLiteError(t, sqlengine.Constraint), false},
		{"context", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, IsRetryable(tt.err))
		})
	}
}

func TestCommitOutcomeUnknown(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"ctx ended while waiting for COMMIT's answer (pgx)", context.Canceled, true},
		{"already ended", sql.ErrTxDone, false},
		{"serialization failure at commit", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, false},
		{"deferred constraint at commit", &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "23505"}, false},
		{"backend terminated", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"localized FATAL", &pgconn.PgError{Severity: "SCHWERWIEGEND", SeverityUnlocalized: "FATAL", Code: "57P01"}, true},
		{"server crash", &pgconn.PgError{Severity: "PANIC", Code: "XX000"}, true},
		{"ctx ended during COMMIT (wrapped by the driver)", fmt.Errorf("timeout: %w", context.DeadlineExceeded), true},
		{"connection lost", errors.New("unexpected EOF"), true},
		{"connection closed under COMMIT (pgx calls it safe to retry)", fmt.Errorf("commit: %w", pgconn.ErrConnClosed), true},
		{"the server rolled back an aborted transaction", pgx.ErrTxCommitRollback, false},
		{"SQLite commit failure", realSQLiteError(t, sqlengine.Full), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, commitOutcomeUnknown(tt.err))
		})
	}
	err := &commitUnknownError{err: fmt.Errorf("read: %w", context.DeadlineExceeded)}
	assert.ErrorIs(t, err, ErrCommitUnknown)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the cause stays visible")
	assert.Contains(t, err.Error(), "may have committed")
}

// counterRun is the outcome of a hot-row counter run.
type counterRun struct {
	final   int             // the counter's value at the end
	ok      int             // Tx calls that returned nil
	failed  int             // Tx calls that returned an error
	retries int             // of which ran out of retries (*TxError)
	tries   []int           // how many times fn ran, per call
	slowest time.Duration   // the longest call
	took    time.Duration   // the whole run
	first   error           // the first error a caller saw
	calls   []time.Duration // every call's duration
}

// runCounter has goroutines × each Tx calls add 1 to one row, reading it
// and writing it back (the read-modify-write that loses updates below
// SERIALIZABLE), and reports what happened.
func runCounter(tb testing.TB, db *DB, table string, goroutines, each int, opts ...TxOption) counterRun {
	tb.Helper()
	ctx := context.Background()
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + table,
		"CREATE TABLE " + table + " (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
		"INSERT INTO " + table + " VALUES (1, 0)",
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(tb, err)
	}
	var mu sync.Mutex
	var run counterRun
	var first firstError
	report := withTxReport(func(tries int, err error) {
		mu.Lock()
		defer mu.Unlock()
		run.tries = append(run.tries, tries)
	})
	opts = append(slices.Clone(opts), report)
	var ok, failed, outOfRetries atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				began := time.Now()
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE "+table+" SET n = $1 WHERE id = 1", n+1)
					return err
				}, opts...)
				d := time.Since(began)
				mu.Lock()
				run.calls = append(run.calls, d)
				run.slowest = max(run.slowest, d)
				mu.Unlock()
				var te *TxError
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &te):
					outOfRetries.Add(1)
					failed.Add(1)
					first.set(err)
				default:
					failed.Add(1)
					first.set(err)
				}
			}
		}()
	}
	wg.Wait()
	run.took = time.Since(start)
	run.ok, run.failed, run.retries, run.first = int(ok.Load()), int(failed.Load()), int(outOfRetries.Load()), first.get()
	require.NoError(tb, db.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&run.final))
	return run
}

// TestTxCounter: 64 goroutines × 200 increments through Tx with the
// default options end exact on both dialects, every call that returned
// nil counted once, none out of retries; READ COMMITTED on PostgreSQL
// is the documented opt-out and does lose updates.
func TestTxCounter(t *testing.T) {
	const goroutines, each = 64, 200
	exact := func(t *testing.T, run counterRun) {
		if run.first != nil {
			t.Errorf("first error: %v", run.first)
		}
		assert.Equal(t, goroutines*each, run.ok, "every call succeeds")
		assert.Zero(t, run.retries, "no call runs out of retries")
		assert.Equal(t, run.ok, run.final, "every call that returned nil counted once, none lost")
		t.Logf("%d calls in %s, slowest %s, attempts per call: %s", run.ok, run.took.Round(time.Millisecond), run.slowest.Round(time.Millisecond), triesSummary(run.tries))
	}
	t.Run("sqlite", func(t *testing.T) {
		db := openSQLiteAt(t, filepath.Join(t.TempDir(), "counter.db"))
		exact(t, runCounter(t, db, "tx_counter", goroutines, each))
		assert.Zero(t, db.Stats().InUse)
	})
	t.Run("postgres", func(t *testing.T) {
		db, _ := openWith(t, testPostgresURL(t))
		require.Equal(t, Postgres, db.Dialect())
		exact(t, runCounter(t, db, "tx_counter", goroutines, each))
		assert.Zero(t, db.Stats().InUse)
	})
	t.Run("postgres read committed opt-out", func(t *testing.T) {
		db, _ := openWith(t, testPostgresURL(t))
		run := runCounter(t, db, "tx_counter_rc", 16, 50, WithIsolation(sql.LevelReadCommitted))
		assert.Zero(t, run.failed, "READ COMMITTED reports no conflict…")
		assert.Equal(t, 16*50, run.ok)
		assert.Less(t, run.final, run.ok, "…and loses updates: that is what opting out means")
		t.Logf("READ COMMITTED: %d calls returned nil, the counter reads %d", run.ok, run.final)
	})
}

// triesSummary describes a distribution of attempts per call.
func triesSummary(tries []int) string {
	if len(tries) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(tries))
	at := func(q float64) int { return s[min(len(s)-1, int(q*float64(len(s))))] }
	once := 0
	for _, n := range s {
		if n == 1 {
			once++
		}
	}
	return fmt.Sprintf("%.1f%% first time, p50 %d, p90 %d, p99 %d, max %d", 100*float64(once)/float64(len(s)), at(0.5), at(0.9), at(0.99), s[len(s)-1])
}

// TestTxIsolation reads the level PostgreSQL runs each Tx at.
func TestTxIsolation(t *testing.T) {
	db, _ := openWith(t, testPostgresURL(t))
	tests := []struct {
		name string
		opts []TxOption
		want string
	}{
		{"default is serializable", nil, "serializable"},
		{"read committed opt-out", []TxOption{WithIsolation(sql.LevelReadCommitted)}, "read committed"},
		{"the driver's default on request", []TxOption{WithIsolation(sql.LevelDefault)}, "read committed"},
		{"repeatable read", []TxOption{WithIsolation(sql.LevelRepeatableRead)}, "repeatable read"},
		{"read-only keeps serializable", []TxOption{WithReadOnly()}, "serializable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var level string
			err := db.Tx(context.Background(), func(tx *sql.Tx) error {
				return tx.QueryRow("SHOW transaction_isolation").Scan(&level)
			}, tt.opts...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, level)
		})
	}
}
