package dbfallback

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// SQLite tuning for a web server. WAL lets readers run while one writer
// writes; synchronous=NORMAL is durable across process crashes in WAL mode
// (only an OS crash can lose the last transactions); immediate
// transactions take the write lock at BEGIN, so a read-then-write
// transaction never fails half-way with SQLITE_BUSY.
const (
	sqliteBusyTimeout = 10 * time.Second
	sqliteFileParams  = "_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1&_txlock=immediate&_busy_timeout=10000"
	sqliteMemParams   = "_foreign_keys=1&_txlock=immediate&_busy_timeout=10000"
)

var sqliteFilePool = PoolConfig{MaxOpenConns: 8, MaxIdleConns: 8, ConnMaxIdleTime: 5 * time.Minute}

// openSQLite opens t, creating its directory (0700) and file (0600) when
// missing and moving aside a damaged SQLite database (see
// prepareSQLiteFile).
func openSQLite(ctx context.Context, o *options, t Target) (*engine, error) {
	if t.Memory {
		return openSQLiteMemory(ctx, o, t)
	}
	note, err := prepareSQLiteFile(ctx, t.Path, o.now)
	if err != nil {
		return nil, err
	}
	dsn := sqliteDSN(t, sqliteFileParams)
	db := sql.OpenDB(&gatedConnector{dsn: dsn, gate: newWriteGate(sqliteBusyTimeout)})
	o.pool.withDefaults(sqliteFilePool).apply(db)
	if err := checkSQLite(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &engine{db: db, note: note}, nil
}

// openSQLiteMemory opens a private in-memory database on SQLite's memdb
// VFS, which, unlike ":memory:", is shared by every connection of the pool
// with normal locking. A keeper connection outside the pool holds it open
// until Close, so the data lives as long as the DB however long the pool
// stays idle.
func openSQLiteMemory(ctx context.Context, o *options, t Target) (*engine, error) {
	name := t.Path
	if name == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name = "dbfallback-" + hex.EncodeToString(b[:])
	}
	mt := Target{Dialect: SQLite, Path: "/" + strings.TrimPrefix(name, "/"), Params: map[string]string{"vfs": "memdb"}}
	for k, v := range t.Params {
		if k != "mode" && k != "cache" {
			mt.Params[k] = v
		}
	}
	dsn := sqliteDSN(mt, sqliteMemParams)
	keeper, err := (&sqlite3.SQLiteDriver{}).Open(dsn)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(&gatedConnector{dsn: dsn, gate: newWriteGate(sqliteBusyTimeout)})
	o.pool.withDefaults(sqliteFilePool).apply(db)
	if err := checkSQLite(ctx, db); err != nil {
		db.Close()
		keeper.Close()
		return nil, err
	}
	return &engine{db: db, closers: []func() error{keeper.Close}}, nil
}

// sqliteDSN appends the tuning parameters after the target's own, which
// win: go-sqlite3 reads the first value of a repeated key.
func sqliteDSN(t Target, tuning string) string {
	base := buildSQLiteDSN(t, false)
	if strings.IndexByte(base, '?') >= 0 {
		return base + "&" + tuning
	}
	return base + "?" + tuning
}

// checkSQLite opens a connection and reads the schema, which fails on a
// file SQLite cannot use.
func checkSQLite(ctx context.Context, db *sql.DB) error {
	var n int
	return db.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&n)
}

// writeGate serializes SQLite writers inside the process. Waiters queue in
// order instead of polling the busy handler, so no writer starves and
// none sees "database is locked"; other processes still meet the busy
// timeout.
type writeGate struct {
	ch   chan struct{}
	wait time.Duration
}

func newWriteGate(wait time.Duration) *writeGate {
	return &writeGate{ch: make(chan struct{}, 1), wait: wait}
}

// errWriteLockWait reports a writer that waited the whole busy timeout.
var errWriteLockWait = errors.New("dbfallback: waited too long for the SQLite write lock (a transaction left open?)")

func (g *writeGate) acquire(ctx context.Context) error {
	select {
	case g.ch <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errWriteLockWait
	}
}

func (g *writeGate) release() { <-g.ch }

// gatedConnector opens go-sqlite3 connections that take the write gate for
// write transactions and for statements executed outside a transaction.
type gatedConnector struct {
	dsn  string
	gate *writeGate
}

func (c *gatedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := (&sqlite3.SQLiteDriver{}).Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &gatedConn{SQLiteConn: conn.(*sqlite3.SQLiteConn), gate: c.gate}, nil
}

func (c *gatedConnector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

// gatedConn wraps a go-sqlite3 connection. database/sql uses one
// connection from one goroutine at a time, so inTx needs no lock.
type gatedConn struct {
	*sqlite3.SQLiteConn
	gate *writeGate
	inTx bool
}

func (c *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if opts.ReadOnly {
		// A deferred BEGIN: readers share the database in WAL mode and need
		// no write lock. query_only makes SQLite refuse writes, as the
		// caller asked.
		if _, err := c.SQLiteConn.ExecContext(ctx, "PRAGMA query_only = 1", nil); err != nil {
			return nil, err
		}
		if _, err := c.SQLiteConn.ExecContext(ctx, "BEGIN", nil); err != nil {
			c.SQLiteConn.ExecContext(context.Background(), "PRAGMA query_only = 0", nil)
			return nil, err
		}
		c.inTx = true
		return &gatedTx{conn: c}, nil
	}
	if err := c.gate.acquire(ctx); err != nil {
		return nil, err
	}
	tx, err := c.SQLiteConn.BeginTx(ctx, opts)
	if err != nil {
		c.gate.release()
		return nil, err
	}
	c.inTx = true
	return &gatedTx{conn: c, inner: tx, gated: true}, nil
}

func (c *gatedConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if !c.inTx {
		if err := c.gate.acquire(ctx); err != nil {
			return nil, err
		}
		defer c.gate.release()
	}
	return c.SQLiteConn.ExecContext(ctx, query, args)
}

// gatedTx ends a transaction and releases the gate it holds.
type gatedTx struct {
	conn  *gatedConn
	inner driver.Tx // nil for a read-only transaction begun by hand
	gated bool
}

func (t *gatedTx) Commit() error { return t.end("COMMIT") }

func (t *gatedTx) Rollback() error { return t.end("ROLLBACK") }

func (t *gatedTx) end(stmt string) error {
	defer func() {
		t.conn.inTx = false
		if t.gated {
			t.gated = false
			t.conn.gate.release()
		}
	}()
	if t.inner != nil {
		if stmt == "COMMIT" {
			return t.inner.Commit()
		}
		return t.inner.Rollback()
	}
	_, err := t.conn.SQLiteConn.ExecContext(context.Background(), stmt, nil)
	if err != nil && stmt == "COMMIT" {
		t.conn.SQLiteConn.ExecContext(context.Background(), "ROLLBACK", nil)
	}
	if _, qerr := t.conn.SQLiteConn.ExecContext(context.Background(), "PRAGMA query_only = 0", nil); qerr != nil && err == nil {
		err = qerr
	}
	return err
}
