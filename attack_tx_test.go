package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_tx_test.go attacks DB.Tx's promises from outside, as a user
// would meet them: serializable on both dialects, retries within a
// budget, ErrCommitUnknown never retried, lock waits bounded once.

// A fn that leaves other than by returning, by a panic or by
// runtime.Goexit (t.FailNow, a require inside Tx in a test), must not
// leave its transaction open: on SQLite that would hold the write lock
// until the process exits. A panic goes on, with its own value.
func TestAttackTxLeftAbnormally(t *testing.T) {
	ways := []struct {
		name  string
		leave func()
	}{
		{"panic", func() { panic("fn bug") }},
		{"Goexit", runtime.Goexit},
	}
	for _, d := range atkDialects() {
		for _, way := range ways {
			t.Run(d.name+"/"+way.name, func(t *testing.T) {
				db := d.open(t, PoolConfig{MaxOpenConns: 2})
				table := atkCounter(t, db)
				var recovered any
				done := make(chan struct{})
				go func() {
					defer close(done)
					defer func() { recovered = recover() }()
					db.Tx(context.Background(), func(tx *sql.Tx) error {
						if _, err := tx.Exec("UPDATE " + table + " SET n = 100 WHERE id = 1"); err != nil {
							return err
						}
						way.leave()
						return nil
					})
				}()
				<-done
				if way.name == "panic" {
					assert.Equal(t, "fn bug", recovered, "the panic goes on")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				err := db.Tx(ctx, func(tx *sql.Tx) error { return atkIncrement(ctx, tx, table) })
				require.NoError(t, err, "a write after the Tx that was left")
				assert.Equal(t, 1, atkCount(t, db, table), "the transaction that was left was rolled back")
				assert.Equal(t, 0, db.Stats().InUse, "no connection is held")
			})
		}
	}
}

// Tx calls run concurrently from goroutines of one request (an errgroup
// fan-out with the request's context) must all succeed on both dialects,
// as they do on PostgreSQL: they are not the self-deadlock of a write
// inside the request's own transaction.
func TestAttackTxConcurrentInOneRequest(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			const workers, each = 4, 20
			errs := make(chan error, workers*each)
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range each {
							errs <- db.Tx(r.Context(), func(tx *sql.Tx) error {
								return atkIncrement(r.Context(), tx, table)
							})
						}
					}()
				}
				wg.Wait()
			}))
			returned, _ := atkServe(t, h, 20*time.Second)
			require.True(t, returned)
			close(errs)
			failed := 0
			var first error
			for err := range errs {
				if err != nil {
					failed++
					if first == nil {
						first = err
					}
				}
			}
			assert.Zero(t, failed, "calls failed; first: %v", first)
			assert.Equal(t, workers*each-failed, atkCount(t, db, table))
		})
	}
}

// A fn that swallows a serialization failure and returns nil must not
// see Tx return nil for a transaction the server rolled back.
func TestAttackTxSwallowedConflict(t *testing.T) {
	db := atkOpenPG(t, PoolConfig{})
	table := atkCounter(t, db)
	ctx := context.Background()
	calls := 0
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		calls++
		tx.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
		_, err := tx.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
		var pg *pgconn.PgError
		require.True(t, errors.As(err, &pg))
		return nil // swallowed
	}, WithAttempts(3))
	require.Error(t, err)
	t.Logf("Tx after a swallowed conflict: %v (fn ran %d times)", err, calls)
	assert.Equal(t, 0, atkCount(t, db, table))
}

// A fn that wraps a retryable error with %w gets the retry.
func TestAttackTxWrappedConflictRetried(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			ctx := context.Background()
			calls := 0
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				if err := atkIncrement(ctx, tx, table); err != nil {
					return err
				}
				if calls < 3 {
					var conflict error = &pgconn.PgError{Code: "40001", Severity: "ERROR", Message: "could not serialize access"}
					return fmt.Errorf("repository: save counter: %w", conflict)
				}
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, 3, calls)
			assert.Equal(t, 1, atkCount(t, db, table), "rolled-back attempts left nothing")
		})
	}
}

