package dbfallback

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkOpenHeldFile measures the time from Open to a usable database
// when the caller gives Open one second and SQLITE_PATH is held by another
// process (BEGIN EXCLUSIVE on a rollback-journal database): the next
// location serves. The baseline, in the same run, is Open on a file
// nobody holds. Target: under the deadline (it used to be 5 s and
// context.DeadlineExceeded, SQLite's busy handler ignoring ctx).
func BenchmarkOpenHeldFile(b *testing.B) {
	dir := b.TempDir()
	held := filepath.Join(dir, "held.db")
	free := filepath.Join(dir, "free.db")
	makeSQLite(b, held, "DELETE", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	child := startAttackChild(b, attackRequest{Op: "lock", Path: held, Journal: "DELETE"})
	if child.first != "locked" {
		b.Fatal(child.first)
	}
	work := b.TempDir()
	for _, c := range []struct{ name, path string }{{"baseline, a free file", free}, {"held by another process, 1s deadline", held}} {
		b.Run(c.name, func(b *testing.B) {
			opts := []Option{WithLookupEnv(attackLookup(map[string]string{"SQLITE_PATH": c.path, "TMPDIR": work})), withDataDir("")}
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				db, err := Open(ctx, opts...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := db.Exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x')"); err != nil {
					b.Fatal(err)
				}
				cancel()
				db.Close()
			}
		})
	}
	child.stop()
}

// BenchmarkSQLiteReadPaired measures a point read through DB against the
// same read on a plain pool of the SQLite engine of the same file, taken in turn in
// each op so that the shared machine's load falls on both alike. It
// reports both times and their ratio (db/raw): what DB's connection
// wrapper (the write gate, and since issue 10's review the rows that watch
// for damage) adds to a read.
func BenchmarkSQLiteReadPaired(b *testing.B) {
	path := filepath.Join(b.TempDir(), "read.db")
	makeSQLite(b, path, "WAL", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000) INSERT INTO notes (body) SELECT hex(randomblob(50)) FROM c")
	db, err := Open(context.Background(), WithLookupEnv(attackLookup(nil)), withDataDir(""), WithSQLitePath(path), WithStrategy(SQLiteOnly))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw, err := openRawSQLite(sqliteDSN(sqliteTarget(path, false, nil), sqliteFileParams))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	sqliteFilePool.apply(raw)
	var body string
	var inDB, inRaw time.Duration
	id := 0
	for b.Loop() {
		id = id%1000 + 1
		start := time.Now()
		if err := db.QueryRow("SELECT body FROM notes WHERE id = ?", id).Scan(&body); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := raw.QueryRow("SELECT body FROM notes WHERE id = ?", id).Scan(&body); err != nil {
			b.Fatal(err)
		}
		inDB, inRaw = inDB+mid.Sub(start), inRaw+time.Since(mid)
	}
	b.ReportMetric(float64(inDB.Nanoseconds())/float64(b.N), "db-ns/op")
	b.ReportMetric(float64(inRaw.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(inDB)/float64(inRaw), "db/raw")
}
