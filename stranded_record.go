package dbfallback

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
)

// stranded_record.go keeps the record next to a SQLite fallback file
// (<file>.dbfallback.json) and counts the rows written since it began;
// stranded.go reports them.

// strandedRecord is the JSON record next to a fallback file.
type strandedRecord struct {
	Version int `json:"version"`
	// Since is when the fallback period began.
	Since time.Time `json:"fallback_since"`
	// Marks holds, per table with a rowid, its largest rowid then.
	Marks map[string]int64 `json:"rowid_marks"`
	// Counts holds, per table without a rowid, its row count then.
	Counts map[string]int64 `json:"row_counts,omitempty"`
	// Last holds, per table with a rowid and rows, a digest of the row at
	// its mark: that row deleted or changed means rowids at or below the
	// mark may have been given to new rows (see rowDigest).
	Last map[string]string `json:"last_row_digests,omitempty"`
	// MergedAt ends the period: set by MarkMerged.
	MergedAt *time.Time `json:"merged_at,omitempty"`
}

func (r *strandedRecord) open() bool { return r != nil && r.MergedAt == nil }

// maxRecordSize bounds the record read: a real one is a few hundred bytes
// per table.
const maxRecordSize = 1 << 20

// readStrandedRecord reads the record next to path; nil when there is
// none. Whatever is there is only read, and only when it is a regular file
// (opened without blocking: a named pipe there must not hold Open).
func readStrandedRecord(path string) (*strandedRecord, error) {
	name := path + strandedSuffix
	data, err := readLimited(name, maxRecordSize)
	var notRegular *notRegularError
	var overLimit *overLimitError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.As(err, &notRegular):
		return nil, fmt.Errorf("%v, not a dbfallback record; it was left untouched", err)
	case errors.As(err, &overLimit):
		data = data[:maxRecordSize] // read as far as a record can go: JSON says what is wrong
	case err != nil:
		return nil, err
	}
	var rec strandedRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%s%s is not a dbfallback record: %w", path, strandedSuffix, err)
	}
	return &rec, nil
}

// writeStrandedRecord replaces the record atomically (a new file renamed
// over the old one), readable only by its owner.
func writeStrandedRecord(path string, rec *strandedRecord) error {
	rec.Version = 1
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dbfallback-record-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path+strandedSuffix)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// recordFallbackStart starts a fallback period for the SQLite file db uses,
// unless one is open: it notes the time and each table's largest rowid,
// with a digest of the row that has it. The reads are O(tables), whatever
// the size of the file.
func recordFallbackStart(ctx context.Context, db *sql.DB, path string, now time.Time) error {
	rec, err := readStrandedRecord(path)
	if err != nil || rec.open() {
		return err
	}
	rec = &strandedRecord{Since: now.UTC(), Marks: map[string]int64{}}
	tables, err := userTables(ctx, db)
	if err != nil {
		return err
	}
	for _, name := range tables {
		var mark sql.NullInt64
		if err := db.QueryRowContext(ctx, "SELECT max(rowid) FROM "+quoteIdent(name)).Scan(&mark); err == nil {
			rec.Marks[name] = mark.Int64
			if mark.Valid {
				digest, err := rowDigest(ctx, db, name, mark.Int64)
				if err != nil {
					return err
				}
				if rec.Last == nil {
					rec.Last = map[string]string{}
				}
				rec.Last[name] = digest
			}
			continue
		}
		var n int64 // no rowid: count, once, at the start of the period
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(name)).Scan(&n); err != nil {
			return err
		}
		if rec.Counts == nil {
			rec.Counts = map[string]int64{}
		}
		rec.Counts[name] = n
	}
	return writeStrandedRecord(path, rec)
}

// rowDigest returns a digest of the values of the row of table with the
// given rowid ("" when there is none), from SQLite's own rendering of
// each value (quote()), so that it does not depend on how a connection's
// driver settings convert them.
func rowDigest(ctx context.Context, db *sql.DB, table string, rowid int64) (string, error) {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+quoteIdent(table)+" LIMIT 0")
	if err != nil {
		return "", err
	}
	cols, err := rows.Columns()
	rows.Close()
	if err != nil {
		return "", err
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = "quote(" + quoteIdent(c) + ")"
	}
	var values sql.NullString
	err = db.QueryRowContext(ctx, "SELECT "+strings.Join(quoted, " || ',' || ")+" FROM "+quoteIdent(table)+" WHERE rowid = ?", rowid).Scan(&values)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(values.String))
	return hex.EncodeToString(sum[:16]), nil
}