// A Tx behind a transaction left open waits for its lock once, bounded
// by the dialect's lock wait (SQLite's busy timeout, PostgreSQL's
// lock_timeout, both set in the URL here), says why, and is not retried.
// PostgreSQL sets no lock_timeout by default: there the caller's deadline
// ends the wait, as documented.
func TestAttackTxBehindOpenTransaction(t *testing.T) {
	cases := []struct {
		name     string
		open     func(t *testing.T) *DB
		deadline time.Duration
		bounded  bool // ends before the deadline, naming the cause
	}{
		{"sqlite", func(t *testing.T) *DB { return atkOpenSQLite(t, time.Second, PoolConfig{}) }, 8 * time.Second, true},
		{"postgres lock_timeout", func(t *testing.T) *DB { return atkOpenPGWith(t, PoolConfig{}, "lock_timeout=1000") }, 8 * time.Second, true},
		{"postgres default", func(t *testing.T) *DB { return atkOpenPG(t, PoolConfig{}) }, time.Second, false},
		{"sqlite, deadline first", func(t *testing.T) *DB { return atkOpenSQLite(t, 0, PoolConfig{}) }, 300 * time.Millisecond, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := c.open(t)
			table := atkCounter(t, db)
			bg := context.Background()
			left, err := db.BeginTx(bg, nil)
			require.NoError(t, err)
			defer left.Rollback()
			_, err = left.ExecContext(bg, "UPDATE "+table+" SET n = 50 WHERE id = 1")
			require.NoError(t, err)

			ctx, cancel := context.WithTimeout(bg, c.deadline)
			defer cancel()
			calls := 0
			start := time.Now()
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				return atkIncrement(ctx, tx, table)
			})
			took := time.Since(start)
			t.Logf("took %s: %v", took, err)
			require.Error(t, err)
			assert.False(t, IsRetryable(err))
			assert.LessOrEqual(t, calls, 1)
			if c.bounded {
				assert.NoError(t, ctx.Err(), "the wait ended before the caller's deadline")
				assert.Less(t, took, 2*time.Second)
				assert.Contains(t, err.Error(), "left open", "the error names the likely cause")
			} else {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Less(t, took, c.deadline+time.Second, "the deadline ends the wait")
			}
		})
	}
}

// A commit that the server cuts off (backend terminated, or ctx ends while
// COMMIT runs) is reported as unknown and fn does not run again.
func TestAttackTxCommitCutOff(t *testing.T) {
	db := atkOpenPG(t, PoolConfig{})
	table := atkCounter(t, db)
	bg := context.Background()
	// COMMIT takes 1s: a deferred constraint trigger sleeps.
	for _, q := range []string{
		"CREATE OR REPLACE FUNCTION " + table + "_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$",
		"CREATE CONSTRAINT TRIGGER " + table + "_slow AFTER UPDATE ON " + table + " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + table + "_slow()",
	} {
		_, err := db.ExecContext(bg, q)
		require.NoError(t, err)
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP FUNCTION IF EXISTS "+table+"_slow() CASCADE") })

	cases := []struct {
		name string
		cut  func(pid int, cancel context.CancelFunc)
	}{
		{"backend terminated", func(pid int, _ context.CancelFunc) {
			_, err := db.ExecContext(bg, "SELECT pg_terminate_backend($1)", pid)
			assert.NoError(t, err)
		}},
		{"ctx cancelled", func(_ int, cancel context.CancelFunc) { cancel() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := db.ExecContext(bg, "UPDATE "+table+" SET n = 0 WHERE id = 1")
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			calls := 0
			var pid int
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
					return err
				}
				if err := atkIncrement(ctx, tx, table); err != nil {
					return err
				}
				time.AfterFunc(300*time.Millisecond, func() { c.cut(pid, cancel) })
				return nil
			})
			require.Error(t, err)
			t.Logf("%v", err)
			assert.ErrorIs(t, err, ErrCommitUnknown)
			assert.False(t, IsRetryable(err))
			assert.Equal(t, 1, calls, "never retried")
		})
	}
}

// A read-only Tx that writes fails, once, on both dialects, and leaves
// its connection fit for writers (pool of one).
func TestAttackTxReadOnlyWrites(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{MaxOpenConns: 1})
			table := atkCounter(t, db)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			calls := 0
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				return atkIncrement(ctx, tx, table)
			}, WithReadOnly())
			require.Error(t, err)
			t.Logf("%v", err)
			assert.False(t, IsRetryable(err))
			assert.Equal(t, 1, calls)
			require.NoError(t, db.Tx(ctx, func(tx *sql.Tx) error { return atkIncrement(ctx, tx, table) }))
			_, err = db.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
			require.NoError(t, err)
			assert.Equal(t, 2, atkCount(t, db, table))
		})
	}
}

