package dbfallback

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TxError is the error [DB.Tx] returns when a retryable conflict outlasted
// the retry budget; errors.Is and errors.As see the last attempt's error.
// [IsRetryable] reports it as final: the budget was spent, and a caller
// (or an enclosing Tx) that ran the call again would spend another.
type TxError struct {
	// Attempts is how many times fn ran.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

// Error says how many attempts ran and why the last one failed.
func (e *TxError) Error() string {
	return fmt.Sprintf("dbfallback: transaction failed after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *TxError) Unwrap() error { return e.Err }

// ErrCommitUnknown matches (with errors.Is) the error of a commit whose
// outcome is unknown: the connection was lost, the server ended the
// session, or ctx ended while COMMIT was under way. The transaction may
// have committed or not; only the database can tell (read back what it
// wrote, or make the write idempotent). [DB.Tx] never retries it, since
// running fn again could apply it twice. The error also wraps the
// driver's, so errors.Is(err, context.DeadlineExceeded) still works.
var ErrCommitUnknown = errors.New("dbfallback: commit outcome unknown")

// commitUnknownError wraps a commit failure that leaves the outcome open.
type commitUnknownError struct{ err error }

func (e *commitUnknownError) Error() string {
	return "dbfallback: commit outcome unknown (the connection was lost or ctx ended during COMMIT; the transaction may have committed): " + e.err.Error()
}

func (e *commitUnknownError) Unwrap() []error { return []error{ErrCommitUnknown, e.err} }

// commitOutcomeUnknown reports whether a failed Commit may have committed.
// It lists the failures that prove the transaction did not commit and
// calls everything else unknown, so that doubt is never reported as a
// rollback.
//
// A context error is unknown: pgx returns context.Canceled itself when ctx
// ends while it waits for COMMIT's answer, the same error database/sql
// returns when ctx ended before COMMIT was sent. runTx does not call
// Commit once ctx is done, so only a ctx that ends in between is
// misreported, as unknown, which is never wrong.
func commitOutcomeUnknown(err error) bool {
	//
	// pgconn.SafeToRetry does not prove that COMMIT was not sent: pgx
	// returns its "conn closed" error, which it calls safe to retry, when
	// the server closes the connection after a COMMIT that it made durable
	// (a backend terminated while waiting for a synchronous standby).
	if errors.Is(err, sql.ErrTxDone) || // already ended: nothing was sent
		errors.Is(err, pgx.ErrTxCommitRollback) || // the server rolled back a failed transaction
		errors.Is(err, errCommitShut) { // rolled back by Close before the final snapshot
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		// An ERROR (a serialization failure at commit, a deferred
		// constraint) rolls the transaction back; a FATAL or PANIC ends the
		// session, and may come after the commit was made durable (a
		// terminated backend waiting for synchronous replication).
		sev := pg.SeverityUnlocalized
		if sev == "" {
			sev = pg.Severity
		}
		return strings.EqualFold(sev, "FATAL") || strings.EqualFold(sev, "PANIC")
	}
	// SQLite is in the process: a failed COMMIT is rolled back by either
	// engine before it returns.
	_, lite := sqliteCode(err)
	return !lite
}

// IsRetryable reports a conflict that running the transaction again can
// resolve without waiting out a lock: PostgreSQL's serialization failure
// (40001) and deadlock (40P01), and SQLite busy errors returned without
// waiting: SQLITE_BUSY reported at once (SQLITE_BUSY_SNAPSHOT, a lock the
// busy handler cannot wait for, a zero busy timeout) and SQLITE_LOCKED.
//
// A wait that already used the whole busy timeout is not retryable:
// another attempt would wait as long again behind the same holder (a
// transaction left open, another process, or a write through the pool
// inside the caller's own transaction); nor is PostgreSQL's lock timeout
// (55P03), its equivalent. Neither is an error matching
// [ErrCommitUnknown], nor a *[TxError], whose retry budget is spent.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, ErrCommitUnknown) {
		return false
	}
	var lw *lockWaitError
	var te *TxError
	if errors.As(err, &lw) || errors.As(err, &te) {
		return false
	}
	if isBusy(err) {
		return true
	}
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}

// isBusy reports SQLite's "database is locked" and "table is locked", and
// a writer that found the in-process write lock taken with a zero busy
// timeout.
func isBusy(err error) bool {
	if code, ok := sqliteCode(err); ok {
		return code&0xff == sqlengine.Busy || code&0xff == sqlengine.Locked
	}
	return errors.Is(err, errWriteLockBusy)
}

// pgLockTimeout is PostgreSQL's lock_not_available: a statement waited
// lock_timeout for a lock and gave up.
const pgLockTimeout = "55P03"

// pgLockWaitError names the likely cause of a PostgreSQL lock timeout
// met in [DB.Tx], as *lockWaitError does for SQLite's busy timeout.
type pgLockWaitError struct{ err error }

func (e *pgLockWaitError) Error() string {
	return "dbfallback: PostgreSQL transaction: a statement waited lock_timeout for a lock another transaction holds: likely a transaction left open, or a write through db or the session instead of tx inside db.Tx or a session transaction: " + e.err.Error()
}

func (e *pgLockWaitError) Unwrap() error { return e.err }

// explainLockWait wraps PostgreSQL's lock timeout in a *pgLockWaitError;
// other errors, and one already wrapped, are returned as they are.
func explainLockWait(err error) error {
	var pg *pgconn.PgError
	var done *pgLockWaitError
	if errors.As(err, &pg) && pg.Code == pgLockTimeout && !errors.As(err, &done) {
		return &pgLockWaitError{err: err}
	}
	return err
}

// checkIsolation refuses, on both dialects, an isolation level that
// PostgreSQL does not have. SQLite runs every transaction serializable
// whatever the level, so without this, code asking for one would pass on
// the SQLite fallback and fail in production.
func checkIsolation(level sql.IsolationLevel) error {
	switch level {
	case sql.LevelDefault, sql.LevelReadUncommitted, sql.LevelReadCommitted,
		sql.LevelRepeatableRead, sql.LevelSnapshot, sql.LevelSerializable:
		return nil
	}
	return fmt.Errorf("dbfallback: begin transaction: isolation level %s: PostgreSQL has no such level, so neither dialect accepts it (use sql.LevelSerializable, the default of db.Tx, or sql.LevelRepeatableRead or sql.LevelReadCommitted)", level)
}
