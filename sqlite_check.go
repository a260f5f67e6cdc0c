package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
)

// sqlite_check.go finds damaged pages under a valid SQLite header. A full
// check reads every page: measured on a shared 2-core machine
// (BENCHMARKS.md), PRAGMA quick_check takes 0.1–0.2 s on a 100 MB file and
// 1.1–2.0 s on 1 GB when the file is in the page cache, 3.2–4.0 s and
// 33–41 s when it is not, far beyond a startup deadline. So Open runs a cheap probe
// (the schema, and the first and last row of each table: the pages every
// read and insert of a table goes through) and, once the database is in
// use, a full quick_check in the background on a read-only connection of
// its own, which Health reports.

// maxProbedTables bounds the cheap probe; the background check covers
// every table.
const maxProbedTables = 512

// isDamage reports SQLite's "database disk image is malformed" and "file
// is not a database".
func isDamage(err error) bool {
	switch sqlitePrimary(err) {
	case sqlengine.Corrupt, sqlengine.NotADB:
		return true
	}
	return false
}

// openSQLiteFile opens t (see openSQLite) and checks that it takes
// writes. Before the pool opens (and switches the file to WAL mode, which
// writes its header), a read-only connection probes the pages: a file
// SQLite finds damaged is moved aside byte for byte, like one with a
// damaged header, and a new database opens in its place. Other failures
// are returned, so Open tries the next location.
func openSQLiteFile(ctx context.Context, o *options, t Target) (*engine, error) {
	if t.Memory {
		return openSQLite(ctx, o, t)
	}
	var note string
	if s, err := inspectSQLiteFile(ctx, t.Path); err == nil && s.kind == fileSQLite {
		// A damaged header, a foreign file and the like are prepareSQLiteFile's.
		if err := probeReadOnly(ctx, t); isDamage(err) {
			if note, err = moveDamaged(ctx, o, t, s.info, err); err != nil {
				return nil, err
			}
		}
	}
	e, err := openSQLite(ctx, o, t)
	var opened *openedFileError
	if isDamage(err) && note == "" && errors.As(err, &opened) {
		// Damage the read-only probe could not see (it gives way to a hot
		// journal, say) but the pool did, before writing anything.
		if note, err = moveDamaged(ctx, o, t, opened.info, err); err != nil {
			return nil, err
		}
		e, err = openSQLite(ctx, o, t)
	}
	if err == nil {
		if err = checkWritable(ctx, t); err != nil {
			e.close()
		}
	}
	if err != nil {
		if note != "" {
			return nil, fmt.Errorf("%s; then: %w", note, err)
		}
		return nil, err
	}
	if note != "" && e.note != "" {
		note += "; " + e.note
	}
	if note != "" {
		e.note = note
	}
	return e, nil
}

// moveDamaged moves aside the file of t that SQLite found damaged, was,
// under the directory's lock (see lockDir). When another process has
// already replaced it (moved it aside and created a new database), the
// file there now is not the damaged one: nothing moves, and the note is
// empty.
func moveDamaged(ctx context.Context, o *options, t Target, was os.FileInfo, damage error) (string, error) {
	why := "a damaged SQLite database (" + damage.Error() + ")"
	unlock, err := lockDir(ctx, filepath.Dir(t.Path))
	if err != nil {
		return "", fmt.Errorf("dbfallback: %s is %s: %w", t.Path, why, err)
	}
	defer unlock()
	aside, err := moveAside(ctx, t.Path, was, o.now)
	if errors.Is(err, errChanged) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("dbfallback: %s is %s and could not be moved aside: %w", t.Path, why, err)
	}
	return fmt.Sprintf("%s was %s; moved it aside to %s", t.Path, why, aside), nil
}

// openedFileError is a failure to open the SQLite file whose identity is
// info, so that a damage error moves aside that file and no other.
type openedFileError struct {
	info os.FileInfo
	err  error
}

func (e *openedFileError) Error() string { return e.err.Error() }
func (e *openedFileError) Unwrap() error { return e.err }

// probeReadOnly runs probePages on a read-only connection to t, which
// writes nothing. Only damage matters: other errors (no file yet, a hot
// journal a reader cannot roll back) are for the pool to meet.
func probeReadOnly(ctx context.Context, t Target) error {
	db, err := openRawSQLite(readOnlyDSN(t, busyWithin(ctx, 5*time.Second)))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return probePages(ctx, db)
}

// close releases an engine that will not be used: the pool, and what
// closing it releases even when a WithOpenDB wrapper does not pass
// io.Closer on.
func (e *engine) close() {
	e.db.Close()
	e.release.run()
}

// probePages reads the schema and the first and last row of each table
// (up to maxProbedTables): a few pages per table whatever the file's size.
// It returns the first error that says the file is damaged, or nil.
func probePages(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT ?", maxProbedTables)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, name := range tables {
		q := quoteIdent(name)
		for _, query := range []string{
			"SELECT 1 FROM " + q + " LIMIT 1",
			"SELECT 1 FROM " + q + " ORDER BY rowid DESC LIMIT 1", // fails on WITHOUT ROWID tables: ignored
		} {
			var one int
			err := db.QueryRowContext(ctx, query).Scan(&one)
			if isDamage(err) || ctx.Err() != nil {
				return err
			}
		}
	}
	return nil
}

