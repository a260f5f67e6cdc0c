package dbfallback

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pgxpool.go serves programs that use pgxpool rather than database/sql,
// and sizes Open's database/sql pool from the URL's pgxpool keys.

// PgxPoolConfig returns a pgxpool configuration for a PostgreSQL target,
// for programs that use pgxpool directly:
//
//	r, err := dbfallback.Resolve(ctx)
//	…
//	cfg, err := r.Primary.PgxPoolConfig()
//	…
//	pool, err := pgxpool.NewWithConfig(ctx, cfg)
//
// It is built from what [Validate] made of the URL (normalized, checked,
// the password encoded as pgx reads it), with the URL's pgxpool settings
// ([Target.Pool]: pool_max_conns, pool_max_conn_lifetime, …) kept, and
// Open's hardening applied: each connection attempt is bounded by the
// connect timeout (the URL's connect_timeout, then PGCONNECT_TIMEOUT, then
// [WithConnectTimeout], default 5s; never 0, libpq's "wait forever"), and
// application_name defaults to SPACE_ID or the program's name. Of opts it
// reads [WithConnectTimeout], [WithLookupEnv] (for SPACE_ID and
// PGCONNECT_TIMEOUT), [WithPgxConfig] (run on cfg.ConnConfig) and
// [WithPgxAfterConnect] (as cfg.AfterConnect); the others do not apply.
// It does no I/O: nothing connects until the pool does.
//
// What a pgxpool does not get: the SQLite fallback (a pgxpool is
// PostgreSQL only; a zero or SQLite target is an error), Open's retries
// and init hooks, Tx, sessions, health and the recovery probe. As for
// Open's pool, pgx itself reads the process's PG* variables and
// ~/.pgpass for settings the URL leaves out (a password, a database
// name): [WithLookupEnv] does not reach it. The returned config holds the
// password in clear: never print it (%+v shows it) or log it.
func (t Target) PgxPoolConfig(opts ...Option) (*pgxpool.Config, error) {
	if t.Dialect != Postgres {
		what := "the zero Target (no primary configured)"
		if !t.IsZero() {
			what = fmt.Sprintf("%s, a %s target", t, t.Dialect)
		}
		return nil, fmt.Errorf("dbfallback: pgxpool config: %s: pgxpool needs PostgreSQL", what)
	}
	o := buildOptions(opts)
	spaceID, envTimeout := envDefaults(&o)
	cfg, err := pgxpool.ParseConfig(t.DSN())
	if err != nil {
		return nil, fmt.Errorf("dbfallback: pgxpool config: %s", scrubSecrets(err.Error(), secretsOf(t)...))
	}
	if err := t.eachPoolSetting(func(s poolSetting, n int32, d time.Duration) { s.pgxpool(cfg, n, d) }); err != nil {
		return nil, err
	}
	hardenPgx(&o, spaceID, cfg.ConnConfig, connectTimeout(&o, Resolution{ConnectTimeout: envTimeout}, t))
	for _, configure := range o.pgxConfigs {
		configure(cfg.ConnConfig)
	}
	cfg.AfterConnect = o.pgxAfterConnectChain(func(err error) error { return err })
	return cfg, nil
}

// poolSetting says what one pgxpool key of [Target.Pool] sets. Validate
// checked the value against its rule in paramRules: a count (at most
// MaxInt32) or a non-negative duration; n or d holds it.
type poolSetting struct {
	// pgxpool sets the key's field of a pgxpool configuration.
	pgxpool func(c *pgxpool.Config, n int32, d time.Duration)
	// sqlDB sets the same setting of Open's database/sql pool; nil when
	// database/sql has none (minimum and idle counts, jitter, health
	// checks, ping timeout).
	sqlDB func(p *PoolConfig, n int32, d time.Duration)
}

// poolSettings has an entry for every key paramRules keeps for the pool
// (TestPoolSettingsCoverRules checks it). PgxPoolConfig sets them itself
// rather than handing pgxpool.ParseConfig a DSN that carries them, so
// the DSN never holds a key a server rejects, counts are checked to fit
// pgxpool's int32, and each key's database/sql counterpart is written
// next to it.
var poolSettings = map[string]poolSetting{
	"pool_max_conns": {
		pgxpool: func(c *pgxpool.Config, n int32, _ time.Duration) { c.MaxConns = n },
		sqlDB:   func(p *PoolConfig, n int32, _ time.Duration) { p.MaxOpenConns = int(n) },
	},
	"pool_min_conns":      {pgxpool: func(c *pgxpool.Config, n int32, _ time.Duration) { c.MinConns = n }},
	"pool_min_idle_conns": {pgxpool: func(c *pgxpool.Config, n int32, _ time.Duration) { c.MinIdleConns = n }},
	"pool_max_conn_lifetime": {
		pgxpool: func(c *pgxpool.Config, _ int32, d time.Duration) { c.MaxConnLifetime = d },
		sqlDB:   func(p *PoolConfig, _ int32, d time.Duration) { p.ConnMaxLifetime = d },
	},
	"pool_max_conn_lifetime_jitter": {pgxpool: func(c *pgxpool.Config, _ int32, d time.Duration) { c.MaxConnLifetimeJitter = d }},
	"pool_max_conn_idle_time": {
		pgxpool: func(c *pgxpool.Config, _ int32, d time.Duration) { c.MaxConnIdleTime = d },
		sqlDB:   func(p *PoolConfig, _ int32, d time.Duration) { p.ConnMaxIdleTime = d },
	},
	"pool_health_check_period": {pgxpool: func(c *pgxpool.Config, _ int32, d time.Duration) { c.HealthCheckPeriod = d }},
	"pool_ping_timeout":        {pgxpool: func(c *pgxpool.Config, _ int32, d time.Duration) { c.PingTimeout = d }},
}

// eachPoolSetting calls fn for each of the target's pgxpool settings with
// its value parsed; a key without an entry in poolSettings (a Target
// built by hand) or a value Validate would reject is an error.
func (t Target) eachPoolSetting(fn func(s poolSetting, n int32, d time.Duration)) error {
	for _, k := range slices.Sorted(maps.Keys(t.Pool)) {
		s, ok := poolSettings[k]
		rule, _ := ruleFor(k, Postgres)
		if !ok || rule.action != pool {
			return fmt.Errorf("dbfallback: pgxpool config: Target.Pool key %q: not a pgxpool key", k)
		}
		var n int32
		var d time.Duration
		var err error
		switch v := t.Pool[k]; {
		case rule.duration:
			d, err = time.ParseDuration(v)
			if err == nil && d < 0 {
				err = errors.New("negative")
			}
		default:
			var n64 int64
			n64, err = strconv.ParseInt(v, 10, 32)
			if err == nil && (n64 < 0 || n64 < 1 && rule.positive) {
				err = errors.New("too small")
			}
			n = int32(n64)
		}
		if err != nil {
			// The value stays out: a hand-built Target may hold anything.
			what := "a whole number"
			if rule.duration {
				what = "a duration"
			}
			return fmt.Errorf("dbfallback: pgxpool config: Target.Pool key %s: its value is not %s Validate accepts", k, what)
		}
		fn(s, n, d)
	}
	return nil
}

// urlPool is the part of the database/sql pool the target's pgxpool
// settings size (see poolSettings); invalid settings were rejected by
// Validate, and a hand-built Target's are ignored here.
func urlPool(t Target) PoolConfig {
	var p PoolConfig
	_ = t.eachPoolSetting(func(s poolSetting, n int32, d time.Duration) {
		if s.sqlDB != nil {
			s.sqlDB(&p, n, d)
		}
	})
	return p
}
