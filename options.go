package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Option configures [Resolve] and [Open].
type Option func(*options)

// options holds every setting; defaultOptions documents the defaults.
type options struct {
	url        string
	hasURL     bool
	lookupEnv  func(string) (string, bool)
	envVars    []string
	sqlitePath string
	sqliteName string
	persistent bool

	connectTimeout time.Duration
	primaryWait    time.Duration
	strategy       Strategy
	logger         *slog.Logger
	inits          []func(context.Context, *DB) error
	probeInterval  time.Duration
	probeFunc      func(Target)
	pool           PoolConfig

	snapshotDir      string        // WithSnapshotDir (snapshot_config.go)
	snapshotInterval time.Duration // WithSnapshotInterval
	snap             *snapshotter  // set by Open only: the snapshots of this Open

	openDB          func(driver.Connector) *sql.DB
	pgxConfigs      []func(*pgx.ConnConfig)
	pgxAfterConnect []func(context.Context, *pgx.Conn) error

	// Test seams, set only from export_test.go.
	dataDir    string                         // Hugging Face persistent storage mount
	fsType     func(dir string) string        // filesystem kind of dir ("" when local)
	lookupFunc pgconn.LookupFunc              // DNS resolution for PostgreSQL hosts
	now        func() time.Time               // clock for corrupt-file names
	noSQLite   bool                           // behave as a build without a SQLite engine
	pgPlain    bool                           // open PostgreSQL as pgx's stdlib does, without pg_failover.go's hooks or pg_pooler.go's statements
	snapshotFS func(dir, dbDir string) string // why a snapshot directory is not durable (nil: the real check)
	slowCopy   time.Duration                  // a wait before each chunk a restore reads, to outlast a deadline
	closeSnap  time.Duration                  // bound of Close's final snapshot (0: snapshotCloseTimeout)
}

func defaultOptions() options {
	return options{
		lookupEnv:      os.LookupEnv,
		envVars:        []string{"DATABASE_URL"},
		sqliteName:     "app.db",
		connectTimeout: 5 * time.Second,
		strategy:       PreferPrimary,
		dataDir:        "/data",
		fsType:         networkFS,
		now:            time.Now,
	}
}

func buildOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.lookupEnv == nil {
		o.lookupEnv = os.LookupEnv
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.strategy == nil {
		o.strategy = PreferPrimary
	}
	return o
}

// WithURL makes raw the first source of the primary database, ahead of the
// environment. An empty or blank raw counts as unset (it is recorded in the
// [Resolution] with [ErrEmpty]), so WithURL(cfg.DatabaseURL) is safe when
// the setting is optional.
func WithURL(raw string) Option {
	return func(o *options) { o.url, o.hasURL = raw, true }
}

// WithLookupEnv replaces os.LookupEnv for every variable this package reads
// (DATABASE_URL and its _FILE twin, the PG* variables, SQLITE_PATH, TMPDIR,
// SPACE_ID, PGCONNECT_TIMEOUT). Tests use it to avoid touching the process
// environment. pgx itself still reads PG* variables and ~/.pgpass from the
// real process at connect time, as libpq does.
func WithLookupEnv(lookup func(string) (string, bool)) Option {
	return func(o *options) { o.lookupEnv = lookup }
}

// WithEnvVars replaces the list of variables that may hold the database URL
// (default: DATABASE_URL). Each name is read, then name+"_FILE" as the path
// of a secret file. WithEnvVars("POSTGRES_URL", "DATABASE_URL") tries
// POSTGRES_URL first. With no names, only WithURL and PG* variables count.
func WithEnvVars(names ...string) Option {
	return func(o *options) { o.envVars = append([]string(nil), names...) }
}

// WithSQLitePath sets the SQLite fallback file (or a directory to hold
// <name>, see [WithSQLiteName]). It takes precedence over SQLITE_PATH and
// the automatic locations, and a path given this way is treated as
// persistent.
func WithSQLitePath(path string) Option {
	return func(o *options) { o.sqlitePath = path }
}

// WithSQLiteName sets the file name used in the automatic SQLite locations
// (/data, ./data, the temporary directory). Default "app.db".
func WithSQLiteName(name string) Option {
	return func(o *options) { o.sqliteName = name }
}

// WithPersistent marks the automatic SQLite locations as persistent. Use it
// when the operator knows the disk survives restarts, for example a Hugging
// Face Space with a persistent storage upgrade mounted at /data. Without it
// only an explicit path counts as persistent, and [DB.Ephemeral] reports
// true.
func WithPersistent(persistent bool) Option {
	return func(o *options) { o.persistent = persistent }
}

// WithConnectTimeout bounds each connection attempt to the primary
// (default 5s). The URL's connect_timeout, then PGCONNECT_TIMEOUT, win when
// set. Zero keeps the default: startup never waits without a bound, even
// where libpq would read connect_timeout=0 as "forever".
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.connectTimeout = d
		}
	}
}

// WithPrimaryWait retries transient primary failures (refused, reset,
// timed out, DNS, "the database system is starting up") with capped
// exponential backoff and jitter for up to d, then falls back; when Open's
// ctx has a deadline, retries also stop where the fallback's reserve
// begins (see [Open]). Permanent
// failures (see [IsPermanent]) are never retried. Default 0: one attempt.
// Use it when the database starts alongside the service, as in
// docker-compose.
func WithPrimaryWait(d time.Duration) Option {
	return func(o *options) { o.primaryWait = max(d, 0) }
}

// WithStrategy sets the order of candidates [Open] tries (default
// [PreferPrimary]).
func WithStrategy(s Strategy) Option {
	return func(o *options) { o.strategy = s }
}

// WithLogger sends the package's log lines to l: one at open saying which
// database is live, why, and whether its data is ephemeral, plus recovery
// probe reports. Every attribute is redacted. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithInit registers a hook run on the chosen database before [Open]
// returns, typically to create the schema or run migrations. Hooks run in
// order, under Open's ctx. When a hook fails because the database is
// unavailable (see [IsUnavailable]: connection lost, I/O, disk full, busy),
// the candidate is closed and the next one is tried. Any other error (bad
// SQL, a constraint, a migration tool's error) is a bug: Open closes the
// candidate and returns the error, under every strategy, rather than move
// the service's data to another database. The returned error is redacted
// and wraps the hook's error. A hook that panics is a bug too: Open closes
// the candidate and the panic continues to Open's caller. So are hooks that
// return while holding pool connections (a transaction neither committed
// nor rolled back, rows or a Conn not closed): every later write would wait
// behind them.
func WithInit(fn func(ctx context.Context, db *DB) error) Option {
	return func(o *options) {
		if fn != nil {
			o.inits = append(o.inits, fn)
		}
	}
}

// WithRecoveryProbe pings the primary every interval while the database in
// use is a fallback, and calls onRecover (from a background goroutine)
// each time the primary answers after not answering. The pool is never
// switched silently: the application decides what to do, typically to log
// and restart. [DB.Health] reports the latest probe result. The probe
// stops when the DB is closed. A zero interval disables it.
func WithRecoveryProbe(interval time.Duration, onRecover func(primary Target)) Option {
	return func(o *options) { o.probeInterval, o.probeFunc = interval, onRecover }
}

// WithPool overrides pool settings of the chosen database; zero fields
// keep the per-dialect defaults, and a PostgreSQL URL's pool_max_conns,
// pool_max_conn_lifetime and pool_max_conn_idle_time win over it (see
// [PoolConfig]); when one replaces a different non-zero value set here,
// DB.Reason and Open's log line say so.
func WithPool(p PoolConfig) Option {
	return func(o *options) { o.pool = p }
}
