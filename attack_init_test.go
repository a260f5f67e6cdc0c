package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_init_test.go attacks the rule that an init hook's bug fails Open
// (never a silent move to another database) with real migration shapes,
// on both dialects and under every strategy.

// attackPGURL is the test PostgreSQL server, or a skip when none is
// configured (CI configures one, and there a skip fails the run).
func attackPGURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("DBFALLBACK_TEST_DATABASE_URL is not set")
	}
	return u
}

// attackPGPassword is the password of the test server's URL.
func attackPGPassword(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	pw, _ := u.User.Password()
	require.NotEmpty(t, pw, "the test URL must carry a password for the leak checks")
	return pw
}

// toolError is a migration tool's own error type.
type toolError struct {
	Version int
	Err     error
}

func (e *toolError) Error() string { return fmt.Sprintf("migration %d failed: %v", e.Version, e.Err) }
func (e *toolError) Unwrap() error { return e.Err }

// TestAttackInitBugFailsOpen: every hook error that is a bug fails Open,
// whatever the dialect and strategy, with the hook's error reachable by
// errors.Is/As, no secret in the text, and no fallback database touched.
func TestAttackInitBugFailsOpen(t *testing.T) {
	pgURL := attackPGURL(t)
	password := attackPGPassword(t, pgURL)
	table := fmt.Sprintf("attack_init_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		db, err := sql.Open("pgx", pgURL)
		if err == nil {
			db.Exec("DROP TABLE IF EXISTS " + table + "_a, " + table + "_b")
			db.Close()
		}
	})
	type check func(t *testing.T, err error)
	isPg := func(code string) check {
		return func(t *testing.T, err error) {
			var pg *pgconn.PgError
			require.ErrorAs(t, err, &pg)
			assert.Equal(t, code, pg.Code)
		}
	}
	isSQLite := func(code int) check {
		return func(t *testing.T, err error) {
			got, ok := sqliteCode(err)
			require.Truef(t, ok, "not a SQLite error: %v", err)
			assert.Equal(t, code, got&0xff)
		}
	}
	isErr := func(target error) check {
		return func(t *testing.T, err error) { assert.ErrorIs(t, err, target) }
	}
	isMigration := func(t *testing.T, err error) {
		var me *toolError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, 7, me.Version)
	}
	// The hooks, each a real failure.
	gooseLike := func(ctx context.Context, db *DB) error {
		// One migration file, several statements, the second a SQLite-ism.
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+"_a (id BIGINT PRIMARY KEY);\nCREATE TABLE IF NOT EXISTS "+table+"_b (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT);")
		return err
	}
	postgresOnly := func(ctx context.Context, db *DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body TEXT)")
		return err
	}
	partial := func(ctx context.Context, db *DB) error {
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+"_a (id BIGINT PRIMARY KEY)"); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+table+"_a (id) VALUES (1), (1)"); err != nil {
			return &toolError{Version: 7, Err: err}
		}
		return nil
	}
	selfTimeout := func(ctx context.Context, db *DB) error {
		hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		q := "SELECT pg_sleep(5)"
		if db.Dialect() == SQLite {
			q = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
		}
		var n sql.NullInt64
		err := db.QueryRowContext(hctx, q).Scan(&n)
		if err == nil {
			return errors.New("the query was expected to time out")
		}
		return fmt.Errorf("migrate: %w", err)
	}
	wrappedCanceled := func(ctx context.Context, db *DB) error {
		return fmt.Errorf("migrate: lock wait: %w", context.Canceled)
	}
	dsnInError := func(ctx context.Context, db *DB) error {
		// A tool that prints its connection string in errors.
		return &toolError{Version: 7, Err: fmt.Errorf("dirty database at %s (raw %q)", db.Target().DSN(), password)}
	}
	tests := []struct {
		name     string
		dialect  Dialect
		strategy Strategy
		hook     func(context.Context, *DB) error
		check    check
	}{
		{name: "postgres: goose-like file with AUTOINCREMENT", dialect: Postgres, hook: gooseLike, check: isPg("42601")},
		{name: "postgres: goose-like file, PrimaryOnly", dialect: Postgres, strategy: PrimaryOnly, hook: gooseLike, check: isPg("42601")},
		{name: "postgres: goose-like file, custom strategy", dialect: Postgres, hook: gooseLike, check: isPg("42601"),
			strategy: StrategyFunc(func(r Resolution) []Target { return append([]Target{r.Primary}, r.Fallbacks...) })},
		{name: "postgres: partial migration then a constraint", dialect: Postgres, hook: partial, check: isMigration},
		{name: "postgres: the hook's own timeout", dialect: Postgres, hook: selfTimeout, check: isErr(context.DeadlineExceeded)},
		{name: "postgres: a wrapped context.Canceled", dialect: Postgres, hook: wrappedCanceled, check: isErr(context.Canceled)},
		{name: "postgres: the DSN in the error", dialect: Postgres, hook: dsnInError, check: isMigration},
		{name: "sqlite: PostgreSQL-only DDL", dialect: SQLite, hook: postgresOnly, check: isSQLite(sqlengine.Error)},
		{name: "sqlite: PostgreSQL-only DDL, SQLiteOnly", dialect: SQLite, strategy: SQLiteOnly, hook: postgresOnly, check: isSQLite(sqlengine.Error)},
		{name: "sqlite: partial migration then a constraint", dialect: SQLite, hook: partial, check: isMigration},
		{name: "sqlite: the hook's own timeout", dialect: SQLite, hook: selfTimeout, check: isErr(context.DeadlineExceeded)},
		{name: "sqlite: a wrapped context.Canceled", dialect: SQLite, hook: wrappedCanceled, check: isErr(context.Canceled)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			vars := map[string]string{}
			if tt.dialect == Postgres {
				vars["DATABASE_URL"] = pgURL
			}
			opts := dirs.opts(vars, WithInit(tt.hook))
			if tt.strategy != nil {
				opts = append(opts, WithStrategy(tt.strategy))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			db, err := Open(ctx, opts...)
			if db != nil {
				db.Close()
			}
			require.Error(t, err, "a hook's bug must fail Open")
			assert.Nil(t, db)
			assert.NotErrorIs(t, err, ErrNoDatabase)
			assert.NotContains(t, err.Error(), password)
			assert.NotContains(t, err.Error(), url.QueryEscape(password))
			assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), password)
			tt.check(t, err)
			if tt.dialect == Postgres {
				assert.Empty(t, namesIn(t, dirs.work), "no fallback may be opened after a bug on the primary")
			} else {
				assert.NotContains(t, namesIn(t, dirs.tmp), "app.db", "no next location may be opened after a bug on the first")
			}
		})
	}
}

