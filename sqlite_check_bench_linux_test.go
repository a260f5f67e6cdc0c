//go:build amd64 || arm64

package dbfallback

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkSQLiteCheck measures what finding damaged pages costs on files
// of 100 MB and 1 GB (DBFALLBACK_BENCH_MB="100,1000" by default), with the
// file in the page cache (warm) and evicted from it (cold, as after a
// restart): PRAGMA quick_check (the background check), the cheap probe Open
// runs, and a whole Open of the file against the Open of the version
// before this check (open and read the schema version).
func BenchmarkSQLiteCheck(b *testing.B) {
	sizes := os.Getenv("DBFALLBACK_BENCH_MB")
	if sizes == "" {
		sizes = "100,1000"
	}
	for _, s := range strings.Split(sizes, ",") {
		mb, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatal(err)
		}
		path := benchDatabase(b, mb)
		t := sqliteTarget(path, false, nil)
		ops := []struct {
			name string
			run  func(b *testing.B)
		}{
			{"quick_check", func(b *testing.B) {
				if state, detail := quickCheck(context.Background(), readOnlyDSN(t, "")); state != integrityOK {
					b.Fatal(state, detail)
				}
			}},
			{"Open's probe", func(b *testing.B) {
				if err := probeReadOnly(context.Background(), t); err != nil {
					b.Fatal(err)
				}
			}},
			{"Open", func(b *testing.B) {
				db, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(path), WithStrategy(SQLiteOnly))
				if err != nil {
					b.Fatal(err)
				}
				db.Close()
			}},
			{"baseline open and schema_version", func(b *testing.B) {
				db, err := openRawSQLite(sqliteDSN(t, sqliteFileParams))
				if err != nil {
					b.Fatal(err)
				}
				var n int
				if err := db.QueryRow("PRAGMA schema_version").Scan(&n); err != nil {
					b.Fatal(err)
				}
				db.Close()
			}},
		}
		for _, op := range ops {
			for _, cold := range []bool{false, true} {
				cache := "warm"
				if cold {
					cache = "cold"
				}
				b.Run(fmt.Sprintf("%dMB/%s/%s", mb, op.name, cache), func(b *testing.B) {
					if !cold {
						op.run(b) // fill the page cache
					}
					for b.Loop() {
						if cold {
							b.StopTimer()
							evict(b, path, path+"-wal")
							b.StartTimer()
						}
						op.run(b)
					}
				})
			}
		}
	}
}

// benchDatabase builds a SQLite file of about mb megabytes, removed when
// the benchmark ends: a notes table with an index, rows of about 600
// bytes.
func benchDatabase(b *testing.B, mb int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), fmt.Sprintf("bench-%dMB.db", mb))
	db, err := openRawSQLite(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
		CREATE INDEX notes_title ON notes(title);
		WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?)
		INSERT INTO notes(title, body) SELECT hex(randomblob(16)), hex(randomblob(250)) FROM c`, mb<<20/600)
	if err != nil {
		b.Fatal(err)
	}
	return path
}

// evict drops the files from the page cache (POSIX_FADV_DONTNEED), as
// after a restart, so reads go to the disk.
func evict(b *testing.B, paths ...string) {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		f.Sync()
		if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, 4, 0, 0); errno != 0 {
			b.Fatal(errno)
		}
		f.Close()
	}
}
