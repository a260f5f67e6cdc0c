package dbfallback_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbfallback/dbfallback"
)

// ExampleWithSnapshotDir keeps snapshots of the SQLite file in a durable
// directory and restores them on a fresh disk. In a real deployment the
// directory is a mounted bucket or volume; here both directories are on
// the same disk, which Health reports as "not durable".
func ExampleWithSnapshotDir() {
	tmp, err := os.MkdirTemp("", "snapshot-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	local := filepath.Join(tmp, "local", "notes.db")
	bucket := filepath.Join(tmp, "bucket")
	os.MkdirAll(bucket, 0o700)
	open := func() *dbfallback.DB {
		db, err := dbfallback.Open(context.Background(),
			dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }),
			dbfallback.WithSQLitePath(local), dbfallback.WithStrategy(dbfallback.SQLiteOnly),
			dbfallback.WithSnapshotDir(bucket))
		if err != nil {
			panic(err)
		}
		return db
	}

	db := open()
	db.Exec("CREATE TABLE notes (title TEXT)")
	db.Exec("INSERT INTO notes VALUES ('kept across restarts')")
	if err := db.Close(); err != nil { // writes the final snapshot
		panic(err)
	}

	os.RemoveAll(filepath.Dir(local)) // a new container: the local disk is gone
	db = open()
	defer db.Close()
	var title string
	db.QueryRow("SELECT title FROM notes").Scan(&title)
	h := db.Health(context.Background())
	fmt.Println(title)
	fmt.Println(h.Snapshot.Restored != "", h.Snapshot.State)
	// Output:
	// kept across restarts
	// true not durable
}
