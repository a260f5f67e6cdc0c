package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PoolConfig tunes the database/sql pool of the chosen database. A zero
// field keeps the per-dialect default. On PostgreSQL the URL's pgxpool
// keys win over it: pool_max_conns sets MaxOpenConns,
// pool_max_conn_lifetime ConnMaxLifetime and pool_max_conn_idle_time
// ConnMaxIdleTime (see [Target.Pool]), and [DB.Reason] says when one
// replaces a different value given to [WithPool]; the other pool_* keys
// have no database/sql equivalent and only reach a pgxpool.
type PoolConfig struct {
	// MaxOpenConns caps open connections. Defaults: PostgreSQL 10; SQLite
	// 8 (readers run in parallel, writers queue on one in-process lock).
	MaxOpenConns int
	// MaxIdleConns caps idle connections kept for reuse. Defaults:
	// PostgreSQL 5; SQLite the same as MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime recycles connections after this long. Defaults:
	// PostgreSQL 30m (so a failover or DNS change is picked up); SQLite
	// never.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes connections idle this long. Default 5m (an
	// in-memory SQLite database is held open by a connection outside the
	// pool, so idle closes never drop it).
	ConnMaxIdleTime time.Duration
}

func (p PoolConfig) withDefaults(d PoolConfig) PoolConfig {
	if p.MaxOpenConns == 0 {
		p.MaxOpenConns = d.MaxOpenConns
	}
	if p.MaxIdleConns == 0 {
		p.MaxIdleConns = d.MaxIdleConns
	}
	if p.ConnMaxLifetime == 0 {
		p.ConnMaxLifetime = d.ConnMaxLifetime
	}
	if p.ConnMaxIdleTime == 0 {
		p.ConnMaxIdleTime = d.ConnMaxIdleTime
	}
	return p
}

// overrides says which fields of opt (WithPool's) the URL's pool
// settings p replace with another value, for the operator; "" when none.
func (p PoolConfig) overrides(opt PoolConfig) string {
	var out []string
	for _, f := range []struct {
		key, field string
		url, opt   any
		set        bool
	}{
		{"pool_max_conns", "MaxOpenConns", p.MaxOpenConns, opt.MaxOpenConns, p.MaxOpenConns != 0 && opt.MaxOpenConns != 0},
		{"pool_max_conn_lifetime", "ConnMaxLifetime", p.ConnMaxLifetime, opt.ConnMaxLifetime, p.ConnMaxLifetime != 0 && opt.ConnMaxLifetime != 0},
		{"pool_max_conn_idle_time", "ConnMaxIdleTime", p.ConnMaxIdleTime, opt.ConnMaxIdleTime, p.ConnMaxIdleTime != 0 && opt.ConnMaxIdleTime != 0},
	} {
		if f.set && f.url != f.opt {
			out = append(out, fmt.Sprintf("the URL's %s=%v overrides WithPool's %s %v", f.key, f.url, f.field, f.opt))
		}
	}
	return strings.Join(out, "; ")
}

func (p PoolConfig) apply(db *sql.DB) {
	db.SetMaxOpenConns(p.MaxOpenConns)
	db.SetMaxIdleConns(p.MaxIdleConns)
	db.SetConnMaxLifetime(p.ConnMaxLifetime)
	db.SetConnMaxIdleTime(p.ConnMaxIdleTime)
}

var postgresPool = PoolConfig{MaxOpenConns: 10, MaxIdleConns: 5, ConnMaxLifetime: 30 * time.Minute, ConnMaxIdleTime: 5 * time.Minute}

// engine is an opened candidate: the pool plus what the DB must release.
type engine struct {
	db        *sql.DB
	release   *releaser  // run when db closes (see pool_close.go)
	note      string     // something the operator should know (a file moved aside)
	integrity *integrity // a SQLite file's damage, as its statements and check find it; nil otherwise
	gate      *writeGate // a SQLite pool's write gate; nil for PostgreSQL
}

// connectTimeout returns the bound for one attempt on t: the URL's
// connect_timeout, then PGCONNECT_TIMEOUT, then WithConnectTimeout. Zero
// (libpq's "wait forever") is not honoured: startup must not hang.
func connectTimeout(o *options, r Resolution, t Target) time.Duration {
	if d, ok := t.ConnectTimeout(); ok && d > 0 {
		return d
	}
	if r.ConnectTimeout > 0 {
		return r.ConnectTimeout
	}
	return o.connectTimeout
}

// openPostgres opens a pgx pool for t and pings it within timeout. On any
// failure the pool is closed before returning, so no dial lingers.
func openPostgres(ctx context.Context, o *options, r Resolution, t Target, timeout time.Duration) (*engine, error) {
	cfg, err := pgx.ParseConfig(t.DSN())
	if err != nil {
		return nil, permanent(err)
	}
	hardenPgx(o, r.SpaceID, cfg, timeout)
	after := o.applyPgxHooks(cfg)
	rel := &releaser{}
	db, pc, err := openPool(o, pgConnector(o, cfg, after), rel)
	if err != nil {
		return nil, err
	}
	url := urlPool(t)
	e := &engine{db: db, release: rel, note: url.overrides(o.pool)}
	url.withDefaults(o.pool.withDefaults(postgresPool)).apply(db)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = pingServer(pctx, db)
	if err = pc.checkOpenedOn(ctx, err); err != nil {
		e.close()
		if errors.As(err, new(*hookError)) {
			return nil, err
		}
		if pctx.Err() != nil && ctx.Err() == nil {
			err = &timeoutError{after: timeout, err: err}
		}
		return nil, err
	}
	return e, nil
}

// hardenPgx applies the library's settings to a parsed pgx configuration:
// every attempt bounded by timeout (connect_timeout=0, libpq's "wait
// forever", included), the DNS seam of tests, and an application_name
// when the URL names none.
func hardenPgx(o *options, spaceID string, cfg *pgx.ConnConfig, timeout time.Duration) {
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > timeout {
		cfg.ConnectTimeout = timeout
	}
	if o.lookupFunc != nil {
		cfg.LookupFunc = o.lookupFunc
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = applicationName(spaceID)
	}
}

// applicationName is what the server shows in pg_stat_activity when the
// URL names none: the Hugging Face Space, or the program's name.
func applicationName(spaceID string) string {
	if spaceID != "" {
		return spaceID
	}
	if len(os.Args) > 0 && os.Args[0] != "" {
		return filepath.Base(os.Args[0])
	}
	return "dbfallback"
}

// timeoutError marks an attempt that hit its connect timeout.
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no answer within the connect timeout (%s): %v", e.after, e.err)
}
func (e *timeoutError) Unwrap() error { return e.err }
func (e *timeoutError) Timeout() bool { return true }
