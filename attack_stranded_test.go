package dbfallback

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_stranded_test.go attacks "rows written to a fallback are not
// forgotten": PostgreSQL down, the service writes to a persistent SQLite
// file, PostgreSQL back; Open must report what the file took, in Reason,
// Health, the log and FindStranded, without modifying the file, until
// the rows are marked merged.

// strandedPhase opens the service the way it restarts: on the fallback
// (primary refused) or on the primary. It returns the DB and the log.
func strandedOpen(t *testing.T, dirs *attackDirs, primary, path string, more ...Option) (*DB, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := Open(ctx, dirs.opts(map[string]string{"DATABASE_URL": primary, "SQLITE_PATH": path},
		append([]Option{WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))}, more...)...)...)
	require.NoError(t, err)
	return db, &logs
}

// TestAttackStrandedRows: what happens to the file while the primary is
// away, and what Open must report once it is back.
func TestAttackStrandedRows(t *testing.T) {
	pgURL := attackPGURL(t)
	refused := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", freePort(t))
	seed := []string{
		"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
		"INSERT INTO notes (body) VALUES ('one'), ('two'), ('three')",
		"CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID",
		"INSERT INTO tags VALUES ('a', 1)",
	}
	exec := func(stmts ...string) func(t *testing.T, db *sql.DB) {
		return func(t *testing.T, db *sql.DB) {
			for _, s := range stmts {
				_, err := db.Exec(s)
				require.NoError(t, err, s)
			}
		}
	}
	tests := []struct {
		name string
		// during writes while the service runs on the fallback; by another
		// tool when tool is set.
		during func(t *testing.T, db *sql.DB)
		tool   bool
		// replace, when set, happens to the file between the outage and
		// the return of the primary.
		replace func(t *testing.T, path string)
		want    map[string]int64 // stranded rows per table; nil: none
		changed []string         // tables whose rows at or below the mark changed
	}{
		{name: "inserts", during: exec("INSERT INTO notes (body) VALUES ('four'), ('five')"), want: map[string]int64{"notes": 2}},
		{name: "inserts by another tool", tool: true, during: exec("INSERT INTO notes (body) VALUES ('four')"), want: map[string]int64{"notes": 1}},
		{name: "a WITHOUT ROWID table", during: exec("INSERT INTO tags VALUES ('b', 2), ('c', 3)"), want: map[string]int64{"tags": 2}},
		{name: "a table created during the outage", during: exec("CREATE TABLE likes (note INTEGER)", "INSERT INTO likes VALUES (1), (2), (3)"),
			want: map[string]int64{"likes": 3}},
		{name: "the last note deleted, then a new one (its rowid reused)",
			during:  exec("DELETE FROM notes WHERE id = 3", "INSERT INTO notes (body) VALUES ('new, same id')"),
			changed: []string{"notes"}},
		{name: "the last notes deleted, then more new ones",
			during:  exec("DELETE FROM notes WHERE id >= 2", "INSERT INTO notes (body) VALUES ('new 2'), ('new 3'), ('new 4')"),
			want:    map[string]int64{"notes": 1},
			changed: []string{"notes"}},
		{name: "the file deleted and created anew (the record left behind)",
			during: exec("INSERT INTO notes (body) VALUES ('four')"),
			replace: func(t *testing.T, path string) {
				for _, s := range []string{"", "-wal", "-shm"} {
					os.Remove(path + s)
				}
				makeSQLite(t, path, "WAL", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('x'), ('y')")
			},
			changed: []string{"notes"}},
		{name: "a middle note updated (not reported: no history to compare with)", during: exec("UPDATE notes SET body = 'edited' WHERE id = 2")},
		{name: "the record's marks raised by hand",
			during: exec("INSERT INTO notes (body) VALUES ('four')"),
			replace: func(t *testing.T, path string) {
				data, err := os.ReadFile(path + strandedSuffix)
				require.NoError(t, err)
				var rec map[string]any
				require.NoError(t, json.Unmarshal(data, &rec))
				rec["rowid_marks"] = map[string]int64{"notes": 1000000}
				data, err = json.Marshal(rec)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(path+strandedSuffix, data, 0o600))
			},
			changed: []string{"notes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			path := filepath.Join(t.TempDir(), "notes.db")
			makeSQLite(t, path, "WAL", seed...)

			// The outage: the service starts on the fallback and writes.
			db, _ := strandedOpen(t, dirs, refused, path)
			require.True(t, db.Fallback())
			require.Equal(t, path, db.Target().Path)
			if tt.tool {
				other, err := openRawSQLite("file:" + path + "?_busy_timeout=5000")
				require.NoError(t, err)
				tt.during(t, other)
				require.NoError(t, other.Close())
			} else {
				tt.during(t, db.DB)
			}
			require.NoError(t, db.Close())
			if tt.replace != nil {
				tt.replace(t, path)
			}

			// The primary is back.
			mainBefore := fileDigest(t, path)
			db, logs := strandedOpen(t, dirs, pgURL, path)
			defer db.Close()
			require.False(t, db.Fallback())
			assert.Equal(t, mainBefore, fileDigest(t, path), "counting must not modify the file")

			got := db.Stranded()
			if tt.want == nil && tt.changed == nil {
				assert.Empty(t, got)
				assert.NotContains(t, logs.String(), "holds rows written")
				return
			}
			require.Len(t, got, 1, db.Reason())
			s := got[0]
			assert.Equal(t, path, s.Path)
			tables := map[string]int64{}
			var changed []string
			for _, tb := range s.Tables {
				if tb.Rows > 0 {
					tables[tb.Name] = tb.Rows
				}
				if tb.Changed {
					changed = append(changed, tb.Name)
				}
			}
			if tt.want == nil {
				tt.want = map[string]int64{}
			}
			assert.Equal(t, tt.want, tables)
			assert.Equal(t, tt.changed, changed)
			assert.Contains(t, db.Reason(), path)
			assert.Contains(t, logs.String(), "a fallback file holds rows written while the primary was not in use")
			h := db.Health(context.Background())
			assert.Equal(t, got, h.Stranded)
			found, err := FindStranded(context.Background(), dirs.opts(map[string]string{"DATABASE_URL": pgURL, "SQLITE_PATH": path})...)
			require.NoError(t, err)
			assert.Equal(t, got, found)

			// Merged: the report stops, and the file is still untouched.
			require.NoError(t, MarkMerged(context.Background(), path))
			require.NoError(t, db.Close())
			db, _ = strandedOpen(t, dirs, pgURL, path)
			assert.Empty(t, db.Stranded())
			assert.Equal(t, mainBefore, fileDigest(t, path))
			require.NoError(t, db.Close())
		})
	}
}

