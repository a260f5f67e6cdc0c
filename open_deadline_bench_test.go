package dbfallback

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkOpenDeadline measures the time from Open to a usable database
// (schema hook included) when the caller gives Open one second and the
// primary accepts connections and never answers, with the default 5 s
// connect timeout. Target: under the deadline. The baselines, in the same
// run, are SQLiteOnly on the same file and the same Open without a
// deadline (which waits the connect timeout).
func BenchmarkOpenDeadline(b *testing.B) {
	silent := fmt.Sprintf("postgres://app:pw@127.0.0.1:%d/app?sslmode=disable", silentListener(b))
	path := filepath.Join(b.TempDir(), "bench.db")
	schema := WithInit(func(ctx context.Context, db *DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
		return err
	})
	cases := []struct {
		name     string
		deadline time.Duration
		opts     []Option
	}{
		{"baseline SQLiteOnly", 0, []Option{WithStrategy(SQLiteOnly)}},
		{"silent primary, 1s deadline", time.Second, []Option{env("DATABASE_URL", silent)}},
		{"silent primary, 1s deadline, WithPrimaryWait(1m)", time.Second, []Option{env("DATABASE_URL", silent), WithPrimaryWait(time.Minute)}},
		{"silent primary, 3s deadline", 3 * time.Second, []Option{env("DATABASE_URL", silent)}},
		{"silent primary, no deadline (connect timeout 5s)", 0, []Option{env("DATABASE_URL", silent)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			opts := append([]Option{env(), withDataDir(""), WithSQLitePath(path), schema}, c.opts...)
			for b.Loop() {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if c.deadline > 0 {
					ctx, cancel = context.WithTimeout(ctx, c.deadline)
				}
				db, err := Open(ctx, opts...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := db.Exec("INSERT INTO notes (body) VALUES ('x')"); err != nil {
					b.Fatal(err)
				}
				cancel()
				db.Close()
			}
		})
	}
}