// Isolation levels: what PostgreSQL refuses, SQLite must refuse too, or
// code that passes on the fallback fails in production; what it accepts
// keeps a read-modify-write exact where it promises to.
func TestAttackTxIsolationLevels(t *testing.T) {
	levels := []struct {
		level sql.IsolationLevel
		ok    bool
	}{
		{sql.LevelRepeatableRead, true},
		{sql.LevelSnapshot, true},
		{sql.LevelSerializable, true},
		{sql.LevelWriteCommitted, false},
		{sql.LevelLinearizable, false},
		{sql.IsolationLevel(42), false},
	}
	for _, d := range atkDialects() {
		for _, l := range levels {
			t.Run(d.name+"/"+l.level.String(), func(t *testing.T) {
				db := d.open(t, PoolConfig{})
				table := atkCounter(t, db)
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				defer cancel()
				const workers, each = 4, 10
				var wg sync.WaitGroup
				errs := make(chan error, workers*each)
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range each {
							errs <- db.Tx(ctx, func(tx *sql.Tx) error { return atkIncrement(ctx, tx, table) }, WithIsolation(l.level))
						}
					}()
				}
				wg.Wait()
				close(errs)
				failed := 0
				var first error
				for err := range errs {
					if err != nil {
						failed++
						first = err
					}
				}
				if l.ok {
					assert.Zero(t, failed, "%v", first)
					assert.Equal(t, workers*each, atkCount(t, db, table))
				} else {
					assert.Equal(t, workers*each, failed, "refused")
					t.Logf("%v", first)
				}
			})
		}
	}
}

// A context that ends before BEGIN, or while fn runs, ends the call
// with ctx's error and rolls back; fn does not run again.
func TestAttackTxContextEnds(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			calls := 0
			err := db.Tx(ctx, func(tx *sql.Tx) error { calls++; return nil })
			assert.ErrorIs(t, err, context.Canceled)
			assert.Zero(t, calls)

			ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				calls++
				if err := atkIncrement(ctx, tx, table); err != nil {
					return err
				}
				<-ctx.Done()
				return nil
			})
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.NotErrorIs(t, err, ErrCommitUnknown)
			assert.Equal(t, 1, calls)
			assert.Equal(t, 0, atkCount(t, db, table))
		})
	}
}

// SQLite: another process holds the write lock. Tx waits for it once,
// within the busy timeout, says so, and does not retry; so does a plain
// write on the pool.
func TestAttackTxOtherProcessHoldsLock(t *testing.T) {
	db, path := atkOpenSQLitePath(t, t.TempDir()+"/atk.db", 700*time.Millisecond, PoolConfig{})
	table := atkCounter(t, db)
	release := atkHoldLock(t, path)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	calls := 0
	start := time.Now()
	err := db.Tx(ctx, func(tx *sql.Tx) error { calls++; return atkIncrement(ctx, tx, table) })
	took := time.Since(start)
	require.Error(t, err)
	t.Logf("Tx took %s: %v", took, err)
	assert.False(t, IsRetryable(err))
	assert.LessOrEqual(t, calls, 1)
	assert.Less(t, took, 2*time.Second, "one busy timeout, not several")
	assert.Contains(t, err.Error(), "another process")

	start = time.Now()
	_, err = db.ExecContext(ctx, "UPDATE "+table+" SET n = 9 WHERE id = 1")
	took = time.Since(start)
	require.Error(t, err)
	t.Logf("Exec took %s: %v", took, err)
	assert.Less(t, took, 2*time.Second)

	release()
	require.NoError(t, db.Tx(ctx, func(tx *sql.Tx) error { return atkIncrement(ctx, tx, table) }))
	assert.Equal(t, 1, atkCount(t, db, table))
}

// SQLite, no session: a write through db inside fn waits for fn's own
// transaction once (busy timeout), fails naming the cause, and the whole
// Tx is not retried.
func TestAttackTxWriteThroughDBInside(t *testing.T) {
	db := atkOpenSQLite(t, 600*time.Millisecond, PoolConfig{})
	table := atkCounter(t, db)
	ctx := context.Background()
	calls := 0
	start := time.Now()
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		calls++
		if err := atkIncrement(ctx, tx, table); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, "UPDATE "+table+" SET n = n + 10 WHERE id = 1")
		return err
	})
	took := time.Since(start)
	require.Error(t, err)
	t.Logf("took %s: %v", took, err)
	assert.Equal(t, 1, calls)
	assert.Less(t, took, 1500*time.Millisecond)
	assert.Contains(t, err.Error(), "instead of tx")
	assert.Equal(t, 0, atkCount(t, db, table))
}

