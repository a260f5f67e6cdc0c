//go:build !cgo || dbfallback_puresqlite

package puresqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"modernc.org/sqlite"
)

// engine.go registers modernc.org/sqlite as dbfallback's SQLite engine in
// a build without cgo (or with the tag dbfallback_puresqlite).

func init() { sqlengine.Register(newEngine()) }

// engine opens connections through the driver modernc.org/sqlite
// registers as "sqlite", so functions and collations a program registers
// there (sqlite.RegisterScalarFunction, …) exist on dbfallback's
// connections too.
type engine struct {
	driver driver.Driver
	ro     *readonlyCache
}

func newEngine() *engine {
	var drv driver.Driver = &sqlite.Driver{}
	// sql.Open connects nothing; it finds the registered driver.
	if db, err := sql.Open("sqlite", ""); err == nil {
		drv = db.Driver()
		db.Close()
	}
	return &engine{driver: drv, ro: newReadonlyCache()}
}

func (e *engine) Name() string { return "modernc.org/sqlite" }

func (e *engine) Driver() driver.Driver { return e.driver }

func (e *engine) Open(dsn string) (sqlengine.Conn, error) {
	translated, err := translateDSN(dsn)
	if err != nil {
		return nil, err
	}
	c, err := e.driver.Open(translated)
	if err != nil {
		return nil, err
	}
	mc, ok := c.(moderncConn)
	if !ok {
		c.Close()
		return nil, errors.New("dbfallback/puresqlite: modernc.org/sqlite's connection lacks a method dbfallback needs (a version mismatch?)")
	}
	return &conn{moderncConn: mc, ro: e.ro}, nil
}

// Code returns the extended result code of modernc's *sqlite.Error.
func (e *engine) Code(err error) (int, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return 0, false
	}
	return se.Code(), true
}

// moderncConn is what modernc.org/sqlite's connection implements.
type moderncConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type conn struct {
	moderncConn
	ro *readonlyCache
}

// PrepareStmt prepares query and learns whether it writes (see
// readonly.go).
func (c *conn) PrepareStmt(ctx context.Context, query string) (sqlengine.Stmt, error) {
	st, err := c.moderncConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	ms, ok := st.(moderncStmt)
	if !ok {
		st.Close()
		return nil, errors.New("dbfallback/puresqlite: modernc.org/sqlite's statement lacks a method dbfallback needs (a version mismatch?)")
	}
	return &stmt{moderncStmt: ms, readonly: c.ro.readonly(ctx, c.moderncConn, query, st.NumInput())}, nil
}

func (c *conn) Driver() driver.Conn { return c.moderncConn }

// moderncStmt is what modernc.org/sqlite's statement implements.
type moderncStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type stmt struct {
	moderncStmt
	readonly bool
}

func (s *stmt) Readonly() bool { return s.readonly }