// TestAttackStrandedRowsInTheLog: rows still in the write-ahead log of a
// fallback that another instance holds open are counted, and counting
// leaves the file and its log as they were.
func TestAttackStrandedRowsInTheLog(t *testing.T) {
	pgURL := attackPGURL(t)
	refused := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", freePort(t))
	dirs := isolateAttack(t)
	path := filepath.Join(t.TempDir(), "notes.db")
	makeSQLite(t, path, "WAL", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('old')")

	// Two instances share the file during the outage; one stays up.
	a, _ := strandedOpen(t, dirs, refused, path)
	defer a.Close()
	b, _ := strandedOpen(t, dirs, refused, path)
	for i := range 4 {
		_, err := a.Exec("INSERT INTO notes (body) VALUES (?)", fmt.Sprint("a", i))
		require.NoError(t, err)
		_, err = b.Exec("INSERT INTO notes (body) VALUES (?)", fmt.Sprint("b", i))
		require.NoError(t, err)
	}
	require.NoError(t, b.Close())
	wal, err := os.Stat(path + "-wal")
	require.NoError(t, err)
	require.Positive(t, wal.Size(), "the rows are in the log")
	mainBefore, walBefore := fileDigest(t, path), fileDigest(t, path+"-wal")

	db, _ := strandedOpen(t, dirs, pgURL, path)
	defer db.Close()
	require.Len(t, db.Stranded(), 1)
	assert.Equal(t, int64(8), db.Stranded()[0].Rows)
	assert.Equal(t, mainBefore, fileDigest(t, path))
	assert.Equal(t, walBefore, fileDigest(t, path+"-wal"))
}

// TestAttackStrandedClockSkew: a clock far off when the fallback began
// still gives a report whose period can be named in DBFALLBACK_MERGED,
// and LastWrite is never before Since.
func TestAttackStrandedClockSkew(t *testing.T) {
	pgURL := attackPGURL(t)
	refused := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", freePort(t))
	for _, skew := range []time.Duration{-20 * 365 * 24 * time.Hour, 3 * 365 * 24 * time.Hour} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			dirs := isolateAttack(t)
			path := filepath.Join(t.TempDir(), "notes.db")
			then := time.Now().Add(skew)
			db, _ := strandedOpen(t, dirs, refused, path, withNow(func() time.Time { return then }))
			_, err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
			require.NoError(t, err)
			_, err = db.Exec("INSERT INTO notes (body) VALUES ('x')")
			require.NoError(t, err)
			require.NoError(t, db.Close())

			db, _ = strandedOpen(t, dirs, pgURL, path)
			require.Len(t, db.Stranded(), 1)
			s := db.Stranded()[0]
			assert.Equal(t, then.UTC().Truncate(time.Second), s.Since.UTC().Truncate(time.Second))
			assert.False(t, s.LastWrite.Before(s.Since))
			require.NoError(t, db.Close())

			merged := path + "@" + s.Since.UTC().Format(time.RFC3339)
			db, _ = strandedOpen(t, dirs, pgURL, path, WithLookupEnv(attackLookup(map[string]string{
				"DATABASE_URL": pgURL, "SQLITE_PATH": path, "TMPDIR": dirs.tmp, "DBFALLBACK_MERGED": merged})))
			assert.Empty(t, db.Stranded())
			require.NoError(t, db.Close())
			db, _ = strandedOpen(t, dirs, pgURL, path)
			assert.Empty(t, db.Stranded(), "DBFALLBACK_MERGED marked the period merged")
			require.NoError(t, db.Close())
		})
	}
}

