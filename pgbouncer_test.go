package dbfallback

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPgBouncerWorkload runs 64 clients through a real PgBouncer in front
// of the shared test server, each doing every way a service reaches
// PostgreSQL through the library: queries with arguments, a statement
// prepared once on the pool, Prepare/run/Close per call, db.Tx, sqlc-style
// prepared queries in and out of transactions, and requests using their
// Session (a query, Session.PrepareContext, a session transaction).
// With pgbouncer=true nothing fails in either mode; the failing cases
// show why the flag and the unnamed statements of pooler mode exist.
func TestPgBouncerWorkload(t *testing.T) {
	tests := []struct {
		name  string
		mode  string
		extra string
		opts  []Option
		// maxOpen is the DB's pool size. In session mode each client
		// connection holds a server connection while it is open, so it must
		// not exceed PgBouncer's pool (8 here), or callers wait for
		// query_wait_timeout.
		maxOpen int
		// wantErrors: "" none; "prepared" some, all of them about named
		// prepared statements (26000 does not exist, 42P05 already
		// exists); "any" some.
		wantErrors string
	}{
		{name: "transaction mode, pgbouncer=true", mode: "transaction", extra: "pgbouncer=true", maxOpen: 64},
		{name: "session mode, pgbouncer=true", mode: "session", extra: "pgbouncer=true", maxOpen: 8},
		{name: "session mode without the flag", mode: "session", maxOpen: 8},
		{name: "transaction mode without the flag: pgx's statement cache fails", mode: "transaction", maxOpen: 64, wantErrors: "any"},
		{name: "transaction mode, pgbouncer=true, named prepared statements fail", mode: "transaction", extra: "pgbouncer=true", maxOpen: 64,
			opts: []Option{withPGPlain()}, wantErrors: "prepared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startPgBouncer(t, pgBouncerConfig{mode: tt.mode, poolSize: 8})
			opts := append([]Option{WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: tt.maxOpen, MaxIdleConns: tt.maxOpen})}, tt.opts...)
			db, _ := openWith(t, b.url(t, "", tt.extra), opts...)
			w := newWorkload(t, db)
			took := w.runClients(64, 4)
			ops, errs := w.totals()
			t.Logf("%d operations in %v, %d errors, p99 %v", ops, took.Round(time.Millisecond), errs, w.percentile(99))
			for _, line := range w.errorLines() {
				t.Log(line)
			}
			switch tt.wantErrors {
			case "":
				assert.Zero(t, errs, "no errors: %v", w.errorLines())
			case "any":
				assert.Positive(t, errs)
			case "prepared":
				// pgx runs a query whose SQL this connection once prepared
				// as that statement, so a query or Tx can fail too.
				assert.Positive(t, errs)
				for kind := range w.errs {
					assert.True(t, strings.Contains(kind, "26000") || strings.Contains(kind, "42P05"), "only named statements fail: %s", kind)
				}
			}
		})
	}
}

// TestPgBouncerServerDown: PgBouncer is up, the server behind it is not.
// PgBouncer holds a login it cannot finish until client_login_timeout
// (60s by default) and then fails it with FATAL 08P01; after a failed
// server login it fails new ones at once ("server login has been
// failing", also 08P01) for server_login_retry; queries on open
// connections wait for query_wait_timeout (120s).
func TestPgBouncerServerDown(t *testing.T) {
	srv := startPGServer(t)
	up := appURL(t, srv)

	t.Run("Open falls back within its connect timeout", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up})
		srv.stop("fast")
		defer srv.start()
		db, took := openWith(t, b.url(t, up, "pgbouncer=true"), WithConnectTimeout(time.Second))
		assert.Equal(t, SQLite, db.Dialect())
		assert.Less(t, took, 1500*time.Millisecond, "the connect timeout, not PgBouncer's 60s")
		a := db.Attempts()[0]
		assert.False(t, IsPermanent(a.Err), "a server down behind a pooler is transient: %v", a.Err)
		assert.Contains(t, db.Reason(), "connection pooler", "the reason says a pooler is holding the login")
		assert.NotContains(t, db.Reason(), "App-Pw")
	})

	t.Run("PgBouncer's login timeout is transient: WithPrimaryWait waits for the server", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up, loginTimeout: time.Second})
		srv.stop("fast")
		type result struct {
			db  *DB
			err error
		}
		done := make(chan result, 1)
		isolatedDirs(t)
		go func() {
			db, err := Open(context.Background(), env("DATABASE_URL", b.url(t, up, "pgbouncer=true")), withDataDir(""),
				WithConnectTimeout(3*time.Second), WithPrimaryWait(20*time.Second))
			done <- result{db, err}
		}()
		time.Sleep(1500 * time.Millisecond) // at least one login timed out by PgBouncer
		srv.start()
		r := <-done
		require.NoError(t, r.err)
		defer r.db.Close()
		assert.Equal(t, Postgres, r.db.Dialect(), r.db.Reason())
		assert.GreaterOrEqual(t, r.db.Attempts()[0].Tries, 2, "PgBouncer's 08P01 was retried")
	})

	t.Run("Health says what happened", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up})
		db, _ := openWith(t, b.url(t, up, "pgbouncer=true"), WithStrategy(PrimaryOnly))
		h := db.Health(context.Background())
		require.Equal(t, "up", h.Status)
		assert.Equal(t, b.addr(), h.Server, "the address that answered is PgBouncer's")
		srv.stop("fast")
		h = db.Health(context.Background())
		assert.Equal(t, "down", h.Status)
		assert.Contains(t, h.Error, "no answer within")
		assert.Contains(t, h.Error, "connection pooler")
		srv.start()
		require.Eventually(t, func() bool {
			h = db.Health(context.Background())
			return h.Status == "up"
		}, 15*time.Second, 100*time.Millisecond, "up again once the server is: %+v", h)
	})

	t.Run("PgBouncer's configuration errors are permanent", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up})
		// PgBouncer 1.18 refuses startup parameters it does not track.
		db, took := openWith(t, b.url(t, up, "pgbouncer=true&lock_timeout=10000"), WithPrimaryWait(5*time.Second))
		assert.Equal(t, SQLite, db.Dialect())
		a := db.Attempts()[0]
		assert.True(t, IsPermanent(a.Err), "%v", a.Err)
		assert.Equal(t, 1, a.Tries, "not retried")
		assert.Less(t, took, time.Second)
		assert.Contains(t, db.Reason(), "unsupported startup parameter: lock_timeout")
	})
}
