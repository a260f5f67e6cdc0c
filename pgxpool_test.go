package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestValidatePoolKeys: pgxpool's keys are checked and kept in
// Target.Pool, out of Params, the DSN and every printed form (a server
// would reject them), in URLs and keyword/value strings alike.
func TestValidatePoolKeys(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		pool    map[string]string
		wantErr string
	}{
		{name: "every key", in: "postgres://h/db?pool_max_conns=20&pool_min_conns=2&pool_min_idle_conns=1&pool_max_conn_lifetime=1h30m&pool_max_conn_lifetime_jitter=5m&pool_max_conn_idle_time=10m&pool_health_check_period=30s&pool_ping_timeout=2s",
			pool: map[string]string{"pool_max_conns": "20", "pool_min_conns": "2", "pool_min_idle_conns": "1", "pool_max_conn_lifetime": "1h30m",
				"pool_max_conn_lifetime_jitter": "5m", "pool_max_conn_idle_time": "10m", "pool_health_check_period": "30s", "pool_ping_timeout": "2s"}},
		{name: "keyword/value", in: "host=h dbname=db pool_max_conns=7", pool: map[string]string{"pool_max_conns": "7"}},
		{name: "with a password and sslmode", in: "postgres://u:pw@h/db?sslmode=require&pool_max_conns=3", pool: map[string]string{"pool_max_conns": "3"}},
		{name: "leading zeros", in: "postgres://h/db?pool_max_conns=007", pool: map[string]string{"pool_max_conns": "7"}},
		{name: "zero connections", in: "postgres://h/db?pool_max_conns=0", wantErr: "pool_max_conns is below 1"},
		{name: "not a number", in: "postgres://h/db?pool_max_conns=many", wantErr: "pool_max_conns is not a non-negative whole number"},
		{name: "negative minimum", in: "postgres://h/db?pool_min_conns=-1", wantErr: "pool_min_conns"},
		{name: "not a duration", in: "postgres://h/db?pool_max_conn_lifetime=1hour", wantErr: "pool_max_conn_lifetime is not a duration"},
		{name: "a negative duration", in: "postgres://h/db?pool_max_conn_idle_time=-5m", wantErr: "pool_max_conn_idle_time is not a duration"},
		{name: "beyond pgxpool's 32 bits", in: "postgres://h/db?pool_max_conns=2147483648", wantErr: "pool_max_conns is too large"},
		{name: "the largest count", in: "postgres://h/db?pool_min_conns=2147483647", pool: map[string]string{"pool_min_conns": "2147483647"}},
		{name: "keyword/value, a bad duration", in: "host=h dbname=db pool_health_check_period=soon", wantErr: "pool_health_check_period is not a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Validate(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.pool, got.Pool)
			for k := range tt.pool {
				assert.NotContains(t, got.Params, k)
				assert.NotContains(t, got.DSN(), k, "a server would reject it")
				assert.NotContains(t, got.Redacted(), k)
			}
			assert.Empty(t, got.Notes, "kept, not normalized")
			again, err := Validate(got.dsnWithPool())
			require.NoError(t, err)
			assert.Equal(t, got.Pool, again.Pool)
		})
	}
}

// TestPgxPoolConfig: the config keeps the URL's pool settings (issue 12:
// pgxpool.ParseConfig(t.DSN()) gave MaxConns=4 for pool_max_conns=20),
// bounds connection attempts as Open does, names the application, and
// runs the pgx hooks; it reads SPACE_ID and PGCONNECT_TIMEOUT through
// WithLookupEnv only.
func TestPgxPoolConfig(t *testing.T) {
	tracer := &tracer{}
	tests := []struct {
		name    string
		url     string
		opts    []Option
		check   func(t *testing.T, cfg *pgxpool.Config)
		wantErr string
	}{
		{name: "pool settings kept", url: "postgres://u:pw@db.example.com/app?pool_max_conns=20&pool_min_conns=2&pool_max_conn_lifetime=90m&pool_health_check_period=15s",
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, int32(20), cfg.MaxConns)
				assert.Equal(t, int32(2), cfg.MinConns)
				assert.Equal(t, 90*time.Minute, cfg.MaxConnLifetime)
				assert.Equal(t, 15*time.Second, cfg.HealthCheckPeriod)
				assert.Equal(t, "pw", cfg.ConnConfig.Password)
				assert.NotContains(t, cfg.ConnConfig.RuntimeParams, "pool_max_conns", "not sent to the server")
			}},
		{name: "hardening: default connect timeout and application name", url: "postgres://db.example.com/app",
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, 5*time.Second, cfg.ConnConfig.ConnectTimeout)
				assert.NotEmpty(t, cfg.ConnConfig.RuntimeParams["application_name"])
			}},
		{name: "connect_timeout=0 does not mean forever", url: "postgres://db.example.com/app?connect_timeout=0",
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, 5*time.Second, cfg.ConnConfig.ConnectTimeout)
			}},
		{name: "the URL's timeout and name win", url: "postgres://db.example.com/app?connect_timeout=2&application_name=billing",
			opts: []Option{env("SPACE_ID", "me/space", "PGCONNECT_TIMEOUT", "9")},
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, 2*time.Second, cfg.ConnConfig.ConnectTimeout)
				assert.Equal(t, "billing", cfg.ConnConfig.RuntimeParams["application_name"])
			}},
		{name: "SPACE_ID and PGCONNECT_TIMEOUT through WithLookupEnv", url: "postgres://db.example.com/app",
			opts: []Option{env("SPACE_ID", "me/space", "PGCONNECT_TIMEOUT", "9")},
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, 9*time.Second, cfg.ConnConfig.ConnectTimeout)
				assert.Equal(t, "me/space", cfg.ConnConfig.RuntimeParams["application_name"])
			}},
		{name: "WithConnectTimeout", url: "postgres://db.example.com/app", opts: []Option{env(), WithConnectTimeout(1500 * time.Millisecond)},
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, 1500*time.Millisecond, cfg.ConnConfig.ConnectTimeout)
			}},
		{name: "pgx hooks", url: "postgres://db.example.com/app",
			opts: []Option{WithPgxConfig(func(cfg *pgx.ConnConfig) { cfg.Tracer = tracer }),
				WithPgxAfterConnect(func(context.Context, *pgx.Conn) error { return errors.New("ran") })},
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Same(t, tracer, cfg.ConnConfig.Tracer)
				require.NotNil(t, cfg.AfterConnect)
				assert.EqualError(t, cfg.AfterConnect(context.Background(), nil), "ran")
			}},
		{name: "the other keys", url: "postgres://db.example.com/app?pool_ping_timeout=750ms&pool_max_conn_lifetime_jitter=1m&pool_min_idle_conns=1&pool_max_conn_idle_time=3m",
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.Equal(t, 750*time.Millisecond, cfg.PingTimeout)
				assert.Equal(t, time.Minute, cfg.MaxConnLifetimeJitter)
				assert.Equal(t, int32(1), cfg.MinIdleConns)
				assert.Equal(t, 3*time.Minute, cfg.MaxConnIdleTime)
				assert.NotContains(t, cfg.ConnConfig.RuntimeParams, "pool_ping_timeout", "a server rejects it")
			}},
		{name: "pgxpool's defaults where the URL says nothing", url: "postgres://db.example.com/app",
			check: func(t *testing.T, cfg *pgxpool.Config) {
				assert.GreaterOrEqual(t, cfg.MaxConns, int32(4))
				assert.Equal(t, time.Hour, cfg.MaxConnLifetime)
			}},
		{name: "a SQLite target", url: "sqlite:///app.db", wantErr: "pgxpool needs PostgreSQL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, err := Validate(tt.url)
			require.NoError(t, err)
			cfg, err := target.PgxPoolConfig(append([]Option{env()}, tt.opts...)...)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}
	t.Run("the zero target", func(t *testing.T) {
		_, err := Target{}.PgxPoolConfig()
		assert.ErrorContains(t, err, "no primary configured")
	})
	t.Run("a hand-built Pool", func(t *testing.T) {
		target, err := Validate("postgres://db.example.com/app")
		require.NoError(t, err)
		for k, v := range map[string]string{"pool_max_conns": "Qk7Secret", "pool_max_conn_lifetime": "Qk7Secret", "password": "Qk7Secret", "pool_min_conns": "-1"} {
			target.Pool = map[string]string{k: v}
			_, err := target.PgxPoolConfig(env())
			require.Errorf(t, err, "%s=%s", k, v)
			assert.NotContains(t, err.Error(), "Qk7Secret")
			assert.Equal(t, PoolConfig{}, urlPool(target), "Open ignores what Validate would reject")
		}
	})
}

// TestPoolSettingsCoverRules: every key the parameter rules keep for the
// pool has a setter, and every setter a rule, so a key added to the
// table cannot be kept by Validate and then silently ignored.
func TestPoolSettingsCoverRules(t *testing.T) {
	var kept []string
	for k, r := range paramRules {
		if r.action == pool {
			kept = append(kept, k)
			assert.Truef(t, r.count != r.duration, "%s is a count or a duration", k)
		}
	}
	assert.ElementsMatch(t, kept, slices.Collect(maps.Keys(poolSettings)))
	for k, s := range poolSettings {
		assert.NotNilf(t, s.pgxpool, "%s sets nothing", k)
	}
}

// TestPgxPoolAgainstPostgreSQL: a pgxpool from the config connects to the
// real server with the URL's pool size, and the database/sql pool Open
// makes on the same URL is sized from it too (the URL wins over WithPool,
// as its connect_timeout wins over WithConnectTimeout).
func TestPgxPoolAgainstPostgreSQL(t *testing.T) {
	url := testPostgresURL(t) + "&pool_max_conns=3&pool_max_conn_idle_time=42s&pool_ping_timeout=2s&pool_min_conns=1"
	r, err := Resolve(context.Background(), env("DATABASE_URL", url))
	require.NoError(t, err)
	cfg, err := r.Primary.PgxPoolConfig(env())
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	defer pool.Close()
	var app string
	require.NoError(t, pool.QueryRow(context.Background(), "SHOW application_name").Scan(&app), "the server saw no pool_* key")
	assert.NotEmpty(t, app)
	assert.Equal(t, int32(3), pool.Stat().MaxConns())

	db, err := Open(context.Background(), env("DATABASE_URL", url), WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: 7}))
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, 3, db.Stats().MaxOpenConnections, "pool_max_conns sizes the database/sql pool")
	assert.NotContains(t, fmt.Sprint(db.Target()), "pool_max_conns")
	var one int
	require.NoError(t, db.QueryRow("SELECT 1").Scan(&one), "the server never sees pool_max_conns")
	assert.Equal(t, "the URL's pool_max_conns=3 overrides WithPool's MaxOpenConns 7", db.Reason(),
		"the override is told, and nothing else of the URL's pool settings")
}

// dsnWithPool is the target's DSN with its pgxpool settings appended, as
// a user would write them: what a round trip through Validate must keep.
func (t Target) dsnWithPool() string {
	var b strings.Builder
	b.WriteString(t.DSN())
	sep := "?"
	if strings.Contains(b.String(), "?") {
		sep = "&"
	}
	for _, k := range slices.Sorted(maps.Keys(t.Pool)) {
		b.WriteString(sep + url.QueryEscape(k) + "=" + url.QueryEscape(t.Pool[k]))
		sep = "&"
	}
	return b.String()
}
