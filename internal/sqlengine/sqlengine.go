// Package sqlengine is the seam between dbfallback and the SQLite driver it
// runs on. dbfallback keeps everything that does not depend on the driver
// (the in-process write gate, immediate transactions, aborted
// transactions, damaged-file handling, the busy and locked classification
// of Tx and IsRetryable); an Engine supplies the rest: opening a raw
// connection, the DSN spelling, whether a statement writes, and the SQLite
// result code of an error.
//
// Two engines exist. With cgo, dbfallback registers mattn/go-sqlite3 (the
// file sqlite_engine_cgo.go of the library). Without cgo, the separate
// module github.com/dbfallback/dbfallback/puresqlite registers
// modernc.org/sqlite when a program imports it; it is a module of its own
// so that modernc.org/sqlite stays out of the library's go.mod. The build
// tag dbfallback_puresqlite selects the pure-Go engine in a cgo build too.
//
// This package is internal: its API is a contract between the library and
// puresqlite only, which are released together.
package sqlengine

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"
)

// Engine is one SQLite driver.
type Engine interface {
	// Name names the driver in messages: "mattn/go-sqlite3".
	Name() string
	// Open opens one connection. dsn is a SQLite "file:" URI (or
	// ":memory:") whose driver parameters are spelled as mattn/go-sqlite3
	// spells them (_busy_timeout, _journal_mode, _synchronous,
	// _foreign_keys, _txlock, _loc); an engine translates what its driver
	// spells differently, and writes times as "2006-01-02
	// 15:04:05.999999999-07:00", as go-sqlite3 does.
	Open(dsn string) (Conn, error)
	// Driver is the driver.Driver a pool reports from sql.DB.Driver.
	Driver() driver.Driver
	// Code returns SQLite's extended result code of err when err is, or
	// wraps, an error of this driver; the primary code is its low byte.
	Code(err error) (code int, ok bool)
}

// Conn is a raw connection of an Engine. database/sql uses a connection
// from one goroutine at a time.
type Conn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	// PrepareStmt prepares one statement.
	PrepareStmt(ctx context.Context, query string) (Stmt, error)
	// Driver returns the driver's own connection (*sqlite3.SQLiteConn,
	// modernc's conn), for callers of sql.Conn.Raw.
	Driver() driver.Conn
}

// Stmt is a prepared statement of a Conn.
type Stmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
	// Readonly reports whether the statement makes no direct change to
	// the database file, as sqlite3_stmt_readonly does.
	Readonly() bool
}

// Rows are what a Conn's and a Stmt's QueryContext return.
type Rows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypeScanType
}

// SQLite's primary result codes that dbfallback classifies
// (https://sqlite.org/rescode.html); engines return the same numbers.
const (
	Error      = 1
	Perm       = 3
	Busy       = 5
	Locked     = 6
	NoMem      = 7
	ReadOnly   = 8
	IOErr      = 10
	Corrupt    = 11
	Full       = 13
	CantOpen   = 14
	Protocol   = 15
	Constraint = 19
	NotADB     = 26

	// BusySnapshot is SQLITE_BUSY_SNAPSHOT, an extended code.
	BusySnapshot = Busy | 2<<8
)

var (
	mu         sync.Mutex
	registered Engine
)

// Register makes e the SQLite engine of the process. It panics when
// another engine is registered already: two would mean two SQLite
// libraries linked into one binary, each with its own locks.
func Register(e Engine) {
	mu.Lock()
	defer mu.Unlock()
	if registered != nil {
		panic(fmt.Sprintf("dbfallback: SQLite engine %s registered twice (%s is registered)", e.Name(), registered.Name()))
	}
	registered = e
}

// Registered returns the SQLite engine of the process, or nil when none is
// linked in.
func Registered() Engine {
	mu.Lock()
	defer mu.Unlock()
	return registered
}
