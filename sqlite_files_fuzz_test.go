package dbfallback

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzSQLiteFile puts random bytes where Open expects a SQLite database.
// Open must not panic or hang, must end on a usable database, and must
// lose nothing: the bytes are either the database in use (SQLite read
// them as one), left untouched at their path (not SQLite), or in exactly
// one moved-aside file, byte for byte. A file without SQLite's magic is
// never moved or used.
func FuzzSQLiteFile(f *testing.F) {
	for _, ff := range foreignFiles {
		f.Add(ff.content)
	}
	f.Add([]byte{})
	f.Add([]byte("SQLite format 3\x00"))
	f.Add(append([]byte("SQLite format 3\x00\x10\x00\x01\x01\x00\x40\x20\x20"), make([]byte, 200)...))
	f.Add(seedDatabase(f))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.db")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		// Only this file, then memory: nothing outside dir is touched.
		only := StrategyFunc(func(r Resolution) []Target {
			var out []Target
			for _, c := range r.Fallbacks {
				if c.Memory || c.Path == path {
					out = append(out, c)
				}
			}
			return out
		})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		db, err := Open(ctx, WithLookupEnv(func(string) (string, bool) { return "", false }), withDataDir(""),
			WithSQLitePath(path), WithStrategy(only))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer db.Close()
		var one int
		if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
			t.Fatalf("the database in use does not answer: %v", err)
		}
		aside, _ := filepath.Glob(path + ".corrupt-*[0-9Z]")
		magic := bytes.HasPrefix(content, sqliteMagic)
		switch {
		case len(aside) > 1:
			t.Fatalf("moved aside %d times", len(aside))
		case len(aside) == 1:
			if !magic {
				t.Fatalf("a file without SQLite's magic was moved aside: %s", db.Reason())
			}
			kept, err := os.ReadFile(aside[0])
			if err != nil || !bytes.Equal(kept, content) {
				t.Fatalf("the moved file lost bytes (%v)", err)
			}
		case db.Target().Path == path:
			if len(content) > 0 && !magic {
				t.Fatalf("a file without SQLite's magic was used as the database")
			}
		default:
			kept, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(kept, content) {
				t.Fatalf("a skipped file changed (%v): %s", err, db.Reason())
			}
		}
	})
}

// seedDatabase returns the bytes of a small real database.
func seedDatabase(f *testing.F) []byte {
	path := filepath.Join(f.TempDir(), "seed.db")
	db, err := openRawSQLite(path)
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), ('two')"); err != nil {
		f.Fatal(err)
	}
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return data
}
