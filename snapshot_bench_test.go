package dbfallback

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// snapshot_bench_test.go measures snapshots for BENCHMARKS.md:
//
//	go test -run '^$' -bench 'BenchmarkSnapshot' -benchtime 3x .
//
// The 1 GB case runs only when named: -bench 'BenchmarkSnapshot(Take|Restore)/1GB'.

// benchSizes are the database sizes measured (bytes of blobs).
var benchSizes = []struct {
	name string
	mb   int
}{{"10MB", 10}, {"100MB", 100}, {"1GB", 1024}}

// snapBenchDB opens a SQLite file of about mb MiB with snapshots to a
// directory of its own (the interval an hour: the benchmark drives them).
func snapBenchDB(b *testing.B, mb int) (*DB, snapEnv) {
	b.Helper()
	root := b.TempDir()
	e := snapEnv{dbPath: filepath.Join(root, "local", "notes.db"), snaps: filepath.Join(root, "bucket")}
	require.NoError(b, os.MkdirAll(e.snaps, 0o700))
	db, err := Open(context.Background(), env(), WithSQLitePath(e.dbPath), WithStrategy(SQLiteOnly),
		WithSnapshotDir(e.snaps), WithSnapshotInterval(time.Hour), durableSnapshots, withSnapshotCloseTimeout(time.Hour))
	require.NoError(b, err)
	_, err = db.Exec("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
	require.NoError(b, err)
	err = db.Tx(context.Background(), func(tx *sql.Tx) error {
		for range mb * 4 {
			if _, err := tx.Exec("INSERT INTO blobs (b) VALUES (randomblob(256 * 1024))"); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(b, err)
	return db, e
}

func skip1GB(b *testing.B, mb int) {
	if mb >= 1024 && !benchNamed1GB() {
		b.Skip("the 1 GB case runs only when named: -bench 'BenchmarkSnapshotTake/1GB'")
	}
}

func benchNamed1GB() bool {
	f := flag.Lookup("test.bench")
	return f != nil && strings.Contains(f.Value.String(), "1GB")
}

// BenchmarkSnapshotTake: one snapshot (VACUUM INTO, copy out with
// SHA-256, fsync, read back, manifest) of a 10 MB, 100 MB, 1 GB database.
func BenchmarkSnapshotTake(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			skip1GB(b, sz.mb)
			db, e := snapBenchDB(b, sz.mb)
			defer db.Close()
			var size int64
			b.ResetTimer()
			for i := range b.N {
				m, err := db.snap.take(context.Background(), int64(i))
				require.NoError(b, err)
				size = m.Size
				b.StopTimer()
				os.Remove(filepath.Join(e.snaps, m.File))
				os.Remove(filepath.Join(e.snaps, m.prefix()+manifestSuffix))
				b.StartTimer()
			}
			b.ReportMetric(float64(size), "snapshot-bytes")
			b.ReportMetric(float64(size)/1e6/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
		})
	}
}

// BenchmarkSnapshotRestore: copying and verifying the newest snapshot
// into a missing local file, as Open does.
func BenchmarkSnapshotRestore(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			skip1GB(b, sz.mb)
			db, e := snapBenchDB(b, sz.mb)
			_, err := db.snap.snapshotIfChanged(context.Background())
			require.NoError(b, err)
			m := db.snap.last
			require.NoError(b, db.Close())
			dst := filepath.Join(b.TempDir(), "restored.db")
			b.ResetTimer()
			for range b.N {
				problem, err := restoreOne(context.Background(), e.snaps, dst, m, false, 0)
				require.NoError(b, err)
				require.Empty(b, problem)
				b.StopTimer()
				os.Remove(dst)
				b.StartTimer()
			}
			b.ReportMetric(float64(m.Size)/1e6/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
		})
	}
}

// BenchmarkSnapshotWriters: small writes through the pool (4 goroutines)
// on a 100 MB database, without snapshots and while snapshots run back
// to back: throughput and p99 latency.
func BenchmarkSnapshotWriters(b *testing.B) {
	for _, snapping := range []bool{false, true} {
		b.Run(fmt.Sprintf("snapshots=%v", snapping), func(b *testing.B) {
			db, _ := snapBenchDB(b, 100)
			defer db.Close()
			ctx, cancel := context.WithCancel(context.Background())
			var snaps int
			var bg sync.WaitGroup
			if snapping {
				bg.Add(1)
				go func() {
					defer bg.Done()
					for v := int64(0); ctx.Err() == nil; v++ {
						if m, err := db.snap.take(ctx, v); err == nil {
							snaps++
							os.Remove(filepath.Join(db.snap.dir, m.File))
							os.Remove(filepath.Join(db.snap.dir, m.prefix()+manifestSuffix))
						}
					}
				}()
			}
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			per := b.N/4 + 1
			b.ResetTimer()
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mine := make([]time.Duration, 0, per)
					for range per {
						t0 := time.Now()
						if _, err := db.Exec("INSERT INTO blobs (b) VALUES (randomblob(200))"); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			b.StopTimer()
			cancel()
			bg.Wait()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "writes/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
			if snapping {
				b.ReportMetric(float64(snaps), "snapshots")
			}
		})
	}
}
