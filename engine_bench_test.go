package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSQLiteWriters measures SQLite write throughput at 1, 8 and 64
// concurrent writers, each running read-then-write transactions, through
// dbfallback's tuning against the build's SQLite engine with its default
// settings and a plain pool (named "go-sqlite3 default" in either build,
// so that the figures keep their names; with puresqlite it is
// modernc.org/sqlite's default). Reported: rows/s and errors (errors/op must be 0 for
// dbfallback). One op is one committed (or failed) transaction.
func BenchmarkSQLiteWriters(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		for _, kind := range []string{"dbfallback", "go-sqlite3 default"} {
			b.Run(fmt.Sprintf("%s/writers=%d", kind, writers), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "w.db")
				var db *sql.DB
				if kind == "dbfallback" {
					d, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(path), WithStrategy(SQLiteOnly))
					if err != nil {
						b.Fatal(err)
					}
					defer d.Close()
					db = d.DB
				} else {
					var err error
					db, err = openRawSQLite(path)
					if err != nil {
						b.Fatal(err)
					}
					defer db.Close()
				}
				if _, err := db.Exec("CREATE TABLE c(n INTEGER); INSERT INTO c VALUES (0); CREATE TABLE r(v TEXT)"); err != nil {
					b.Fatal(err)
				}
				var errs atomic.Int64
				next := make(chan struct{}, writers)
				var wg sync.WaitGroup
				start := time.Now()
				b.ResetTimer()
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range next {
							if err := writeOnce(db); err != nil {
								errs.Add(1)
							}
						}
					}()
				}
				for b.Loop() {
					next <- struct{}{}
				}
				close(next)
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N-int(errs.Load()))/time.Since(start).Seconds(), "rows/s")
				b.ReportMetric(float64(errs.Load())/float64(b.N), "errors/op")
			})
		}
	}
}

func writeOnce(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow("SELECT n FROM c").Scan(&n); err != nil {
		return err
	}
	if _, err := tx.Exec("UPDATE c SET n = ?", n+1); err != nil {
		return err
	}
	if _, err := tx.Exec("INSERT INTO r VALUES (?)", "row"); err != nil {
		return err
	}
	return tx.Commit()
}
