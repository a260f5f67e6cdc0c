package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFallbackReserve(t *testing.T) {
	tests := []struct {
		remaining, want time.Duration
	}{
		{100 * time.Millisecond, 50 * time.Millisecond}, // half at most
		{400 * time.Millisecond, 200 * time.Millisecond},
		{500 * time.Millisecond, 250 * time.Millisecond},
		{time.Second, 250 * time.Millisecond}, // 250 ms at least
		{2 * time.Second, 500 * time.Millisecond},
		{4 * time.Second, time.Second}, // a quarter
		{8 * time.Second, 2 * time.Second},
		{time.Minute, 2 * time.Second}, // 2 s at most
	}
	for _, tt := range tests {
		t.Run(tt.remaining.String(), func(t *testing.T) {
			assert.Equal(t, tt.want, fallbackReserve(tt.remaining))
		})
	}
}

// TestOpenWithCallerDeadline: a caller who bounds Open with a deadline
// against a silent primary (connect timeout longer than the deadline) gets
// SQLite, init hooks run, before the deadline. An earlier version returned
// context.DeadlineExceeded and no database.
func TestOpenWithCallerDeadline(t *testing.T) {
	silent := fmt.Sprintf("postgres://app:Hunter22@127.0.0.1:%d/app?sslmode=disable&connect_timeout=30", silentListener(t))
	refused := fmt.Sprintf("postgres://app:Hunter22@127.0.0.1:%d/app?sslmode=disable", freePort(t))
	schema := WithInit(func(ctx context.Context, db *DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
		return err
	})
	tests := []struct {
		name     string
		url      string
		deadline time.Duration
		opts     []Option
		tries    int // at least
	}{
		{"silent primary, 300ms", silent, 300 * time.Millisecond, nil, 1},
		{"silent primary, 1s", silent, time.Second, nil, 1},
		{"silent primary, 2s", silent, 2 * time.Second, nil, 1},
		{"silent primary, 1s, default connect timeout", fmt.Sprintf("postgres://app:Hunter22@127.0.0.1:%d/app?sslmode=disable", silentListener(t)), time.Second, nil, 1},
		{"refused primary retried under WithPrimaryWait, 1s", refused, time.Second, []Option{WithPrimaryWait(time.Minute)}, 2},
		{"silent primary retried under WithPrimaryWait, 1s", silent, time.Second, []Option{WithPrimaryWait(time.Minute)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolatedDirs(t)
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			start := time.Now()
			db, err := Open(ctx, append([]Option{env("DATABASE_URL", tt.url), withDataDir(""), schema}, tt.opts...)...)
			took := time.Since(start)
			require.NoError(t, err, "a database before the deadline")
			defer db.Close()
			assert.Less(t, took, tt.deadline)
			assert.Equal(t, SQLite, db.Dialect())
			_, err = db.Exec("INSERT INTO notes (body) VALUES ('ok')")
			assert.NoError(t, err, "usable, schema included")
			// The primary, then the SQLite file; on a loaded machine the
			// file's share of the deadline may run out and the next
			// location answer instead: still a database in time.
			require.GreaterOrEqual(t, len(db.Attempts()), 2)
			assert.Equal(t, Postgres, db.Attempts()[0].Target.Dialect)
			assert.GreaterOrEqual(t, db.Attempts()[0].Tries, tt.tries)
			if tt.tries == 1 {
				assert.Contains(t, db.Reason(), "not kept for the fallback")
			}
			assert.NotContains(t, db.Reason(), "Hunter22")
			t.Logf("took %s of %s: %s", took.Round(time.Millisecond), tt.deadline, db.Reason())
		})
	}
	t.Run("the last candidate gets the whole deadline", func(t *testing.T) {
		isolatedDirs(t)
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Open(ctx, env("DATABASE_URL", silent), withDataDir(""), WithStrategy(PrimaryOnly))
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoDatabase), "%v", err)
		assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond, "PrimaryOnly keeps nothing in reserve")
	})
	t.Run("no deadline: the connect timeout alone", func(t *testing.T) {
		isolatedDirs(t)
		url := fmt.Sprintf("postgres://app:Hunter22@127.0.0.1:%d/app?sslmode=disable", silentListener(t))
		start := time.Now()
		db, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""), WithConnectTimeout(300*time.Millisecond))
		require.NoError(t, err)
		defer db.Close()
		assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		assert.Contains(t, db.Reason(), "connect timeout")
		assert.NotContains(t, db.Reason(), "not kept for the fallback")
	})
}
