package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withPGURL rewrites the test server's URL: fn receives and returns a
// validated target's parts.
func pgURLWith(t *testing.T, host string, port int, user, password, db string) string {
	t.Helper()
	base, err := Validate(testPostgresURL(t))
	require.NoError(t, err)
	if host == "" {
		host = base.Hosts[0].Name
	}
	if port == 0 {
		port = int(base.Hosts[0].Port)
	}
	if user == "" {
		user = base.User
	}
	if password == "" {
		password, _ = base.Password()
	}
	if db == "" {
		db = base.Database
	}
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", escapeComponent(user), escapeComponent(password), host, port, escapeComponent(db))
}

func openWith(t testing.TB, url string, opts ...Option) (*DB, time.Duration) {
	t.Helper()
	isolatedDirs(t)
	start := time.Now()
	db, err := Open(context.Background(), append([]Option{env("DATABASE_URL", url), withDataDir("")}, opts...)...)
	took := time.Since(start)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, took
}

func TestOpenPrimary(t *testing.T) {
	url := testPostgresURL(t)
	db, _ := openWith(t, url)
	assert.Equal(t, Postgres, db.Dialect())
	assert.False(t, db.Fallback())
	assert.False(t, db.Ephemeral())
	assert.Empty(t, db.Reason())
	var app string
	require.NoError(t, db.QueryRow("SELECT current_setting('application_name')").Scan(&app))
	assert.Equal(t, "dbfallback.test", app, "application_name defaults to the binary's name")
	h := db.Health(context.Background())
	assert.Equal(t, "up", h.Status)
	assert.Equal(t, Postgres, h.Dialect)
	pw, _ := db.Target().Password()
	assert.NotContains(t, h.Target, pw)
}

func TestOpenPrimaryApplicationNameInSpace(t *testing.T) {
	url := testPostgresURL(t)
	isolatedDirs(t)
	db, err := Open(context.Background(), env("DATABASE_URL", url, "SPACE_ID", "me/notes"), withDataDir(""))
	require.NoError(t, err)
	defer db.Close()
	var app string
	require.NoError(t, db.QueryRow("SELECT current_setting('application_name')").Scan(&app))
	assert.Equal(t, "me/notes", app)
}

// TestOpenFailureKinds: every way the primary can fail leads to SQLite,
// within the bound each kind allows, with a redacted reason.
func TestOpenFailureKinds(t *testing.T) {
	testPostgresURL(t)
	const timeout = 700 * time.Millisecond
	dnsFail := func(ctx context.Context, host string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	tests := []struct {
		name      string
		url       string
		opts      []Option
		permanent bool
		within    time.Duration
		atLeast   time.Duration
		reason    string
	}{
		{name: "refused port", url: pgURLWith(t, "127.0.0.1", freePort(t), "", "", ""), within: time.Second, reason: "refused"},
		{name: "silent server", url: pgURLWith(t, "127.0.0.1", silentListener(t), "", "", ""), within: timeout + time.Second, atLeast: timeout, reason: "connect timeout"},
		{name: "wrong password", url: pgURLWith(t, "", 0, "", "Wrong-Hunter22", ""), permanent: true, within: time.Second, reason: "28P01"},
		{name: "unknown database", url: pgURLWith(t, "", 0, "", "", "no_such_db_dbfallback"), permanent: true, within: time.Second, reason: "3D000"},
		{name: "unknown role", url: pgURLWith(t, "", 0, "no_such_role_dbfallback", "", ""), permanent: true, within: time.Second, reason: "28P01"},
		{name: "dns failure", url: pgURLWith(t, "db.does-not-exist.invalid", 0, "", "", ""), opts: []Option{withLookupFunc(dnsFail)}, within: time.Second, reason: "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, took := openWith(t, tt.url, append([]Option{WithConnectTimeout(timeout)}, tt.opts...)...)
			assert.Equal(t, SQLite, db.Dialect())
			assert.True(t, db.Fallback())
			assert.Less(t, took, tt.within, "fell back within the bound")
			assert.GreaterOrEqual(t, took, tt.atLeast)
			require.Len(t, db.Attempts(), 2)
			aerr := db.Attempts()[0].Err
			require.Error(t, aerr)
			assert.Equal(t, tt.permanent, IsPermanent(aerr), "%v", aerr)
			assert.Contains(t, db.Reason(), tt.reason)
			for _, s := range []string{db.Reason(), aerr.Error()} {
				assert.NotContains(t, s, "Wrong-Hunter22")
				assert.NotContains(t, s, "ci#Pw@dbf/1")
			}
		})
	}
}

func TestOpenSpaceHint(t *testing.T) {
	port := silentListener(t)
	db, _ := openWith(t, fmt.Sprintf("postgres://u:Hunter22@127.0.0.1:%d/app?sslmode=disable", port),
		WithConnectTimeout(300*time.Millisecond), env("DATABASE_URL", fmt.Sprintf("postgres://u:Hunter22@127.0.0.1:%d/app?sslmode=disable", port), "SPACE_ID", "me/app"))
	assert.Contains(t, db.Reason(), "outbound connections are allowed only to ports 80, 443 and 8080")
	assert.NotContains(t, db.Reason(), "Hunter22")
}