// TestAttackInitUnavailableMovesOn: a hook that fails because the
// database could not do the work (its connection killed, the file full)
// passes to the next candidate, which then serves.
func TestAttackInitUnavailableMovesOn(t *testing.T) {
	pgURL := attackPGURL(t)
	tests := []struct {
		name    string
		primary string
		hook    func(context.Context, *DB) error
		wantIn  string // the reason names this
	}{
		{name: "postgres: the backend is terminated (57P01)", primary: pgURL, wantIn: "57P01", hook: func(ctx context.Context, db *DB) error {
			if db.Dialect() != Postgres {
				return nil
			}
			_, err := db.ExecContext(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
			return err
		}},
		{name: "sqlite: the file is full (SQLITE_FULL)", wantIn: "full", hook: func(ctx context.Context, db *DB) error {
			if db.Target().Path != "data/app.db" {
				return nil
			}
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			var pages int
			if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages+1)); err != nil {
				return err
			}
			_, err = conn.ExecContext(ctx, "CREATE TABLE big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000) SELECT randomblob(100) AS b FROM c")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			vars := map[string]string{}
			if tt.primary != "" {
				vars["DATABASE_URL"] = tt.primary
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			db, err := Open(ctx, dirs.opts(vars, WithInit(tt.hook))...)
			require.NoError(t, err)
			defer db.Close()
			assert.True(t, db.Fallback())
			assert.Equal(t, SQLite, db.Dialect())
			assert.Contains(t, strings.ToLower(db.Reason()), strings.ToLower(tt.wantIn))
			requireUsable(t, db)
		})
	}
}

// TestAttackInitHookPanics: a hook that panics does not leave the
// candidate's pool open behind the panic, and nothing falls back.
func TestAttackInitHookPanics(t *testing.T) {
	pgURL := attackPGURL(t)
	for _, primary := range []string{pgURL, ""} {
		name := "sqlite"
		if primary != "" {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			dirs := isolateAttack(t)
			vars := map[string]string{}
			if primary != "" {
				vars["DATABASE_URL"] = primary
			}
			done := settled(t)
			var got any
			var db *DB
			func() {
				defer func() { got = recover() }()
				db, _ = Open(context.Background(), dirs.opts(vars, WithInit(func(ctx context.Context, db *DB) error {
					panic("migration bug")
				}))...)
			}()
			assert.Equal(t, "migration bug", got, "the hook's panic reaches the caller")
			assert.Nil(t, db)
			done()
		})
	}
}
