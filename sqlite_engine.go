package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
)

// sqlite_engine.go reaches the SQLite engine of the build (see
// internal/sqlengine): go-sqlite3 with cgo, the pure-Go engine of
// github.com/dbfallback/dbfallback/puresqlite when a program built without
// cgo imports it, or none.

// ErrNoSQLiteEngine matches (with errors.Is) the error of a SQLite
// candidate in a build that has no SQLite engine: built without cgo
// (CGO_ENABLED=0), which go-sqlite3 needs, and without importing
// github.com/dbfallback/dbfallback/puresqlite. PostgreSQL works in such a
// build; [Open] with [PreferPrimary] then returns the primary when it
// answers and an error wrapping [ErrNoDatabase] and ErrNoSQLiteEngine when
// it does not, without touching any SQLite location.
var ErrNoSQLiteEngine = errors.New(`dbfallback: no SQLite engine in this build: go-sqlite3 needs cgo, and this program was built without it (CGO_ENABLED=0) or with the tag dbfallback_puresqlite; import _ "github.com/dbfallback/dbfallback/puresqlite" for the pure-Go engine, or build with cgo`)

// SQLiteEngine names the SQLite driver of this build: "mattn/go-sqlite3"
// (cgo), "modernc.org/sqlite" (the pure-Go engine of
// github.com/dbfallback/dbfallback/puresqlite), or "" when the build has
// none (see [ErrNoSQLiteEngine]). It does no I/O.
func SQLiteEngine() string {
	if e := sqlengine.Registered(); e != nil {
		return e.Name()
	}
	return ""
}

// sqliteEngine returns the engine of the build, or ErrNoSQLiteEngine.
func sqliteEngine() (sqlengine.Engine, error) {
	if e := sqlengine.Registered(); e != nil {
		return e, nil
	}
	return nil, ErrNoSQLiteEngine
}

// sqliteCode returns SQLite's extended result code of err when err is an
// error of the build's SQLite engine.
func sqliteCode(err error) (int, bool) {
	if err == nil {
		return 0, false
	}
	e := sqlengine.Registered()
	if e == nil {
		return 0, false
	}
	return e.Code(err)
}

// sqlitePrimary returns SQLite's primary result code of err, 0 when err is
// not a SQLite error.
func sqlitePrimary(err error) int {
	code, _ := sqliteCode(err)
	return code & 0xff
}

// openRawSQLite returns a pool of plain engine connections to dsn, without
// the write gate: the library's own short-lived checks (read-only probes,
// quick_check, the count of stranded rows).
func openRawSQLite(dsn string) (*sql.DB, error) {
	e, err := sqliteEngine()
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(rawConnector{engine: e, dsn: dsn}), nil
}

// rawConnector opens plain engine connections.
type rawConnector struct {
	engine sqlengine.Engine
	dsn    string
}

func (c rawConnector) Connect(context.Context) (driver.Conn, error) { return c.engine.Open(c.dsn) }

func (c rawConnector) Driver() driver.Driver { return c.engine.Driver() }

// sqliteEngine returns the engine Open uses.
func (o *options) sqliteEngine() (sqlengine.Engine, error) {
	if o.noSQLite {
		return nil, ErrNoSQLiteEngine
	}
	return sqliteEngine()
}

// withoutEngineless drops every SQLite candidate but the first from ts
// when the build has no SQLite engine: that one fails with
// ErrNoSQLiteEngine, once, and no SQLite location is touched.
func withoutEngineless(o *options, ts []Target) []Target {
	if _, err := o.sqliteEngine(); err == nil {
		return ts
	}
	var out []Target
	seen := false
	for _, t := range ts {
		if t.Dialect == SQLite {
			if seen {
				continue
			}
			seen = true
		}
		out = append(out, t)
	}
	return out
}
