package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"

	"github.com/jackc/pgx/v5"
)

// hooks.go lets a program instrument and extend the pools Open makes:
// tracing and metrics wrappers of database/sql (otelsql and the like),
// pgx's tracer and dialer, and per-connection setup such as custom types.

// WithOpenDB replaces sql.OpenDB for the pools Open makes, so that an
// instrumentation wrapper sees every query: open must open the pool on the
// connector it is given, typically
//
//	dbfallback.WithOpenDB(func(c driver.Connector) *sql.DB {
//		return otelsql.OpenDB(c) // github.com/XSAM/otelsql
//	})
//
// or sql.OpenDB(wrap(c)) for a wrapper of connectors. It applies to both
// dialects: the connector's connections are pgx's (PostgreSQL) or the
// SQLite write gate's, and its Driver is theirs. It runs once per
// candidate Open tries and per ping of the recovery probe; the library's
// own short-lived SQLite connections (file checks, quick_check) are not
// wrapped. [PoolConfig] sizes are set on the returned pool afterwards.
//
// Closing the embedded *sql.DB (db.DB.Close, as GORM and golang-migrate
// do) releases everything [DB.Close] does when the wrapper passes
// io.Closer on to the connector it wraps, as database/sql requires and
// otelsql does; DB.Close releases everything whatever the wrapper.
//
// A function that returns nil, or a pool that does not connect through
// the connector it was given (and so would bypass the SQLite write gate),
// is a bug: Open fails with an error naming WithOpenDB, under every
// strategy. The last WithOpenDB wins; nil restores sql.OpenDB.
func WithOpenDB(open func(c driver.Connector) *sql.DB) Option {
	return func(o *options) { o.openDB = open }
}

// WithPgxConfig calls configure with the pgx configuration of every
// PostgreSQL pool Open makes (the primary's, and the recovery probe's),
// after the URL is parsed and the library's defaults are set (connect
// timeout, application_name) and before anything connects: set a Tracer
// (a pgx.QueryTracer such as otelpgx's), a DialFunc, TLS settings,
// OnNotice or DefaultQueryExecMode. What configure sets wins. Calls run in
// order; configure must not keep cfg, and is called from Open's goroutine
// or the probe's.
//
// Hazard: a *pgx.ConnConfig holds the password in clear (its Password
// field, and those of its fallbacks): fmt's %v, %+v and %#v print it, as
// does a logger or JSON encoder given the struct. Never print or log cfg.
func WithPgxConfig(configure func(cfg *pgx.ConnConfig)) Option {
	return func(o *options) {
		if configure != nil {
			o.pgxConfigs = append(o.pgxConfigs, configure)
		}
	}
}

// WithPgxAfterConnect runs fn on every new PostgreSQL connection, before
// database/sql uses it (pgx stdlib's OptionAfterConnect): register custom
// types (conn.TypeMap().RegisterType, conn.LoadType), set session state.
// An error fails that connection. During Open, an error that
// [IsUnavailable] does not recognise is a bug and fails Open under every
// strategy, as a failed [WithInit] hook does: falling back would move the
// service's data to another database. Hazard: the first connection, and
// so fn, runs before the WithInit hooks: a type they create does not
// exist yet on a new database. Calls run in order, from whichever
// goroutine opens a connection.
func WithPgxAfterConnect(fn func(ctx context.Context, conn *pgx.Conn) error) Option {
	return func(o *options) {
		if fn != nil {
			o.pgxAfterConnect = append(o.pgxAfterConnect, fn)
		}
	}
}

// applyPgxHooks runs the WithPgxConfig functions on cfg and returns the
// WithPgxAfterConnect ones as one function (nil when there are none), whose
// error fails Open unless it says the database is unavailable.
func (o *options) applyPgxHooks(cfg *pgx.ConnConfig) func(context.Context, *pgx.Conn) error {
	for _, configure := range o.pgxConfigs {
		configure(cfg)
	}
	return o.pgxAfterConnectChain(func(err error) error {
		if IsUnavailable(err) {
			return err
		}
		return permanent(&hookError{hook: "WithPgxAfterConnect", err: err})
	})
}

// pgxAfterConnectChain runs the WithPgxAfterConnect functions in order
// and returns the first error through wrap; nil when there are none.
func (o *options) pgxAfterConnectChain(wrap func(error) error) func(context.Context, *pgx.Conn) error {
	fns := o.pgxAfterConnect
	if len(fns) == 0 {
		return nil
	}
	return func(ctx context.Context, conn *pgx.Conn) error {
		for _, fn := range fns {
			if err := fn(ctx, conn); err != nil {
				return wrap(err)
			}
		}
		return nil
	}
}

// hookError is a WithOpenDB or WithPgxAfterConnect function that failed
// for a reason other than the database's availability: a bug, which Open
// returns rather than fall back. Unwrap gives the function's error.
type hookError struct {
	hook string
	err  error
}

func (e *hookError) Error() string { return "dbfallback: " + e.hook + ": " + e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }
