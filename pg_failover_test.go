package dbfallback

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostsOf lists a config's hosts in the order pgx tries them, with "+tls"
// on the entries that try TLS.
func hostsOf(cfg *pgx.ConnConfig) []string {
	var out []string
	for _, fb := range append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...) {
		s := fmt.Sprintf("%s:%d", fb.Host, fb.Port)
		if fb.TLSConfig != nil {
			s += "+tls"
		}
		out = append(out, s)
	}
	return out
}

func TestHostPreferenceOrder(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "db-a.internal":
			return []string{"10.0.0.1"}, nil
		case "db-b.internal":
			return []string{"10.0.0.2", "10.0.0.3"}, nil
		case "srv.internal":
			return []string{"10.0.0.9:6000"}, nil
		}
		return []string{host}, nil
	}
	tests := []struct {
		name    string
		url     string
		reached string   // the address the last connection reached; "" for none yet
		hung    []string // addresses whose latest attempt timed out
		want    []string
	}{
		{name: "nothing reached yet: the URL's order", url: "postgres://u@127.0.0.1:1,127.0.0.1:2/db?sslmode=disable&target_session_attrs=read-write",
			want: []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{name: "the second host reached: it goes first", url: "postgres://u@127.0.0.1:1,127.0.0.1:2/db?sslmode=disable&target_session_attrs=read-write",
			reached: "127.0.0.1:2", want: []string{"127.0.0.1:2", "127.0.0.1:1"}},
		{name: "the first host reached: unchanged", url: "postgres://u@127.0.0.1:1,127.0.0.1:2/db?sslmode=disable&target_session_attrs=read-write",
			reached: "127.0.0.1:1", want: []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{name: "the third of three, the others keep their order", url: "postgres://u@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/db?sslmode=disable&target_session_attrs=primary",
			reached: "127.0.0.1:3", want: []string{"127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2"}},
		{name: "sslmode=prefer: both tries of the host move together, TLS first", url: "postgres://u@127.0.0.1:1,127.0.0.1:2/db?sslmode=prefer&target_session_attrs=read-write",
			reached: "127.0.0.1:2", want: []string{"127.0.0.1:2+tls", "127.0.0.1:2", "127.0.0.1:1+tls", "127.0.0.1:1"}},
		{name: "a host name, by what its lookup returned", url: "postgres://u@db-a.internal:5432,db-b.internal:5432/db?sslmode=disable&target_session_attrs=read-write",
			reached: "10.0.0.3:5432", want: []string{"db-b.internal:5432", "db-a.internal:5432"}},
		{name: "a lookup that returns host:port", url: "postgres://u@db-a.internal:5432,srv.internal:5432/db?sslmode=disable&target_session_attrs=read-write",
			reached: "10.0.0.9:6000", want: []string{"srv.internal:5432", "db-a.internal:5432"}},
		{name: "a socket directory", url: "postgres://u@/db?host=/run/a,/run/b&port=5432,5433&target_session_attrs=read-write",
			reached: "/run/b/.s.PGSQL.5433", want: []string{"/run/b:5433", "/run/a:5432"}},
		{name: "an address no host leads to: unchanged", url: "postgres://u@127.0.0.1:1,127.0.0.1:2/db?sslmode=disable&target_session_attrs=read-write",
			reached: "127.0.0.1:9", want: []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{name: "a hung host goes last", url: "postgres://u@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/db?sslmode=disable&target_session_attrs=read-write",
			hung: []string{"127.0.0.1:1"}, want: []string{"127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"}},
		{name: "hung wins over reached", url: "postgres://u@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/db?sslmode=disable&target_session_attrs=read-write",
			reached: "127.0.0.1:2", hung: []string{"127.0.0.1:2"}, want: []string{"127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:2"}},
		{name: "reached first, hung last", url: "postgres://u@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/db?sslmode=disable&target_session_attrs=read-write",
			reached: "127.0.0.1:3", hung: []string{"127.0.0.1:1"}, want: []string{"127.0.0.1:3", "127.0.0.1:2", "127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(tt.url)
			require.NoError(t, err)
			cfg.LookupFunc = lookup
			hp := newHostPreference(cfg)
			require.NotNil(t, hp)
			for _, fb := range append([]*pgconn.FallbackConfig{{Host: cfg.Host}}, cfg.Fallbacks...) {
				_, err := cfg.LookupFunc(context.Background(), fb.Host) // as pgx does before it dials
				require.NoError(t, err)
			}
			hp.last = tt.reached
			for _, a := range tt.hung {
				hp.hung[a] = true
			}
			before := hostsOf(cfg)
			shallow := *cfg // what stdlib hands BeforeConnect
			require.NoError(t, hp.order(context.Background(), &shallow))
			assert.Equal(t, tt.want, hostsOf(&shallow))
			assert.Equal(t, before, hostsOf(cfg), "the shared config is not modified")
		})
	}
}

func TestHostPreferenceAppliesWherePgxChecksRoles(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want bool
	}{
		{name: "read-write", url: "postgres://u@h1,h2/db?target_session_attrs=read-write", want: true},
		{name: "prefer-standby", url: "postgres://u@h1,h2/db?target_session_attrs=prefer-standby", want: true},
		{name: "any keeps the URL's order", url: "postgres://u@h1,h2/db?target_session_attrs=any"},
		{name: "unset keeps the URL's order", url: "postgres://u@h1,h2/db"},
		{name: "one host", url: "postgres://u@h1/db?sslmode=disable&target_session_attrs=read-write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(tt.url)
			require.NoError(t, err)
			assert.Equal(t, tt.want, newHostPreference(cfg) != nil)
		})
	}
}

func TestShareConnectTimeout(t *testing.T) {
	tests := []struct {
		name string
		url  string
		in   time.Duration
		want time.Duration
	}{
		{name: "one host keeps it", url: "postgres://u@h1/db?sslmode=disable", in: 5 * time.Second, want: 5 * time.Second},
		{name: "two hosts halve it", url: "postgres://u@h1,h2/db?sslmode=disable", in: 5 * time.Second, want: 2500 * time.Millisecond},
		{name: "TLS and plain tries of one host count once", url: "postgres://u@h1,h2/db?sslmode=prefer", in: 4 * time.Second, want: 2 * time.Second},
		{name: "one host name on two ports is two hosts", url: "postgres://u@h1:5432,h1:5433/db?sslmode=disable", in: 3 * time.Second, want: 1500 * time.Millisecond},
		{name: "zero stays zero", url: "postgres://u@h1,h2/db?sslmode=disable", in: 0, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(tt.url)
			require.NoError(t, err)
			cfg.ConnectTimeout = tt.in
			shareConnectTimeout(cfg)
			assert.Equal(t, tt.want, cfg.ConnectTimeout)
		})
	}
}

// TestOpenMultiHostSilentFirstHost: a first host that accepts and never
// answers (a hung machine, a partition) must not use up the primary's
// connect timeout: the live second host opens. Before the timeout was
// shared between hosts, Open fell back to SQLite here. Then new
// connections: see below.
func TestOpenMultiHostSilentFirstHost(t *testing.T) {
	base, err := Validate(testPostgresURL(t))
	require.NoError(t, err)
	live := base.Hosts[0]
	pw, _ := base.Password()
	for _, attrs := range []string{"read-write", "any"} {
		t.Run(attrs, func(t *testing.T) {
			url := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d,%s:%d/%s?sslmode=disable&connect_timeout=2&target_session_attrs=%s",
				escapeComponent(base.User), escapeComponent(pw), silentListener(t), live.Name, live.Port, escapeComponent(base.Database), attrs)
			db, took := openWith(t, url)
			assert.Equal(t, Postgres, db.Dialect(), db.Reason())
			assert.Less(t, took, 2*time.Second+500*time.Millisecond, "within the connect timeout")
			assert.GreaterOrEqual(t, took, 900*time.Millisecond, "the silent host had its share (1s of 2s)")
			h := db.Health(context.Background())
			assert.Equal(t, "up", h.Status)
			assert.Equal(t, fmt.Sprintf("%s:%d", live.Name, live.Port), h.Server)

			// Every new connection after Open: with read-write (pgx checks
			// each server's role) the host the last connection reached is
			// tried first and the silent one last; with any the URL's order
			// is kept, as libpq keeps it, so each new connection waits out
			// the silent host's share first (a lower bound: robust to load).
			db.SetMaxIdleConns(0)
			for i := range 2 {
				start := time.Now()
				require.NoError(t, db.QueryRow("SELECT 1").Scan(new(int)))
				took := time.Since(start)
				if attrs == "read-write" {
					assert.Lessf(t, took, 900*time.Millisecond, "new connection %d goes to the live host first", i)
				} else {
					assert.GreaterOrEqualf(t, took, 900*time.Millisecond, "new connection %d waits on the silent host first", i)
				}
			}
		})
	}
}

