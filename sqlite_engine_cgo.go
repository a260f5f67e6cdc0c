//go:build cgo && !dbfallback_puresqlite

package dbfallback

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"github.com/mattn/go-sqlite3"
)

// sqlite_engine_cgo.go is the SQLite engine of a cgo build:
// mattn/go-sqlite3, which dbfallback's DSNs are written for. A build
// without cgo (or with the tag dbfallback_puresqlite) leaves it out, and
// go-sqlite3 with it; see sqlite_engine.go.

func init() { sqlengine.Register(mattnEngine{}) }

type mattnEngine struct{}

func (mattnEngine) Name() string { return "mattn/go-sqlite3" }

func (mattnEngine) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

func (mattnEngine) Open(dsn string) (sqlengine.Conn, error) {
	c, err := (&sqlite3.SQLiteDriver{}).Open(dsn)
	if err != nil {
		return nil, err
	}
	return mattnConn{c.(*sqlite3.SQLiteConn)}, nil
}

// Code reads a sqlite3.Error. Its Code is the primary result code; its
// ExtendedCode, read from the connection, is used when it agrees.
func (mattnEngine) Code(err error) (int, bool) {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return 0, false
	}
	if int(se.ExtendedCode)&0xff == int(se.Code) {
		return int(se.ExtendedCode), true
	}
	return int(se.Code), true
}

// mattnConn is a go-sqlite3 connection, which has every method of a
// sqlengine.Conn but PrepareStmt and Driver.
type mattnConn struct{ *sqlite3.SQLiteConn }

func (c mattnConn) PrepareStmt(ctx context.Context, query string) (sqlengine.Stmt, error) {
	st, err := c.SQLiteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.(*sqlite3.SQLiteStmt), nil
}

func (c mattnConn) Driver() driver.Conn { return c.SQLiteConn }
