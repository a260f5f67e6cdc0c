package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkSQLiteEngine measures the build's SQLite engine through
// dbfallback: single-row inserts, read-then-write transactions (db.Tx)
// at 1, 8 and 64 goroutines, and Open. The names are the same in every
// build, so a cgo run and a CGO_ENABLED=0 run with the pure-Go engine
// overlaid (bench/engines.sh) compare with benchstat.
func BenchmarkSQLiteEngine(b *testing.B) {
	b.Logf("SQLite engine: %s", SQLiteEngine())
	open := func(b *testing.B) *DB {
		b.Helper()
		db, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(SQLiteOnly),
			WithSQLitePath(filepath.Join(b.TempDir(), "bench.db")))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db
	}
	b.Run("insert", func(b *testing.B) {
		db := open(b)
		if _, err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			if _, err := db.Exec("INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("note %d", i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "inserts/s")
	})
	for _, goroutines := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("tx-read-write/goroutines=%d", goroutines), func(b *testing.B) {
			db := open(b)
			if _, err := db.Exec(`CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
				WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 64) INSERT INTO c SELECT i, 0 FROM s`); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			next := make(chan struct{}, goroutines)
			var fail firstError
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						err := db.Tx(ctx, func(tx *sql.Tx) error {
							var n int
							if err := tx.QueryRowContext(ctx, "SELECT n FROM c WHERE id = ?", g+1).Scan(&n); err != nil {
								return err
							}
							_, err := tx.ExecContext(ctx, "UPDATE c SET n = ? WHERE id = ?", n+1, g+1)
							return err
						})
						if err != nil {
							fail.set(err)
						}
					}
				}()
			}
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tx/s")
			if err := fail.get(); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.Run("open", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "open.db")
		db, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(SQLiteOnly), WithSQLitePath(path))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x')"); err != nil {
			b.Fatal(err)
		}
		db.Close()
		for b.Loop() {
			db, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(SQLiteOnly), WithSQLitePath(path))
			if err != nil {
				b.Fatal(err)
			}
			var n int
			if err := db.QueryRow("SELECT count(*) FROM notes").Scan(&n); err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
}

// BenchmarkWithOpenDB measures the cost of the WithOpenDB hook itself: a
// point query and a single-row insert through the pool as Open makes it,
// and through a pass-through wrapper installed with WithOpenDB (the
// recorder of hooks_test.go, which records each statement). The cost of a
// real tracer, otelsql, is in integration/otelsql_bench_test.go.
func BenchmarkWithOpenDB(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		name := "plain"
		if wrapped {
			name = "wrapped"
		}
		b.Run(name, func(b *testing.B) {
			opts := []Option{env(), withDataDir(""), WithStrategy(SQLiteOnly), WithSQLitePath(filepath.Join(b.TempDir(), "hook.db"))}
			rec := &recorder{}
			if wrapped {
				opts = append(opts, WithOpenDB(rec.open))
			}
			db, err := Open(context.Background(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES (1, 42)"); err != nil {
				b.Fatal(err)
			}
			b.Run("query", func(b *testing.B) {
				var n int
				for b.Loop() {
					rec.reset()
					if err := db.QueryRow("SELECT n FROM c WHERE id = 1").Scan(&n); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("insert", func(b *testing.B) {
				for b.Loop() {
					rec.reset()
					if _, err := db.Exec("INSERT INTO c (n) VALUES (1)"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