// TestOpenPrismaURLReachesPrimary: Prisma's keys are translated, not sent
// to the server. Its schema becomes search_path, except in pooler mode
// (pgbouncer=true), where PgBouncer would refuse it at login: there it is
// removed with a note, and the server's default search path applies.
func TestOpenPrismaURLReachesPrimary(t *testing.T) {
	tests := []struct {
		name     string
		extra    string
		wantPath string
		wantNote string
	}{
		{name: "schema becomes search_path", extra: "schema=public&connection_limit=5&pool_timeout=10", wantPath: "public"},
		{name: "pgbouncer=true: schema removed", extra: "schema=public&pgbouncer=true&connection_limit=5&pool_timeout=10",
			wantPath: `"$user", public`, wantNote: "removed the schema setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := strings.Replace(testPostgresURL(t), "?", "?"+tt.extra+"&", 1)
			db, _ := openWith(t, url)
			assert.Equal(t, Postgres, db.Dialect(), "Prisma's keys are translated, not sent to the server: %s", db.Reason())
			var sp string
			require.NoError(t, db.QueryRow("SHOW search_path").Scan(&sp))
			assert.Equal(t, tt.wantPath, sp)
			if tt.wantNote != "" {
				assert.Contains(t, strings.Join(db.Target().Notes, "\n"), tt.wantNote)
			}
		})
	}
}

func TestOpenPrimaryOnlyFails(t *testing.T) {
	testPostgresURL(t)
	isolatedDirs(t)
	url := pgURLWith(t, "127.0.0.1", freePort(t), "", "", "")
	db, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""), WithStrategy(PrimaryOnly))
	assert.Nil(t, db)
	assert.ErrorIs(t, err, ErrNoDatabase)
	var oe *net.OpError
	assert.True(t, errors.As(err, &oe), "the cause is wrapped: %v", err)
}

func TestOpenPrimaryWait(t *testing.T) {
	testPostgresURL(t)
	t.Run("permanent failures are not retried", func(t *testing.T) {
		db, took := openWith(t, pgURLWith(t, "", 0, "", "Wrong-Hunter22", ""), WithPrimaryWait(10*time.Second))
		assert.Equal(t, 1, db.Attempts()[0].Tries)
		assert.Less(t, took, 2*time.Second)
		var pg *pgconn.PgError
		assert.True(t, errors.As(db.Attempts()[0].Err, &pg))
	})
	t.Run("transient failures are retried until the server answers", func(t *testing.T) {
		port := freePort(t)
		target := pgURLWith(t, "", 0, "", "", "")
		real, err := Validate(target)
		require.NoError(t, err)
		time.AfterFunc(1200*time.Millisecond, func() { startProxy(t, port, real.Hosts[0].String()) })
		db, took := openWith(t, pgURLWith(t, "127.0.0.1", port, "", "", ""), WithPrimaryWait(15*time.Second))
		assert.Equal(t, Postgres, db.Dialect(), "%s", db.Reason())
		assert.Greater(t, db.Attempts()[0].Tries, 1)
		assert.Greater(t, took, time.Second)
	})
	t.Run("retries stop after the wait", func(t *testing.T) {
		db, took := openWith(t, pgURLWith(t, "127.0.0.1", freePort(t), "", "", ""), WithPrimaryWait(time.Second))
		assert.Equal(t, SQLite, db.Dialect())
		assert.Greater(t, db.Attempts()[0].Tries, 1)
		assert.Less(t, took, 3*time.Second)
	})
}

func TestRecoveryProbe(t *testing.T) {
	target := testPostgresURL(t)
	real, err := Validate(target)
	require.NoError(t, err)
	port := freePort(t)
	var recovered atomic.Int32
	got := make(chan Target, 1)
	db, _ := openWith(t, pgURLWith(t, "127.0.0.1", port, "", "", ""),
		WithRecoveryProbe(100*time.Millisecond, func(p Target) {
			recovered.Add(1)
			select {
			case got <- p:
			default:
			}
		}))
	require.Equal(t, SQLite, db.Dialect())
	require.Eventually(t, func() bool {
		h := db.Health(context.Background())
		return h.PrimaryUp != nil && !*h.PrimaryUp
	}, 5*time.Second, 20*time.Millisecond, "the probe reports the primary down")
	startProxy(t, port, real.Hosts[0].String())
	select {
	case p := <-got:
		assert.Equal(t, uint16(port), p.Hosts[0].Port)
	case <-time.After(10 * time.Second):
		t.Fatal("the probe never reported the primary")
	}
	h := db.Health(context.Background())
	require.NotNil(t, h.PrimaryUp)
	assert.True(t, *h.PrimaryUp)
	assert.Equal(t, SQLite, db.Dialect(), "never switched silently")
	require.NoError(t, db.Close())
	n := recovered.Load()
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, n, recovered.Load(), "the probe stops on Close")
	assert.Equal(t, int32(1), n, "reported once per recovery")
}

// TestServerDiesAndReturns kills a throwaway server under a live pool:
// queries fail with errors (no panic), Health says down, and the pool
// serves again after a restart.
func TestServerDiesAndReturns(t *testing.T) {
	srv := startPGServer(t)
	db, _ := openWith(t, srv.url())
	require.Equal(t, Postgres, db.Dialect())
	_, err := db.Exec("CREATE TABLE t(x int)")
	require.NoError(t, err)
	srv.stop("immediate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	assert.Error(t, err)
	h := db.Health(context.Background())
	assert.Equal(t, "down", h.Status)
	assert.NotEmpty(t, h.Error)
	srv.start()
	require.Eventually(t, func() bool {
		_, err := db.Exec("INSERT INTO t VALUES (2)")
		return err == nil
	}, 15*time.Second, 100*time.Millisecond, "the pool serves again")
	assert.Equal(t, "up", db.Health(context.Background()).Status)
}

// startProxy forwards loopback connections on port to addr until the test ends.
func startProxy(tb testing.TB, port int, addr string) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		tb.Errorf("proxy: %v", err)
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
}
