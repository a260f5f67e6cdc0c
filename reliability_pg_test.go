package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appURL is the throwaway server's URL for an unprivileged role with a
// password, created on first use.
func appURL(t testing.TB, srv *pgServer) string {
	t.Helper()
	srv.exec(`DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN
			CREATE ROLE app LOGIN PASSWORD 'App-Pw#1';
		END IF; END $$`)
	srv.exec("GRANT ALL ON SCHEMA public TO app")
	return fmt.Sprintf("postgres://app:App-Pw%%231@127.0.0.1:%d/postgres?sslmode=disable", srv.port)
}

// TestServerFaults runs the library against a throwaway PostgreSQL that is
// stopped, killed under load, restarted, full, and made to terminate
// sessions. Nothing panics, callers get clear errors, Health tells the
// truth, and the pool serves again once the server does.
func TestServerFaults(t *testing.T) {
	srv := startPGServer(t)
	url := appURL(t, srv)

	t.Run("stopped before Open", func(t *testing.T) {
		srv.stop("fast")
		defer srv.start()
		db, _ := openWith(t, url)
		assert.Equal(t, SQLite, db.Dialect())
		assert.Contains(t, db.Reason(), "refused")
		assert.NotContains(t, db.Reason(), "App-Pw")
		isolatedDirs(t)
		_, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""), WithStrategy(PrimaryOnly))
		assert.ErrorIs(t, err, ErrNoDatabase)
	})

	t.Run("killed under load, then restarted", func(t *testing.T) {
		db, _ := openWith(t, url, WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: 8}))
		ctx, cancel := context.WithCancel(context.Background())
		var ok, failed atomic.Int64
		var firstErr firstError
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
					var n int
					err := db.QueryRowContext(qctx, "SELECT count(*) FROM pg_class").Scan(&n)
					qcancel()
					if err != nil {
						failed.Add(1)
						firstErr.set(err)
						time.Sleep(5 * time.Millisecond)
					} else {
						ok.Add(1)
					}
				}
			}()
		}
		time.Sleep(200 * time.Millisecond)
		before := ok.Load()
		srv.stop("immediate") // as far as clients can tell, a crash
		h := db.Health(context.Background())
		assert.Equal(t, "down", h.Status, "Health tells the truth at once")
		assert.NotEmpty(t, h.Error)
		time.Sleep(300 * time.Millisecond)
		srv.start()
		require.Eventually(t, func() bool { return db.Health(context.Background()).Status == "up" }, 15*time.Second, 50*time.Millisecond)
		afterRestart := ok.Load()
		time.Sleep(300 * time.Millisecond)
		cancel()
		wg.Wait()
		assert.Positive(t, before, "queries ran before the crash")
		assert.Greater(t, ok.Load(), afterRestart, "queries run again after the restart")
		assert.Positive(t, failed.Load(), "queries during the outage fail")
		if err := firstErr.get(); err != nil {
			assert.NotContains(t, err.Error(), "App-Pw")
			t.Logf("an error a caller saw during the outage: %v", err)
		}
	})

	t.Run("max_connections reached", func(t *testing.T) {
		srv.restart(4) // three for roles like app, one reserved for the superuser
		defer srv.restart(20)
		holder, _ := openWith(t, url, WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: 3, MaxIdleConns: 3}))
		var conns []interface{ Close() error }
		for range 3 {
			c, err := holder.Conn(context.Background())
			require.NoError(t, err)
			require.NoError(t, c.PingContext(context.Background()))
			conns = append(conns, c)
		}
		db, took := openWith(t, url)
		assert.Equal(t, SQLite, db.Dialect(), "a full server means fallback, not a hang")
		assert.Less(t, took, 2*time.Second)
		assert.Contains(t, db.Reason(), "53300", "the reason names the cause: too many clients")
		assert.False(t, IsPermanent(db.Attempts()[0].Err), "a full server is transient")
		for _, c := range conns {
			c.Close()
		}
		var n int
		assert.NoError(t, holder.QueryRow("SELECT 1").Scan(&n), "the pool that holds connections keeps serving")
	})

	t.Run("sessions terminated", func(t *testing.T) {
		db, _ := openWith(t, url, WithStrategy(PrimaryOnly))
		var n int
		require.NoError(t, db.QueryRow("SELECT 1").Scan(&n))
		srv.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'")
		var errs []error
		for range 3 {
			if err := db.QueryRow("SELECT 1").Scan(&n); err != nil {
				errs = append(errs, err)
				continue
			}
			break
		}
		require.Less(t, len(errs), 3, "the pool replaces terminated connections: %v", errs)
		for _, err := range errs {
			var pg *pgconn.PgError
			clear := errors.As(err, &pg) && pg.Code == "57P01" || strings.Contains(err.Error(), "closed") || strings.Contains(err.Error(), "EOF")
			assert.True(t, clear, "a terminated session reports why: %v", err)
		}
		assert.Equal(t, "up", db.Health(context.Background()).Status)
	})
}
