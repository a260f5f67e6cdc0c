package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pgTable returns a table name of its own for a test, dropped afterwards.
func pgTable(t *testing.T, url string) string {
	t.Helper()
	name := fmt.Sprintf("init_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		db, err := sql.Open("pgx", url)
		if err == nil {
			db.Exec("DROP TABLE IF EXISTS " + name)
			db.Close()
		}
	})
	return name
}

// TestOpenInitErrorsPostgres runs real failing hooks on the real server.
// A bug (the SQLite-ism AUTOINCREMENT, a constraint violation) fails Open
// with the server's error under PreferPrimary and PrimaryOnly alike:
// nothing falls back to SQLite. A terminated backend is availability:
// PreferPrimary moves on to SQLite, PrimaryOnly fails with ErrNoDatabase.
func TestOpenInitErrorsPostgres(t *testing.T) {
	url := testPostgresURL(t)
	bugs := []struct {
		name string
		hook func(table string) func(ctx context.Context, db *DB) error
		code string
	}{
		{"AUTOINCREMENT", func(table string) func(context.Context, *DB) error {
			return func(ctx context.Context, db *DB) error {
				_, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT)")
				return err
			}
		}, "42601"},
		{"unique violation", func(table string) func(context.Context, *DB) error {
			return func(ctx context.Context, db *DB) error {
				if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (k TEXT PRIMARY KEY)"); err != nil {
					return err
				}
				_, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES ('a'), ('a')")
				return err
			}
		}, "23505"},
	}
	for _, strategy := range []Strategy{PreferPrimary, PrimaryOnly} {
		for _, tt := range bugs {
			t.Run(fmt.Sprintf("%v/%s", strategy, tt.name), func(t *testing.T) {
				work, _ := isolatedDirs(t)
				table := pgTable(t, url)
				calls := 0
				hook := tt.hook(table)
				db, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""), WithStrategy(strategy),
					WithInit(func(ctx context.Context, db *DB) error {
						calls++
						require.Equal(t, Postgres, db.Dialect())
						return hook(ctx, db)
					}))
				require.Error(t, err)
				assert.Nil(t, db)
				assert.Equal(t, 1, calls, "SQLite was not tried")
				var pg *pgconn.PgError
				require.ErrorAs(t, err, &pg, "errors.As reaches the server's error: %v", err)
				assert.Equal(t, tt.code, pg.Code)
				assert.NotErrorIs(t, err, ErrNoDatabase)
				assert.Contains(t, err.Error(), "init hook 1 on postgres://")
				assert.NotContains(t, err.Error(), "ci#Pw@dbf/1")
				_, serr := os.Stat(filepath.Join(work, "data", "app.db"))
				assert.ErrorIs(t, serr, os.ErrNotExist, "no SQLite file was created")
			})
		}
	}

	terminate := func(ctx context.Context, db *DB) error {
		if db.Dialect() != Postgres {
			_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (body TEXT)")
			return err
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.ExecContext(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
		return err
	}
	t.Run("PreferPrimary/terminated backend", func(t *testing.T) {
		db, _ := openWith(t, url, WithInit(terminate))
		assert.Equal(t, SQLite, db.Dialect(), "availability moves on")
		aerr := db.Attempts()[0].Err
		var pg *pgconn.PgError
		require.ErrorAs(t, aerr, &pg, "%v", aerr)
		assert.Equal(t, "57P01", pg.Code)
		assert.True(t, IsUnavailable(aerr))
		assert.Contains(t, db.Reason(), "57P01")
		assert.Contains(t, db.Reason(), "unavailable")
		assert.NotContains(t, db.Reason(), "ci#Pw@dbf/1")
	})
	t.Run("PrimaryOnly/terminated backend", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""), WithStrategy(PrimaryOnly), WithInit(terminate))
		assert.Nil(t, db)
		assert.ErrorIs(t, err, ErrNoDatabase)
		var pg *pgconn.PgError
		require.ErrorAs(t, err, &pg)
		assert.Equal(t, "57P01", pg.Code)
	})
	t.Run("the message is redacted, the chain is kept", func(t *testing.T) {
		isolatedDirs(t)
		sentinel := errors.New("tool failed")
		_, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""),
			WithInit(func(ctx context.Context, db *DB) error {
				pw, _ := db.Target().Password()
				return fmt.Errorf("migrate %s with password %s: %w", db.Target().Database, pw, sentinel)
			}))
		require.Error(t, err)
		assert.ErrorIs(t, err, sentinel)
		assert.NotContains(t, err.Error(), "ci#Pw@dbf/1")
		assert.NotContains(t, fmt.Sprintf("%v %+v %#v %s", err, err, err, err), "ci#Pw@dbf/1")
		assert.True(t, strings.HasPrefix(err.Error(), "dbfallback: init hook 1 on postgres://"))
	})
}