// Tx inside Tx, both with one request's context, on SQLite: the inner one
// would wait for the outer's lock; it fails at once, naming the cause.
func TestAttackTxNestedInRequest(t *testing.T) {
	db := atkOpenSQLite(t, 0, PoolConfig{})
	table := atkCounter(t, db)
	var inner, outer error
	var took time.Duration
	h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		outer = db.Tx(ctx, func(tx *sql.Tx) error {
			if err := atkIncrement(ctx, tx, table); err != nil {
				return err
			}
			start := time.Now()
			inner = db.Tx(ctx, func(tx2 *sql.Tx) error { return atkIncrement(ctx, tx2, table) })
			took = time.Since(start)
			return nil // the outer transaction carries on without the inner one
		})
	}))
	returned, _ := atkServe(t, h, 5*time.Second)
	require.True(t, returned)
	require.NoError(t, outer)
	require.Error(t, inner)
	t.Logf("inner after %s: %v", took, inner)
	assert.Less(t, took, time.Second)
	assert.False(t, IsRetryable(inner))
	assert.Equal(t, 1, atkCount(t, db, table))
}

// Tx inside Tx: an inner Tx that ran out of its budget must not have the
// outer one spend another budget on it (nor a caller's own retry loop
// that asks IsRetryable): the budget bounds a call once.
func TestAttackTxNestedBudget(t *testing.T) {
	db := atkOpenPG(t, PoolConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	const inner, outer = 200 * time.Millisecond, time.Second
	innerCalls, outerCalls := 0, 0
	start := time.Now()
	err := db.Tx(ctx, func(*sql.Tx) error {
		outerCalls++
		return db.Tx(ctx, func(tx *sql.Tx) error {
			innerCalls++
			_, err := tx.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
			return err
		}, WithRetryBudget(inner))
	}, WithRetryBudget(outer))
	took := time.Since(start)
	t.Logf("took %s, outer ran %d times, inner %d: %v", took, outerCalls, innerCalls, err)
	var te *TxError
	require.ErrorAs(t, err, &te)
	assert.False(t, IsRetryable(err), "a spent budget is final")
	assert.Equal(t, 1, outerCalls)
	assert.Less(t, took, outer)
}

// A fn that swallows a failed statement and returns nil: PostgreSQL has
// aborted the transaction, refuses what follows and rolls it back at
// COMMIT. SQLite must do the same, or the fallback commits half of what
// production rolls back. A savepoint rolled back to recovers on both.
func TestAttackTxSwallowedError(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			ctx := context.Background()
			var afterErr error
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, n) VALUES (1, 5)")
				require.Error(t, err, "duplicate key")
				_, afterErr = tx.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
				return nil // swallowed
			})
			t.Logf("statement after the failure: %v; Tx: %v", afterErr, err)
			assert.Error(t, afterErr, "the aborted transaction refuses the next statement")
			require.Error(t, err, "Tx reports the rollback")
			assert.ErrorIs(t, err, pgx.ErrTxCommitRollback)
			assert.False(t, IsRetryable(err))
			assert.Equal(t, 0, atkCount(t, db, table), "nothing committed")

			err = db.Tx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "SAVEPOINT before_insert"); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, n) VALUES (1, 5)"); err == nil {
					return errors.New("duplicate accepted")
				}
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT before_insert"); err != nil {
					return err
				}
				return atkIncrement(ctx, tx, table)
			})
			require.NoError(t, err, "a savepoint rolled back to recovers the transaction")
			assert.Equal(t, 1, atkCount(t, db, table))

			// The same through a prepared statement and through rows that
			// fail while read (INSERT … RETURNING a duplicate).
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				st, err := tx.PrepareContext(ctx, "INSERT INTO "+table+" (id, n) VALUES ($1, 0) RETURNING id")
				if err != nil {
					return err
				}
				defer st.Close()
				var id int
				require.Error(t, st.QueryRowContext(ctx, 1).Scan(&id))
				return nil
			})
			require.Error(t, err)
			assert.ErrorIs(t, err, pgx.ErrTxCommitRollback)
			assert.Equal(t, 1, atkCount(t, db, table))
		})
	}
}

