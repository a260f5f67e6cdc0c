package dbfallback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenWithoutConfiguration(t *testing.T) {
	isolatedDirs(t)
	var logs bytes.Buffer
	db, err := Open(context.Background(), env(), withDataDir(""),
		WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, SQLite, db.Dialect())
	assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path)
	assert.True(t, db.Fallback())
	assert.True(t, db.Ephemeral())
	assert.Equal(t, "no database URL configured", db.Reason())
	require.Len(t, db.Attempts(), 1)
	assert.NoError(t, db.Attempts()[0].Err)
	_, err = db.Exec("CREATE TABLE t(x)")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 1, "one line at open")
	assert.Contains(t, lines[0], `"msg":"dbfallback: using a fallback database; data is ephemeral"`)
	assert.Contains(t, lines[0], `"dialect":"sqlite"`)
	assert.Contains(t, lines[0], `"reason":"no database URL configured"`)
}

func TestOpenStrategies(t *testing.T) {
	t.Run("PrimaryOnly without a primary", func(t *testing.T) {
		isolatedDirs(t)
		_, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(PrimaryOnly))
		assert.ErrorIs(t, err, ErrNoDatabase)
		assert.ErrorContains(t, err, "no database URL configured")
	})
	t.Run("PrimaryOnly with an invalid primary", func(t *testing.T) {
		isolatedDirs(t)
		_, err := Open(context.Background(), env("DATABASE_URL", "postgres://u:Hunter22@db:PORT/app"), withDataDir(""), WithStrategy(PrimaryOnly))
		assert.ErrorIs(t, err, ErrNoDatabase)
		assert.ErrorContains(t, err, "placeholder")
		assert.NotContains(t, err.Error(), "Hunter22")
	})
	t.Run("SQLiteOnly ignores the primary", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("DATABASE_URL", "postgres://127.0.0.1:1/app"), withDataDir(""), WithStrategy(SQLiteOnly))
		require.NoError(t, err)
		defer db.Close()
		assert.Equal(t, SQLite, db.Dialect())
		assert.True(t, db.Fallback())
		assert.Len(t, db.Attempts(), 1, "the primary was not tried")
	})
	t.Run("StrategyFunc", func(t *testing.T) {
		isolatedDirs(t)
		memoryOnly := StrategyFunc(func(r Resolution) []Target { return r.Fallbacks[len(r.Fallbacks)-1:] })
		db, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(memoryOnly))
		require.NoError(t, err)
		defer db.Close()
		assert.True(t, db.Target().Memory)
	})
	t.Run("empty strategy", func(t *testing.T) {
		isolatedDirs(t)
		_, err := Open(context.Background(), env(), withDataDir(""), WithStrategy(StrategyFunc(func(Resolution) []Target { return nil })))
		assert.ErrorIs(t, err, ErrNoDatabase)
	})
	assert.Equal(t, "PrimaryOnly", PrimaryOnly.String())
}

func TestOpenSkipsUnwritableDirectory(t *testing.T) {
	isolatedDirs(t)
	db, err := Open(context.Background(), env("SQLITE_PATH", "/sys/app.db"), withDataDir(""))
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path, "/sys refuses writes, even to root; ./data is next")
}

// TestOpenInitHook: an init hook's error that is not about availability
// (here a migration tool's own error) fails Open with that error, under
// every strategy, instead of moving the service to the next database as
// an earlier version did. The message is redacted; the chain is kept.
func TestOpenInitHook(t *testing.T) {
	errMigration := errors.New("migration 0003 failed")
	for _, strategy := range []Strategy{PreferPrimary, SQLiteOnly} {
		t.Run(fmt.Sprint(strategy), func(t *testing.T) {
			work, tmp := isolatedDirs(t)
			var seen []Target
			var logs bytes.Buffer
			db, err := Open(context.Background(), env("TMPDIR", tmp), withDataDir(""), WithStrategy(strategy),
				WithLogger(slogJSON(&logs)),
				WithInit(func(ctx context.Context, db *DB) error {
					seen = append(seen, db.Target())
					if _, err := db.ExecContext(ctx, "CREATE TABLE notes(body TEXT)"); err != nil {
						return err
					}
					return fmt.Errorf("schema: %w", errMigration)
				}))
			require.Error(t, err)
			assert.Nil(t, db)
			assert.ErrorIs(t, err, errMigration, "errors.Is sees the hook's error")
			assert.NotErrorIs(t, err, ErrNoDatabase)
			assert.ErrorContains(t, err, "init hook 1")
			assert.ErrorContains(t, err, "not falling back")
			require.Len(t, seen, 1, "no other database was tried")
			assert.Equal(t, filepath.Join("data", "app.db"), seen[0].Path)
			assert.Contains(t, logs.String(), "not falling back")
			_, err = os.Stat(filepath.Join(work, "data", "app.db"))
			assert.NoError(t, err, "the file the hook ran on is kept as it is")
		})
	}
}

func TestOpenContextDone(t *testing.T) {
	isolatedDirs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Open(ctx, env(), withDataDir(""))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestCloseIsIdempotent(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "x.db"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, db.Close()) }()
	}
	wg.Wait()
	assert.NoError(t, db.Close())
	h := db.Health(context.Background())
	assert.Equal(t, "down", h.Status)
	assert.Contains(t, h.Error, "closed")
}

func TestHealthSQLite(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "x.db"))
	h := db.Health(context.Background())
	assert.Equal(t, "up", h.Status)
	assert.Equal(t, SQLite, h.Dialect)
	assert.False(t, h.Ephemeral, "an explicit path is persistent")
	assert.True(t, h.Fallback)
	assert.Nil(t, h.PrimaryUp, "no probe runs")
	assert.GreaterOrEqual(t, h.LatencyMS, 0.0)
}

func TestIsPermanent(t *testing.T) {
	_, verr := Validate("mysql://x")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"validation", verr, true},
		{"marked", permanent(errors.New("x")), true},
		{"plain", errors.New("connection refused"), false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, IsPermanent(tt.err)) })
	}
}

func TestBuiltinStrategyString(t *testing.T) {
	tests := []struct {
		s    BuiltinStrategy
		want string
	}{
		{PreferPrimary, "PreferPrimary"},
		{PrimaryOnly, "PrimaryOnly"},
		{SQLiteOnly, "SQLiteOnly"},
		{BuiltinStrategy(7), "BuiltinStrategy(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.s.String())
			var _ Strategy = tt.s
		})
	}
}