// TestAttackStrandedBadRecord: a record that is not JSON, or names a
// different kind of content, is reported, never silently taken as "no
// rows", and the database is not touched.
func TestAttackStrandedBadRecord(t *testing.T) {
	pgURL := attackPGURL(t)
	for _, record := range []string{"", "{not json", `{"version": 1, "fallback_since": "yesterday"}`} {
		t.Run(fmt.Sprintf("%q", record), func(t *testing.T) {
			dirs := isolateAttack(t)
			path := filepath.Join(t.TempDir(), "notes.db")
			makeSQLite(t, path, "WAL", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('x')")
			require.NoError(t, os.WriteFile(path+strandedSuffix, []byte(record), 0o600))
			before := fileDigest(t, path)
			db, _ := strandedOpen(t, dirs, pgURL, path)
			defer db.Close()
			assert.Contains(t, db.Reason(), path+strandedSuffix)
			assert.Equal(t, before, fileDigest(t, path))
			_, err := FindStranded(context.Background(), dirs.opts(map[string]string{"SQLITE_PATH": path})...)
			assert.Error(t, err)
		})
	}
}

// TestAttackStrandedReadOnlyDirectory: the fallback's directory has become
// read-only (a volume remounted, permissions tightened) by the time the
// primary is back, with rows still in the write-ahead log of a crashed
// instance. Counting them cannot create SQLite's -shm there; Open on the
// primary still reports them (or says why it cannot), as uid 65534.
func TestAttackStrandedReadOnlyDirectory(t *testing.T) {
	pgURL := attackPGURL(t)
	refused := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", freePort(t))
	for _, crashed := range []bool{false, true} {
		t.Run(fmt.Sprint("rows in the log: ", crashed), func(t *testing.T) {
			dirs := isolateAttack(t)
			dir := ownedDir(t, true)
			path := filepath.Join(dir, "notes.db")
			makeSQLite(t, path, "WAL", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
			db, _ := strandedOpen(t, dirs, refused, path)
			for i := range 3 {
				_, err := db.Exec("INSERT INTO notes (body) VALUES (?)", fmt.Sprint("during the outage ", i))
				require.NoError(t, err)
			}
			if crashed {
				// What a crash leaves: the rows only in the log, no -shm.
				keep := t.TempDir()
				for _, s := range []string{"", "-wal"} {
					copyFile(t, path+s, filepath.Join(keep, "notes.db"+s))
				}
				require.NoError(t, db.Close())
				for _, s := range []string{"", "-wal", "-shm"} {
					os.Remove(path + s)
				}
				for _, s := range []string{"", "-wal"} {
					copyFile(t, filepath.Join(keep, "notes.db"+s), path+s)
				}
			} else {
				require.NoError(t, db.Close())
			}
			names, err := filepath.Glob(filepath.Join(dir, "*"))
			require.NoError(t, err)
			for _, n := range names {
				chownUnprivileged(t, n)
			}
			before := treeDigest(t, dir)
			if os.Geteuid() == 0 {
				require.NoError(t, os.Chmod(dir, 0o555))
			}

			work := ownedDir(t, true)
			res := reportAsUnprivileged(t, work, attackRequest{Path: path, TMPDIR: work, DatabaseURL: pgURL})[0]
			require.Empty(t, res.Err)
			assert.Empty(t, res.Target, "on the primary")
			if assert.Len(t, res.Stranded, 1, res.Reason) {
				assert.Equal(t, int64(3), res.Stranded[0].Rows)
			}
			assert.Equal(t, before, treeDigest(t, dir), "the file, its log and its record are untouched")
		})
	}
}