// BenchmarkAttackOwnerCost measures what the own-lock check costs a
// SQLite transaction begun with a request's context (it records the
// goroutine that began it), against the same Tx with a plain context,
// the two taken in turn within each op so that a shared machine's load
// falls on both alike; and goroutineID alone.
func BenchmarkAttackOwnerCost(b *testing.B) {
	b.Run("tx", func(b *testing.B) {
		db := benchDB(b, "sqlite")
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, "CREATE TABLE bench_owner (v INTEGER)"); err != nil {
			b.Fatal(err)
		}
		s := &Session{db: db}
		defer s.end()
		rctx := context.WithValue(ctx, sessionKey{}, s)
		insert := func(ctx context.Context) func(tx *sql.Tx) error {
			return func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO bench_owner (v) VALUES (1)")
				return err
			}
		}
		var took [2]time.Duration // plain, request
		ctxs := [2]context.Context{ctx, rctx}
		n := 0
		for b.Loop() {
			for k := range 2 { // alternate which goes first
				i := (n + k) % 2
				start := time.Now()
				if err := db.Tx(ctxs[i], insert(ctxs[i])); err != nil {
					b.Fatal(err)
				}
				took[i] += time.Since(start)
			}
			n++
		}
		plain, request := took[0], took[1]
		b.ReportMetric(float64(plain.Microseconds())/float64(n), "µs/plain")
		b.ReportMetric(float64(request.Microseconds())/float64(n), "µs/request")
		b.ReportMetric(float64(request)/float64(plain), "request/plain")
	})
	// What each way of reading a goroutine's number costs with 0, 20 and
	// 40 more frames on the stack: the whole traceback (goroutineID, what
	// a waiting writer pays) against the two-frame helper goroutine that
	// hold starts (waited for here; the transaction does not wait).
	for _, depth := range []int{0, 20, 40} {
		b.Run(fmt.Sprintf("traceback/depth-%d", depth), func(b *testing.B) {
			atkDeep(depth, func() {
				for b.Loop() {
					goroutineID()
				}
			})
		})
		b.Run(fmt.Sprintf("helper/depth-%d", depth), func(b *testing.B) {
			atkDeep(depth, func() {
				for b.Loop() {
					o := &gateOwner{learned: make(chan struct{})}
					go o.learnGoroutine()
					<-o.learned
				}
			})
		})
	}
}

// atkDeep calls f under depth more frames.
func atkDeep(depth int, f func()) {
	if depth == 0 {
		f()
		return
	}
	atkDeep(depth-1, f)
}

// SQLite, in a request: fn hands a write through db to another goroutine
// and waits for it. That goroutine is not the one that began the
// transaction, so it is not refused at once; its wait is still bounded by
// the busy timeout, once, and names the cause.
func TestAttackTxWriteFromHelperGoroutine(t *testing.T) {
	db := atkOpenSQLite(t, 600*time.Millisecond, PoolConfig{})
	table := atkCounter(t, db)
	var err error
	var took time.Duration
	calls := 0
	h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		start := time.Now()
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			calls++
			if err := atkIncrement(ctx, tx, table); err != nil {
				return err
			}
			done := make(chan error)
			go func() {
				_, err := db.ExecContext(ctx, "UPDATE "+table+" SET n = n + 10 WHERE id = 1")
				done <- err
			}()
			return <-done
		})
		took = time.Since(start)
	}))
	returned, _ := atkServe(t, h, 5*time.Second)
	require.True(t, returned)
	require.Error(t, err)
	t.Logf("took %s: %v", took, err)
	assert.Equal(t, 1, calls)
	assert.False(t, IsRetryable(err))
	assert.Less(t, took, 1500*time.Millisecond)
	assert.Contains(t, err.Error(), "instead of tx")
	assert.Equal(t, 0, atkCount(t, db, table))
}

// SQLite: a query that starts with SELECT but carries a write after a
// semicolon writes like any other: it queues for the write lock, its wait
// is bounded and named, and it never reports a bare "database is locked".
func TestAttackSQLiteMultiStatementQuery(t *testing.T) {
	db := atkOpenSQLite(t, 500*time.Millisecond, PoolConfig{})
	table := atkCounter(t, db)
	ctx := context.Background()
	left, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = left.ExecContext(ctx, "UPDATE "+table+" SET n = 3 WHERE id = 1")
	require.NoError(t, err)
	queries := []string{
		"SELECT 1; UPDATE " + table + " SET n = 9 WHERE id = 1",
		"SELECT ';' /* ; */ ; -- a comment\n UPDATE " + table + " SET n = 9 WHERE id = 1",
	}
	for _, q := range queries {
		rows, err := db.QueryContext(ctx, q)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		require.Error(t, err, q)
		t.Logf("%v", err)
		assert.Contains(t, err.Error(), "left open", "the wait is the gate's, with its cause")
	}
	require.NoError(t, left.Rollback())
	// A lone statement with a semicolon in a string or a trailing one is a
	// read, and does not wait for the write lock.
	other, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer other.Rollback()
	for _, q := range []string{"SELECT ';' FROM " + table + ";", "SELECT n FROM " + table + " -- ; not a statement"} {
		start := time.Now()
		rows, err := db.QueryContext(ctx, q)
		require.NoError(t, err, q)
		rows.Close()
		assert.Less(t, time.Since(start), 300*time.Millisecond, q)
	}
}