// checkWritable takes SQLite's write lock on t and releases it, on a
// connection of its own that does not wait: a file that opens but cannot
// be written (its -shm is not writable, say) fails here, not on the first
// request. A lock held by another process counts as writable.
func checkWritable(ctx context.Context, t Target) error {
	db, err := openRawSQLite(sqliteDSN(t, "_busy_timeout=0&_txlock=immediate"))
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	switch sqlitePrimary(err) {
	case sqlengine.Busy, sqlengine.Locked:
		return nil
	}
	if err != nil {
		return fmt.Errorf("dbfallback: %s cannot be written: %w", t.Path, err)
	}
	return tx.Rollback()
}

// readOnlyDSN is the DSN of a read-only connection to the file of t: it
// reads the write-ahead log, and writes neither the file nor the log.
func readOnlyDSN(t Target, tuning string) string {
	ro := t
	ro.Params = maps.Clone(t.Params)
	if ro.Params == nil {
		ro.Params = map[string]string{}
	}
	ro.Params["mode"] = "ro"
	return sqliteDSN(ro, tuning)
}

// quoteIdent quotes a SQL identifier for SQLite and PostgreSQL.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Integrity states reported in [Health.Integrity].
const (
	integrityChecking = "checking"
	integrityOK       = "ok"
	integrityDamaged  = "damaged"
	integrityUnknown  = "unknown"
)

// integrity is what is known of a SQLite file's damage: the background
// check's state, or the damage a statement of the pool met first, which
// Health reports from that moment on (the check of a large file takes
// seconds; a read of a damaged page fails at once).
type integrity struct {
	path   string // the file, for the log line
	mu     sync.Mutex
	state  string // "" when no check runs (PostgreSQL, memory)
	detail string
	logger *slog.Logger // nil until the DB exists
}

// set records the background check's state. Damage, once seen, stays.
func (i *integrity) set(state, detail string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.state == integrityDamaged && state != integrityDamaged {
		return
	}
	i.state, i.detail = state, detail
}

func (i *integrity) setLogger(l *slog.Logger) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.logger = l
}

// note records err when it says that the file is damaged
// (SQLITE_CORRUPT: "file is not a database" comes from a file being
// opened, such as one a statement ATTACHes, never from the pages of the
// one in use), and returns it. A nil integrity (an in-memory database)
// records nothing.
func (i *integrity) note(err error) error {
	if i == nil || sqlitePrimary(err) != sqlengine.Corrupt {
		return err
	}
	i.mu.Lock()
	first := i.state != integrityDamaged
	if first {
		i.state, i.detail = integrityDamaged, "a statement failed: "+err.Error()
	}
	logger := i.logger
	i.mu.Unlock()
	if first && logger != nil {
		logger.Error("dbfallback: the SQLite database file is damaged; reads of the damaged pages fail",
			"path", i.path, "error", err.Error(),
			"hint", "stop the service and restore the file from a copy, or move it aside so a new database is created")
	}
	return err
}

func (i *integrity) get() (state, detail string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state, i.detail
}

// startIntegrityCheck runs PRAGMA quick_check on the SQLite file in use,
// on a read-only connection outside the pool, and reports the outcome
// through Health and, when the file is damaged, an error log line. Close
// interrupts it. The check holds a read transaction while it runs, so the
// write-ahead log cannot be checkpointed past it until it ends.
func (db *DB) startIntegrityCheck() {
	t := db.target
	if t.Dialect != SQLite || t.Memory {
		return
	}
	dsn := readOnlyDSN(t, "_busy_timeout=10000")
	ctx, cancel := context.WithCancel(context.Background())
	db.stopCheck = cancel
	db.integrity.set(integrityChecking, "")
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		state, detail := quickCheck(ctx, dsn)
		if ctx.Err() != nil {
			return // closed before the end: nothing learnt
		}
		if prev, _ := db.integrity.get(); state == integrityDamaged && prev != integrityDamaged {
			db.logger.Error("dbfallback: the SQLite database file is damaged; reads of the damaged pages fail",
				"path", t.Path, "quick_check", detail,
				"hint", "stop the service and restore the file from a copy, or move it aside so a new database is created")
		}
		db.integrity.set(state, detail) // after the log line: whoever sees the state sees the line

	}()
}

// maxCheckErrors bounds the problems quick_check lists.
const maxCheckErrors = 5

// quickCheck runs PRAGMA quick_check on dsn and returns the state and, when
// not ok, what SQLite said.
func quickCheck(ctx context.Context, dsn string) (state, detail string) {
	cdb, err := openRawSQLite(dsn)
	if err != nil {
		return integrityUnknown, err.Error()
	}
	defer cdb.Close()
	cdb.SetMaxOpenConns(1)
	rows, err := cdb.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", maxCheckErrors))
	if err != nil {
		if isDamage(err) {
			return integrityDamaged, err.Error()
		}
		return integrityUnknown, err.Error()
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return integrityUnknown, err.Error()
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		if isDamage(err) {
			return integrityDamaged, err.Error()
		}
		return integrityUnknown, err.Error()
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return integrityOK, ""
	}
	return integrityDamaged, strings.Join(lines, "; ")
}
