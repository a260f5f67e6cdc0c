package dbfallback

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// BenchmarkTx compares Tx around one insert with the same work written by
// hand (BeginTx, Exec, Commit), on SQLite and PostgreSQL, same run.
// Target: at most 5% overhead.
func BenchmarkTx(b *testing.B) {
	dbs := map[string]func(b *testing.B) *DB{
		"sqlite": func(b *testing.B) *DB {
			db, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(filepath.Join(b.TempDir(), "tx.db")), WithStrategy(SQLiteOnly))
			if err != nil {
				b.Fatal(err)
			}
			return db
		},
		"postgres": func(b *testing.B) *DB {
			db, err := Open(context.Background(), env("DATABASE_URL", testPostgresURL(b)), withDataDir(""), WithStrategy(PrimaryOnly))
			if err != nil {
				b.Fatal(err)
			}
			return db
		},
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			db := dbs[dialect](b)
			defer db.Close()
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS bench_tx"); err != nil {
				b.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "CREATE TABLE bench_tx (v INTEGER)"); err != nil {
				b.Fatal(err)
			}
			b.Run("Tx", func(b *testing.B) {
				for b.Loop() {
					err := db.Tx(ctx, func(tx *sql.Tx) error {
						_, err := tx.ExecContext(ctx, "INSERT INTO bench_tx (v) VALUES ($1)", 1)
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("BeginTx+Commit", func(b *testing.B) {
				for b.Loop() {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tx.ExecContext(ctx, "INSERT INTO bench_tx (v) VALUES ($1)", 1); err != nil {
						tx.Rollback()
						b.Fatal(err)
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
