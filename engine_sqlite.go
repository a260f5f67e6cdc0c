package dbfallback

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
// missing and moving aside an existing file that is not a SQLite database.
func openSQLite(ctx context.Context, o *options, t Target) (*engine, error) {
	if t.Memory {
		return openSQLiteMemory(ctx, o, t)
	}
	note, err := prepareSQLiteFile(t.Path, o.now)
	if err != nil {
		return nil, err
	}
	dsn := sqliteDSN(t, sqliteFileParams)
	gate := newWriteGate(sqliteBusyTimeout)
	db := sql.OpenDB(&gatedConnector{dsn: dsn, gate: gate})
	o.pool.withDefaults(sqliteFilePool).apply(db)
	if err := checkSQLite(ctx, db, gate); err != nil {
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
	gate := newWriteGate(sqliteBusyTimeout)
	db := sql.OpenDB(&gatedConnector{dsn: dsn, gate: gate})
	o.pool.withDefaults(sqliteFilePool).apply(db)
	if err := checkSQLite(ctx, db, gate); err != nil {
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

var sqliteMagic = []byte("SQLite format 3\x00")

// prepareSQLiteFile makes path ready for SQLite: its directory exists (new
// directories 0700), the file exists (new files 0600), and an existing file
// that is not a whole SQLite database is renamed <name>.corrupt-<UTC time>,
// never deleted. The note says what was moved.
func prepareSQLiteFile(path string, now func() time.Time) (note string, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("dbfallback: create directory for %s: %w", path, unwrapPathError(err))
	}
	bad, err := notSQLite(path)
	if err != nil {
		return "", err
	}
	if bad != "" {
		if now == nil {
			now = time.Now
		}
		aside := fmt.Sprintf("%s.corrupt-%s", path, now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, aside); err != nil {
			return "", fmt.Errorf("dbfallback: %s is %s and could not be moved aside: %w", path, bad, unwrapPathError(err))
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(path + suffix); err == nil {
				os.Rename(path+suffix, aside+suffix)
			}
		}
		note = fmt.Sprintf("%s was %s; moved it aside to %s", path, bad, aside)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return note, fmt.Errorf("dbfallback: open %s: %w", path, unwrapPathError(err))
	}
	f.Close()
	return note, nil
}

// notSQLite says why the file at path is not a usable SQLite database
// ("" when it is, or does not exist, or is empty).
func notSQLite(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("dbfallback: open %s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return "", fmt.Errorf("dbfallback: %s is a directory, not a database file", path)
	}
	if st.Size() == 0 {
		return "", nil
	}
	var hdr [100]byte
	n, err := io.ReadFull(f, hdr[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("dbfallback: read %s: %w", path, err)
	}
	if n < len(sqliteMagic) || !bytes.Equal(hdr[:len(sqliteMagic)], sqliteMagic) {
		return "not a SQLite database", nil
	}
	if n < len(hdr) {
		return "a truncated SQLite database", nil
	}
	// A crash can leave the file shorter than its header says while a
	// write-ahead log or hot journal still holds the pages: SQLite recovers
	// those, so the size check below applies only without one.
	for _, side := range []string{"-wal", "-journal"} {
		if st, err := os.Stat(path + side); err == nil && st.Size() > 0 {
			return "", nil
		}
	}
	// The header records the page size (offset 16, 1 meaning 65536) and,
	// when valid, the page count (offset 28): a shorter file lost pages.
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(binary.BigEndian.Uint32(hdr[28:32]))
	changes, validFor := binary.BigEndian.Uint32(hdr[24:28]), binary.BigEndian.Uint32(hdr[92:96])
	if pageSize >= 512 && pages > 0 && changes == validFor && st.Size() < pages*pageSize {
		return "a truncated SQLite database", nil
	}
	return "", nil
}
