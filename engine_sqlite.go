package dbfallback

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
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

// openSQLiteBounded opens a SQLite target (see openSQLiteFile) and returns
// by the time ctx is done. SQLite waits for another process's lock in its
// busy handler and replays a write-ahead log without looking at ctx, so a
// file held by another process, or left with a large log by a crash, would
// hold Open past the caller's deadline (or past SIGTERM). The open runs on
// a goroutine of its own; one given up on finishes there, within SQLite's
// busy timeout or the replay, and closes what it opened.
func openSQLiteBounded(ctx context.Context, o *options, t Target) (*engine, error) {
	if ctx.Done() == nil {
		return openSQLiteFile(ctx, o, t)
	}
	type result struct {
		e   *engine
		err error
	}
	ch := make(chan result, 1)
	var mu sync.Mutex
	abandoned := false
	go func() {
		e, err := openSQLiteFile(ctx, o, t)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if e != nil {
				e.close()
			}
			return
		}
		ch <- result{e, err}
	}()
	select {
	case r := <-ch:
		return r.e, r.err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case r := <-ch: // it ended as ctx did
		return r.e, r.err
	default:
		abandoned = true
	}
	return nil, fmt.Errorf("dbfallback: %s did not open in time (another process may hold it locked, or SQLite is replaying a large write-ahead log; that ends in the background): %w", t, ctx.Err())
}

// busyWithin returns SQLite's busy timeout parameter for a connection
// that should not wait longer than limit, nor past ctx's deadline.
func busyWithin(ctx context.Context, limit time.Duration) string {
	if deadline, ok := ctx.Deadline(); ok {
		limit = max(min(limit, time.Until(deadline)), 0)
	}
	return fmt.Sprintf("_busy_timeout=%d", limit.Milliseconds())
}

// openSQLite opens t, creating its directory (0700) and file (0600) when
// missing and moving aside a damaged SQLite database (see
// prepareSQLiteFile).
func openSQLite(ctx context.Context, o *options, t Target) (*engine, error) {
	if t.Memory {
		return openSQLiteMemory(ctx, o, t)
	}
	eng, err := sqliteEngine()
	if err != nil {
		return nil, err
	}
	note, err := prepareSQLiteFile(ctx, t.Path, o.now, o.snap.restoreFunc())
	if err != nil {
		return nil, err
	}
	opened, _ := os.Stat(t.Path) // the file the pool opens, should it be damaged
	dsn := sqliteDSN(t, sqliteFileParams)
	for try := 1; ; try++ {
		gate := newWriteGate(sqliteBusyTimeout)
		seen := &integrity{path: t.Path}
		e, err := openGated(ctx, o, &gatedConnector{engine: eng, dsn: dsn, gate: gate, seen: seen}, &releaser{})
		if err == nil {
			e.note, e.integrity = note, seen
			return e, nil
		}
		// Another process creating the same file (or switching it to
		// WAL) can make SQLite answer busy at once, without waiting in
		// its busy handler: try again, a few times, within ctx.
		if sqlitePrimary(err) != sqlengine.Busy || try == 5 || !sleepCtx(ctx, time.Duration(try)*20*time.Millisecond) {
			return nil, &openedFileError{info: opened, err: err}
		}
	}
}

// openSQLiteMemory opens a private in-memory database on SQLite's memdb
// VFS, which, unlike ":memory:", is shared by every connection of the pool
// with normal locking. A keeper connection outside the pool holds it open
// until Close, so the data lives as long as the DB however long the pool
// stays idle.
func openSQLiteMemory(ctx context.Context, o *options, t Target) (*engine, error) {
	eng, err := sqliteEngine()
	if err != nil {
		return nil, err
	}
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
	keeper, err := eng.Open(dsn)
	if err != nil {
		return nil, err
	}
	rel := &releaser{}
	rel.add(keeper.Close, false)
	gate := newWriteGate(sqliteBusyTimeout)
	return openGated(ctx, o, &gatedConnector{engine: eng, dsn: dsn, gate: gate}, rel)
}

// openGated opens the pool of a SQLite candidate on c and checks it (see
// checkSQLite); on failure everything is released.
func openGated(ctx context.Context, o *options, c *gatedConnector, rel *releaser) (*engine, error) {
	db, pc, err := openPool(o, c, rel)
	if err != nil {
		rel.run()
		return nil, err
	}
	e := &engine{db: db, release: rel, gate: c.gate}
	o.pool.withDefaults(sqliteFilePool).apply(db)
	err = pc.checkOpenedOn(ctx, checkSQLite(ctx, db, c.gate))
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// sqliteDSN appends the tuning parameters after the target's own, which
// win: the engines read the first value of a repeated key.
func sqliteDSN(t Target, tuning string) string {
	base := buildSQLiteDSN(t, false)
	if strings.IndexByte(base, '?') >= 0 {
		return base + "&" + tuning
	}
	return base + "?" + tuning
}

// checkSQLite opens a connection and reads the schema, which fails on a
// file SQLite cannot use, then sizes the write gate's wait to the
// connection's busy timeout (the URL's _busy_timeout wins over ours).
func checkSQLite(ctx context.Context, db *sql.DB, gate *writeGate) error {
	var n int
	if err := db.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&n); err != nil {
		return err
	}
	wait, err := busyTimeout(ctx, db)
	if err != nil {
		return err
	}
	gate.wait = wait
	return nil
}
