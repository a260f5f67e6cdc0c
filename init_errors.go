package dbfallback

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err says that the database could not do
// the work for a reason outside the statement: the connection was lost or
// refused, the server is shutting down, out of resources or read-only, the
// disk is full or failing, or the database is busy. Errors it does not
// recognise count as not unavailable: a syntax error, a constraint
// violation, a missing table or a migration tool's own error are bugs
// that another database would not fix.
//
// [Open] uses it for errors from [WithInit] hooks: an unavailable
// database passes to the next candidate, any other error fails Open,
// since falling back would move the service's data to another database.
// Errors of ctx itself (context.Canceled, context.DeadlineExceeded) are not
// unavailability; Open returns ctx's error when ctx is done.
//
// Recognised:
//   - driver.ErrBadConn, network errors (*net.OpError, *net.DNSError),
//     refused, reset, aborted or broken connections, an
//     unexpected EOF, pgconn.ErrConnClosed, a failed connection attempt
//     (*pgconn.ConnectError);
//   - I/O errors, a full disk or quota, a read-only filesystem (EIO,
//     ENOSPC, EDQUOT, EROFS);
//   - PostgreSQL SQLSTATE classes 08 (connection exception), 53
//     (insufficient resources: disk full, out of memory, too many
//     connections) and 57P (operator intervention: shutdown, crash,
//     starting up, database dropped), 58030 (I/O error), 25006 (read-only
//     transaction, as on a standby), 55P03 (lock not available), 40001 and
//     40P01 (serialization failure, deadlock);
//   - SQLite busy, locked, I/O error, full, read-only, cannot open, out of
//     memory, locking protocol, corrupt and not-a-database errors, and a
//     writer that waited out the in-process write lock.
//
// IsUnavailable and [IsPermanent] answer different questions: IsPermanent
// whether connecting again can help (WithPrimaryWait retries only what it
// is not), IsUnavailable whether a failure is the database's state rather
// than the statement's. A refused connection is unavailable and not
// permanent; a wrong password is permanent; a syntax error is neither.
func IsUnavailable(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	network := errors.As(err, &oe) || errors.As(err, &de)
	if err == nil || !network && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, errWriteLockWait) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return unavailableSQLState(pg.Code)
	}
	if code, ok := sqliteCode(err); ok {
		return unavailableSQLiteCodes[code&0xff]
	}
	var ce *pgconn.ConnectError
	if network || errors.As(err, &ce) {
		return true
	}
	var errno syscall.Errno
	return errors.As(err, &errno) && unavailableErrnos[errno]
}

// unavailableSQLState reports the SQLSTATEs IsUnavailable recognises.
func unavailableSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "57P"):
		return true
	}
	switch code {
	case "58030", // io_error
		"25006", // read_only_sql_transaction (a standby)
		"55P03", // lock_not_available
		"40001", // serialization_failure
		"40P01": // deadlock_detected
		return true
	}
	return false
}

// unavailableSQLiteCodes are the primary result codes IsUnavailable
// recognises, the same on every SQLite engine.
var unavailableSQLiteCodes = map[int]bool{
	sqlengine.Busy:     true,
	sqlengine.Locked:   true,
	sqlengine.NoMem:    true,
	sqlengine.ReadOnly: true,
	sqlengine.IOErr:    true,
	sqlengine.Corrupt:  true,
	sqlengine.Full:     true,
	sqlengine.CantOpen: true,
	sqlengine.Protocol: true,
	sqlengine.NotADB:   true,
}

var unavailableErrnos = map[syscall.Errno]bool{
	syscall.ECONNREFUSED: true,
	syscall.ECONNRESET:   true,
	syscall.ECONNABORTED: true,
	syscall.EPIPE:        true,
	syscall.ETIMEDOUT:    true,
	syscall.EHOSTUNREACH: true,
	syscall.ENETUNREACH:  true,
	syscall.ENETDOWN:     true,
	syscall.EIO:          true,
	syscall.ENOSPC:       true,
	syscall.EDQUOT:       true,
	syscall.EROFS:        true,
}

// initError is a failed WithInit hook: Error is redacted, Unwrap gives the
// hook's own error, so errors.Is and errors.As see the driver's error
// (a *pgconn.PgError, a sqlite3.Error or modernc's *sqlite.Error) or the
// migration tool's.
type initError struct {
	msg string
	err error
}

func (e *initError) Error() string    { return e.msg }
func (e *initError) Unwrap() error    { return e.err }
func (e *initError) GoString() string { return fmt.Sprintf("%q", e.msg) }

// runInits runs the WithInit hooks in order and returns the first error,
// redacted and wrapped. A hook that panics has db closed (no pool, file or
// connection is left open behind the panic) and the panic goes on to
// Open's caller, as in Tx: a panic is a bug, never a reason to fall back.
func runInits(ctx context.Context, o *options, db *DB) error {
	defer func() {
		if p := recover(); p != nil {
			db.Close()
			panic(p)
		}
	}()
	for i, fn := range o.inits {
		if err := fn(ctx, db); err != nil {
			kind := "a bug: not falling back"
			if IsUnavailable(err) {
				kind = "the database is unavailable"
			}
			msg := fmt.Sprintf("dbfallback: init hook %d on %s (%s): %s", i+1, db.target, kind,
				scrubSecrets(err.Error(), secretsOf(db.target)...))
			return &initError{msg: msg, err: err}
		}
	}
	if n := db.DB.Stats().InUse; n > 0 {
		// A transaction the hooks began and never ended would hold SQLite's
		// write lock (or PostgreSQL's row locks) until Open's ctx ends, and
		// every write of the service would wait behind it.
		msg := fmt.Sprintf("dbfallback: init hooks on %s (a bug: not falling back): %s", db.target, errInitLeftOpen.Error()[len("dbfallback: "):])
		return &initError{msg: fmt.Sprintf("%s (%d connections)", msg, n), err: errInitLeftOpen}
	}
	return nil
}

// errInitLeftOpen is the cause of the error Open returns when the WithInit
// hooks returned while holding pool connections.
var errInitLeftOpen = errors.New("dbfallback: the hooks returned with connections still in use: a transaction neither committed nor rolled back, rows or a Conn not closed")