// userTables lists the tables of a SQLite database, SQLite's own aside.
func userTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

// openForCounting opens the database at path read-only (mode=ro: it reads
// the write-ahead log and writes neither the file nor the log) and lists
// its tables. A read-only connection to a WAL database needs SQLite's -shm
// beside the file; where it is missing and cannot be created (the
// directory became read-only: a volume remounted, permissions tightened),
// nothing can be writing the database (a writer would have created it),
// so the file is read without locks: with the log's index in memory
// (vfs=unix-none, exclusive locking mode) when there is a log, else as
// an immutable file.
func openForCounting(ctx context.Context, path string) (*sql.DB, []string, error) {
	t := sqliteTarget(path, false, nil)
	unlocked := "immutable=1"
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 0 {
		unlocked = "vfs=unix-none&_locking_mode=EXCLUSIVE"
	}
	var first error
	for _, tuning := range []string{busyWithin(ctx, 5*time.Second), unlocked} {
		db, err := openRawSQLite(readOnlyDSN(t, tuning))
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(1)
		tables, err := userTables(ctx, db)
		if err == nil {
			return db, tables, nil
		}
		db.Close()
		if first != nil {
			break
		}
		first = err
		if code := sqlitePrimary(err); code != sqlengine.CantOpen && code != sqlengine.ReadOnly {
			break
		}
		if _, err := os.Lstat(path + "-shm"); err == nil {
			break // the index exists: the failure is something else
		}
	}
	return nil, nil, first
}

// countStranded counts the rows written to path since its open fallback
// period began. It opens the file read-only (mode=ro), which reads the
// write-ahead log and never writes the file or the log. ok is false when
// no period is open.
func countStranded(ctx context.Context, path string) (s Stranded, ok bool, err error) {
	rec, err := readStrandedRecord(path)
	if err != nil || !rec.open() {
		return s, false, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return s, false, nil // the database was deleted: nothing left to report
	}
	db, tables, err := openForCounting(ctx, path)
	if err != nil {
		return s, false, err
	}
	defer db.Close()
	s = Stranded{Path: path, Since: rec.Since}
	present := map[string]bool{}
	for _, name := range tables {
		present[name] = true
	}
	// A table that had rows and is gone lost them all.
	for name, digest := range rec.Last {
		if !present[name] && digest != "" {
			s.Tables = append(s.Tables, StrandedTable{Name: name, AfterRowID: rec.Marks[name], Changed: true})
		}
	}
	for _, name := range tables {
		st := StrandedTable{Name: name, AfterRowID: rec.Marks[name]} // 0 for a table created since: every row
		var n int64
		then, noRowID := rec.Counts[name]
		if !noRowID {
			err = db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(name)+" WHERE rowid > ?", st.AfterRowID).Scan(&n)
			noRowID = sqlitePrimary(err) == sqlengine.Error && strings.Contains(err.Error(), "rowid")
		}
		if noRowID { // WITHOUT ROWID: how many more rows than when the period began
			st.AfterRowID = -1
			err = db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(name)).Scan(&n)
			n = max(n-then, 0)
		}
		if err != nil {
			return s, false, fmt.Errorf("count rows of %s: %w", name, err)
		}
		if then, ok := rec.Last[name]; ok && then != "" && !noRowID {
			now, err := rowDigest(ctx, db, name, st.AfterRowID)
			if err != nil {
				return s, false, fmt.Errorf("read the last row of %s: %w", name, err)
			}
			st.Changed = now != then
		}
		if n > 0 || st.Changed {
			st.Rows = n
			s.Tables = append(s.Tables, st)
			s.Rows += n
		}
	}
	sort.Slice(s.Tables, func(i, j int) bool { return s.Tables[i].Name < s.Tables[j].Name })
	// Modification times are coarse (a few milliseconds): never before
	// the period began.
	s.LastWrite = s.Since
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(s.LastWrite) {
			s.LastWrite = st.ModTime()
		}
	}
	return s, true, nil
}