// TestIsPermanentProtocolViolation: SQLSTATE 08P01 from PostgreSQL is a
// protocol violation (permanent); from PgBouncer it is how a server that
// is down or busy is reported (transient), save its configuration errors.
func TestIsPermanentProtocolViolation(t *testing.T) {
	pgServerErr := func(msg string) *pgconn.PgError {
		return &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: msg,
			File: "postgres.c", Line: 1, Routine: "SocketBackend"}
	}
	bouncerErr := func(msg string) *pgconn.PgError {
		return &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: msg}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "PostgreSQL: invalid frontend message type", err: pgServerErr("invalid frontend message type 63"), want: true},
		{name: "PgBouncer: client_login_timeout (server down)", err: bouncerErr("client_login_timeout (server down)")},
		{name: "PgBouncer: server login has been failing", err: bouncerErr("server login has been failing, try again later (server_login_retry)")},
		{name: "PgBouncer: max_client_conn", err: bouncerErr("no more connections allowed (max_client_conn)")},
		{name: "PgBouncer: query_wait_timeout", err: bouncerErr("query_wait_timeout")},
		{name: "PgBouncer: cannot connect to server", err: bouncerErr("pgbouncer cannot connect to server")},
		{name: "PgBouncer: no such database", err: bouncerErr("no such database: shop"), want: true},
		{name: "PgBouncer: unsupported startup parameter", err: bouncerErr("unsupported startup parameter: search_path"), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, IsPermanent(fmt.Errorf("connect: %w", tt.err)))
		})
	}
}

// TestPostgresProtocolViolationIsPermanent sends PostgreSQL a message it
// does not know and checks the FATAL 08P01 it answers with, as a real
// server sends it, is permanent.
func TestPostgresProtocolViolationIsPermanent(t *testing.T) {
	url := testPostgresURL(t)
	tg, err := Validate(url)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, tg.DSN())
	require.NoError(t, err)
	defer pc.Close(ctx)
	_, err = pc.Conn().Write([]byte{'?', 0, 0, 0, 4})
	require.NoError(t, err)
	msg, err := pc.Frontend().Receive()
	require.NoError(t, err)
	er, ok := msg.(*pgproto3.ErrorResponse)
	require.Truef(t, ok, "want an ErrorResponse, got %T", msg)
	pg := pgconn.ErrorResponseToPgError(er)
	assert.Equal(t, "08P01", pg.Code)
	assert.False(t, fromPooler(pg))
	assert.True(t, IsPermanent(pg), "%v", pg)
	assert.True(t, strings.Contains(pg.Message, "invalid frontend message type"), pg.Message)
}

// TestHostPreferenceMarksHungHosts dials through the preference's DialFunc:
// an attempt that uses its whole share and ends by its deadline marks the
// host hung; one cut short by a caller's deadline, or one that succeeds,
// does not. (TestOpenMultiHostSilentFirstHost shows the mark at work.)
func TestHostPreferenceMarksHungHosts(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://u@127.0.0.1:1,127.0.0.1:2/db?sslmode=disable&target_session_attrs=read-write")
	require.NoError(t, err)
	cfg.ConnectTimeout = 500 * time.Millisecond
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done() // a host that never answers
		return nil, ctx.Err()
	}
	hp := newHostPreference(cfg)
	require.NotNil(t, hp)
	isHung := func(addr string) bool {
		hp.mu.Lock()
		defer hp.mu.Unlock()
		return hp.hung[addr]
	}

	// Cut short by the caller: not the host's fault.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = cfg.DialFunc(ctx, "tcp", "127.0.0.1:1")
	cancel()
	require.Error(t, err)
	assert.False(t, isHung("127.0.0.1:1"), "a caller's shorter deadline does not mark the host")

	// Its whole share, ended by the deadline: hung.
	ctx, cancel = context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	_, err = cfg.DialFunc(ctx, "tcp", "127.0.0.1:1")
	cancel()
	require.Error(t, err)
	require.Eventually(t, func() bool { return isHung("127.0.0.1:1") }, time.Second, time.Millisecond)

	// An attempt that ends by cancellation before its deadline (pgx
	// cancels the context of one that succeeded).
	ctx, cancel = context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, _ = cfg.DialFunc(ctx, "tcp", "127.0.0.1:2")
	time.Sleep(cfg.ConnectTimeout) // past the deadline it no longer has
	assert.False(t, isHung("127.0.0.1:2"))
}

// TestHostPreferenceRefusedHostNotHung: pgx keeps each host's context
// until it has tried every host, so a host that refused at once still has
// a live context while a later host hangs, and that context then ends by
// its deadline. The refusing host is not marked hung; the hanging one is.
func TestHostPreferenceRefusedHostNotHung(t *testing.T) {
	refused, silent := freePort(t), silentListener(t)
	url := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d,127.0.0.1:%d/db?sslmode=disable&target_session_attrs=read-write&connect_timeout=1", refused, silent)
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	shareConnectTimeout(cfg) // 500ms each
	hp := newHostPreference(cfg)
	require.NotNil(t, hp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pgx.ConnectConfig(ctx, cfg)
	require.Error(t, err)
	isHung := func(port int) bool {
		hp.mu.Lock()
		defer hp.mu.Unlock()
		return hp.hung[fmt.Sprintf("127.0.0.1:%d", port)]
	}
	require.Eventually(t, func() bool { return isHung(silent) }, time.Second, time.Millisecond, "the silent host hung")
	time.Sleep(50 * time.Millisecond)
	assert.False(t, isHung(refused), "the refusing host did not")
}
