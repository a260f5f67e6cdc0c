package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// TxOption configures [DB.Tx].
type TxOption func(*txOptions)

type txOptions struct {
	sql.TxOptions
	tries  int           // 0: no cap
	budget time.Duration // see defaultTxRetryBudget

	// Test seams, set only from export_test.go: report is told how many
	// times fn ran and what Tx returned; backoff replaces txPolicy's waits.
	report  func(tries int, err error)
	backoff *retryPolicy
}

// defaultTxRetryBudget bounds the time Tx keeps retrying a conflict: no
// new attempt starts later than this after the first.
//
// It is a time, not a count, because what a caller can afford is time (a
// request has a deadline) while the attempts a conflict needs grow with
// the number of writers: 64 writers on one PostgreSQL row need up to
// about 50 attempts each, which a count of 5 turned into errors for 30%
// of calls. The load a retrying caller puts on the server is bounded by
// the pool size, not by the count.
//
// It is 30s because the slowest call grows with the writers on a row and
// the time of a commit: database/sql hands a freed connection to a random
// waiter, so among n writers each call waits about n commits on average,
// with a geometric tail. 64 writers on one row took up to 4s (5.7s with
// -race on a loaded shared machine); 30s leaves five times that, and
// stays below the 60s after which proxies commonly time a request out.
const defaultTxRetryBudget = 30 * time.Second

// WithIsolation sets the transaction's isolation level. The default is
// [sql.LevelSerializable] on both dialects: SQLite is serializable by
// nature, and on PostgreSQL a read-modify-write transaction that is
// correct on SQLite loses updates at a weaker level. [sql.LevelReadCommitted]
// is the documented opt-out, for transactions that do not read what they
// write (or lock it with SELECT … FOR UPDATE) and cannot afford the
// serialization failures that Tx retries; [sql.LevelDefault] asks for the
// driver's default, READ COMMITTED on PostgreSQL. SQLite runs every
// transaction serializable whatever the level, but refuses, as PostgreSQL
// does, a level PostgreSQL does not have (sql.LevelWriteCommitted,
// sql.LevelLinearizable), so code asking for one fails on the fallback
// too rather than first in production.
func WithIsolation(level sql.IsolationLevel) TxOption {
	return func(o *txOptions) { o.Isolation = level }
}

// WithReadOnly makes the transaction read-only. On SQLite a read-only
// transaction does not wait for writers.
func WithReadOnly() TxOption {
	return func(o *txOptions) { o.ReadOnly = true }
}

// WithAttempts caps how many times Tx may run fn in all; 1 disables
// retries. By default there is no cap: the retry budget (see
// [WithRetryBudget]) bounds retries.
func WithAttempts(n int) TxOption {
	return func(o *txOptions) { o.tries = max(n, 1) }
}

// WithRetryBudget sets how long after its first attempt Tx may start
// another (default 30s); zero or less means no time limit, leaving
// [WithAttempts] and ctx to bound retries. The budget does not cut an
// attempt short: ctx does that. A request handler usually passes a ctx
// with its own deadline, which ends retries sooner.
func WithRetryBudget(d time.Duration) TxOption {
	return func(o *txOptions) { o.budget = max(d, 0) }
}

// Tx runs fn in a transaction: it commits when fn returns nil, rolls back
// when fn returns an error, panics (the panic then goes on) or leaves by
// runtime.Goexit (t.FailNow in a test).
//
// The transaction is SERIALIZABLE unless [WithIsolation] says otherwise,
// so the same code behaves the same on PostgreSQL and on SQLite: a
// conflicting transaction fails instead of losing an update. When fn, or
// the commit, fails with a conflict the database asks to retry (see
// [IsRetryable]), Tx rolls back and runs fn again in a new transaction,
// after a randomized, growing pause, until it succeeds, the retry budget
// ends (30s, see [WithRetryBudget] and [WithAttempts]), or ctx is done;
// it then returns a *[TxError] wrapping the last error. fn may therefore
// run more than once: keep side effects outside the database out of it.
//
// As on PostgreSQL, a statement that fails aborts the whole transaction,
// on SQLite too: later statements are refused until ROLLBACK TO
// SAVEPOINT, and if fn swallows the error and returns nil, the commit
// rolls back and Tx returns an error matching pgx.ErrTxCommitRollback.
//
// A commit whose outcome is unknown, because the connection was lost or
// ctx ended while COMMIT was under way, returns an error matching
// [ErrCommitUnknown] and is never retried: the transaction may have
// committed.
//
// Waiting for a lock is bounded once: on SQLite a write that waited the
// whole busy timeout for another transaction (one left open, or, inside
// fn, a write through db instead of tx) fails without retry, naming the
// likely cause. On PostgreSQL the bound is the server's lock_timeout,
// which is unset (wait forever) unless the URL (?lock_timeout=10000, in
// milliseconds) or the role sets it; a lock timeout met in Tx is not
// retried either, and names the same causes. Inside fn, use tx for every
// statement: on SQLite a write through db waits for fn's own transaction,
// and on PostgreSQL one on a row fn wrote waits for fn forever unless
// lock_timeout or ctx ends it.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error, opts ...TxOption) error {
	o := txOptions{budget: defaultTxRetryBudget}
	o.Isolation = sql.LevelSerializable
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := checkIsolation(o.Isolation); err != nil {
		return err
	}
	p := txPolicy
	if o.backoff != nil {
		p.initial, p.max, p.spread = o.backoff.initial, o.backoff.max, o.backoff.spread
	}
	p.tries, p.budget = o.tries, o.budget
	tries, err := retry(ctx, p, func() error {
		err := db.runTx(ctx, &o.TxOptions, fn)
		if err != nil && !IsRetryable(err) {
			return stop(err)
		}
		return err
	})
	if err != nil && IsRetryable(err) {
		err = &TxError{Attempts: tries, Err: err}
	}
	err = explainLockWait(err)
	if o.report != nil {
		o.report(tries, err)
	}
	return err
}

// runTx is one attempt of Tx.
func (db *DB) runTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	// Roll back on every way out of fn that is not a return: a panic
	// (which then goes on, its stack intact) and runtime.Goexit, which
	// recover cannot see (t.FailNow, a require inside fn in a test). Left
	// open, the transaction would keep its connection and its locks, on
	// SQLite the process's write lock, until the process exits.
	returned := false
	defer func() {
		if !returned {
			tx.Rollback()
		}
	}()
	err = fn(tx)
	returned = true
	if err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, rerr)
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		// Not committed, and known not to be: say so rather than let
		// Commit fail with a context error that reads as unknown.
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		if commitOutcomeUnknown(err) {
			return &commitUnknownError{err: err}
		}
		return err
	}
	return nil
}
