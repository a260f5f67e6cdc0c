package dbfallback

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// sqlite_txabort.go makes a SQLite transaction in which a statement
// failed behave as a PostgreSQL one does. PostgreSQL aborts the whole
// transaction at the first error: later statements fail ("current
// transaction is aborted", SQLSTATE 25P02) until ROLLBACK or ROLLBACK TO
// SAVEPOINT, and COMMIT rolls back (pgx: ErrTxCommitRollback). SQLite
// fails only the statement and commits the rest, so a function that
// swallows an error (a duplicate key it meant to ignore) committed half a
// transaction on the fallback that production rolls back whole.

// txAbortedError is what a statement of an aborted SQLite transaction
// returns, and what its COMMIT returns after rolling it back. It names
// the first failure but does not wrap it: the later statement did not,
// for example, violate the constraint the first one did.
type txAbortedError struct {
	first  error
	commit bool // returned by COMMIT, which rolled the transaction back
}

func (e *txAbortedError) Error() string {
	if e.commit {
		return "dbfallback: SQLite commit: rolled back, as PostgreSQL does, because a statement of the transaction failed and the transaction went on (return that error from fn, or ROLLBACK TO SAVEPOINT after it): " + e.first.Error()
	}
	return "dbfallback: SQLite statement: the transaction is aborted, as PostgreSQL's would be, because an earlier statement of it failed; statements are refused until ROLLBACK or ROLLBACK TO SAVEPOINT: " + e.first.Error()
}

// Is makes the error of a COMMIT that rolled back match
// pgx.ErrTxCommitRollback, as the same COMMIT does on PostgreSQL.
func (e *txAbortedError) Is(target error) bool {
	return e.commit && target == pgx.ErrTxCommitRollback
}

// txRefuses returns the error a statement of an aborted transaction gets:
// every statement but ROLLBACK (TO SAVEPOINT) is refused. nil when the
// connection has no aborted transaction.
func (c *gatedConn) txRefuses(query string) error {
	if c.aborted == nil || strings.EqualFold(firstKeyword(query), "ROLLBACK") {
		return nil
	}
	return &txAbortedError{first: c.aborted}
}

// txNote records how a statement of the open transaction ended: the first
// failure aborts the transaction; a ROLLBACK TO SAVEPOINT that succeeds
// recovers it.
func (c *gatedConn) txNote(query string, err error) {
	switch {
	case err != nil:
		if c.aborted == nil {
			c.aborted = err
		}
	case c.aborted != nil && strings.EqualFold(firstKeyword(query), "ROLLBACK"):
		c.aborted = nil
	}
}
