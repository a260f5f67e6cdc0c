package dbfallback

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	// MergedAt ends the period: set by MarkMerged.
	MergedAt *time.Time `json:"merged_at,omitempty"`
}

func (r *strandedRecord) open() bool { return r != nil && r.MergedAt == nil }

func readStrandedRecord(path string) (*strandedRecord, error) {
	data, err := os.ReadFile(path + strandedSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
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
// unless one is open: it notes the time and each table's largest rowid.
// The reads are O(tables), whatever the size of the file.
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
	db, err := openRawSQLite(readOnlyDSN(sqliteTarget(path, false, nil), "_busy_timeout=5000"))
	if err != nil {
		return s, false, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tables, err := userTables(ctx, db)
	if err != nil {
		return s, false, err
	}
	s = Stranded{Path: path, Since: rec.Since}
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
		if n > 0 {
			st.Rows = n
			s.Tables = append(s.Tables, st)
			s.Rows += n
		}
	}
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
