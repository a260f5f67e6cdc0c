package integration

// Hostile cases from an outside attack on issue 12 (hooks, pgxpool
// configuration, closing through tools), written from the documentation.

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/golang-migrate/migrate/v4"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pgPassword is the password of DBFALLBACK_TEST_DATABASE_URL.
func pgPassword(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(pgURL(t))
	require.NoError(t, err)
	pw, _ := u.User.Password()
	require.NotEmpty(t, pw)
	return pw
}

// otherConnector wraps the connector WithOpenDB was given, as a
// connector-level instrumentation wrapper does.
type otherConnector struct{ driver.Connector }

func TestAttackWithOpenDBMisuse(t *testing.T) {
	tests := []struct {
		name  string
		open  func(c driver.Connector) *sql.DB
		panic bool
		ok    bool // a correct wrapper: Open succeeds
	}{
		{name: "nil pool", open: func(driver.Connector) *sql.DB { return nil }},
		{name: "wrapped connector", open: func(c driver.Connector) *sql.DB { return sql.OpenDB(otherConnector{c}) }, ok: true},
		{name: "panics", open: func(driver.Connector) *sql.DB { panic("wrapper bug") }, panic: true},
	}
	for _, dialect := range dialects {
		for _, tt := range tests {
			t.Run(dialect+"/"+tt.name, func(t *testing.T) {
				// The SQLite candidates of PreferPrimary and SQLiteOnly stay
				// under the test's directory.
				opts := append(openOptions(t, dialect), dbfallback.WithOpenDB(tt.open),
					dbfallback.WithSQLitePath(filepath.Join(t.TempDir(), "app.db")))
				for _, strategy := range []dbfallback.Strategy{dbfallback.PreferPrimary, dbfallback.PrimaryOnly, dbfallback.SQLiteOnly} {
					if dialect == "sqlite" && strategy == dbfallback.PrimaryOnly {
						continue
					}
					o := append(opts, dbfallback.WithStrategy(strategy))
					if tt.panic {
						assert.Panics(t, func() {
							db, _ := dbfallback.Open(context.Background(), o...)
							if db != nil {
								db.Close()
							}
						})
						continue
					}
					db, err := dbfallback.Open(context.Background(), o...)
					if tt.ok {
						require.NoError(t, err)
						var n int
						require.NoError(t, db.QueryRowContext(context.Background(), "SELECT 1").Scan(&n))
						require.NoError(t, db.Close())
						continue
					}
					if db != nil {
						db.Close()
					}
					require.Error(t, err, "strategy %v", strategy)
					assert.Contains(t, err.Error(), "WithOpenDB")
					if dialect == "postgres" {
						assert.NotContains(t, err.Error(), pgPassword(t))
					}
				}
			})
		}
	}
}

// panicTracer is a pgx.QueryTracer that panics on every query.
type panicTracer struct{}

func (panicTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	panic("tracer bug")
}

func (panicTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestAttackPgxConfigHostile(t *testing.T) {
	pw := pgPassword(t)
	tests := []struct {
		name      string
		configure func(cfg *pgx.ConnConfig)
		wantErr   bool
	}{
		{name: "wrong password set", configure: func(cfg *pgx.ConnConfig) { cfg.Password = "Hunter2-set-by-hook" }, wantErr: true},
		{name: "host moved to a refusing port", configure: func(cfg *pgx.ConnConfig) {
			cfg.Port = 1
			cfg.Fallbacks = nil
		}, wantErr: true},
		{name: "password printed into a notice", configure: func(cfg *pgx.ConnConfig) { _ = fmt.Sprintf("%+v", cfg) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			opts := append(openOptions(t, "postgres"), dbfallback.WithPgxConfig(tt.configure), dbfallback.WithLogger(logger),
				dbfallback.WithConnectTimeout(2*time.Second))
			db, err := dbfallback.Open(context.Background(), opts...)
			if tt.wantErr {
				require.Error(t, err)
				assert.True(t, errors.Is(err, dbfallback.ErrNoDatabase), "%v", err)
				for _, secret := range []string{pw, "Hunter2-set-by-hook"} {
					assert.NotContains(t, err.Error(), secret)
					assert.NotContains(t, fmt.Sprintf("%+v", err), secret)
					assert.NotContains(t, logs.String(), secret)
				}
				return
			}
			require.NoError(t, err)
			defer db.Close()
			assert.NotContains(t, logs.String(), pw)
		})
	}
	t.Run("tracer panics on a query", func(t *testing.T) {
		opts := append(openOptions(t, "postgres"), dbfallback.WithPgxConfig(func(cfg *pgx.ConnConfig) { cfg.Tracer = panicTracer{} }))
		var db *dbfallback.DB
		var err error
		// Open's ping is not a query; if Open runs one through the
		// tracer, the panic reaches the caller, which is the tracer's bug.
		func() {
			defer func() { _ = recover() }()
			db, err = dbfallback.Open(context.Background(), opts...)
		}()
		if db == nil {
			return
		}
		require.NoError(t, err)
		defer db.Close()
		assert.Panics(t, func() { _, _ = db.ExecContext(context.Background(), "SELECT 1") })
		// The pool is still usable after a query panicked in the tracer:
		// Close returns and Health answers.
		h := db.Health(context.Background())
		assert.Equal(t, "up", h.Status, "%+v", h)
	})
}

// errLeaky is a non-transient error that carries the password in its text.
type errLeaky struct{ pw string }

func (e errLeaky) Error() string { return "register type failed for password " + e.pw }

func TestAttackPgxAfterConnectFails(t *testing.T) {
	pw := pgPassword(t)
	for _, strategy := range []dbfallback.Strategy{dbfallback.PreferPrimary, dbfallback.PrimaryOnly} {
		t.Run(fmt.Sprint(strategy), func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			opts := append(openOptions(t, "postgres"), dbfallback.WithStrategy(strategy), dbfallback.WithLogger(logger),
				dbfallback.WithSQLitePath(filepath.Join(t.TempDir(), "app.db")),
				dbfallback.WithPgxAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
					return errLeaky{pw: conn.Config().Password}
				}))
			db, err := dbfallback.Open(context.Background(), opts...)
			if db != nil {
				t.Cleanup(func() { db.Close() })
			}
			require.Error(t, err, "a bug in the hook fails Open under every strategy")
			assert.ErrorAs(t, err, new(errLeaky))
			assert.NotContains(t, err.Error(), pw)
			assert.NotContains(t, logs.String(), pw)
		})
	}
}

func TestAttackPgxPoolConfigPoolKeys(t *testing.T) {
	base := pgURL(t)
	tests := []struct {
		name    string
		query   string
		wantErr bool
		check   func(t *testing.T, maxConns int32)
	}{
		{name: "zero max conns", query: "pool_max_conns=0", wantErr: true},
		{name: "negative max conns", query: "pool_max_conns=-3", wantErr: true},
		{name: "not a number", query: "pool_max_conns=lots", wantErr: true},
		{name: "beyond int32", query: "pool_max_conns=99999999999", wantErr: true},
		{name: "bad duration", query: "pool_max_conn_lifetime=forever", wantErr: true},
		{name: "negative duration", query: "pool_max_conn_idle_time=-1s", wantErr: true},
		{name: "huge but valid", query: "pool_max_conns=100000", check: func(t *testing.T, n int32) { assert.EqualValues(t, 100000, n) }},
		{name: "kept", query: "pool_max_conns=7", check: func(t *testing.T, n int32) { assert.EqualValues(t, 7, n) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := base + "&" + tt.query
			target, verr := dbfallback.Validate(raw)
			if verr == nil {
				cfg, err := target.PgxPoolConfig()
				if tt.wantErr {
					// Validate let it through: PgxPoolConfig must refuse it then.
					require.Error(t, err, "%s accepted by Validate and PgxPoolConfig", tt.query)
					assert.NotContains(t, err.Error(), pgPassword(t))
					return
				}
				require.NoError(t, err)
				tt.check(t, cfg.MaxConns)
				return
			}
			require.True(t, tt.wantErr, "Validate refused a good value: %v", verr)
			assert.NotContains(t, verr.Error(), pgPassword(t))
		})
	}
}

// TestAttackPoolKeysVersusWithPool: the URL's pool_max_conns wins over
// WithPool; the caller who set both is told so in the log.
func TestAttackPoolKeysVersusWithPool(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	opts := openOptions(t, "postgres")
	opts = append(opts, dbfallback.WithURL(pgURL(t)+"&pool_max_conns=3"), dbfallback.WithLogger(logger),
		dbfallback.WithPool(dbfallback.PoolConfig{MaxOpenConns: 50}))
	db, err := dbfallback.Open(context.Background(), opts...)
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, 3, db.Stats().MaxOpenConnections)
	want := "the URL's pool_max_conns=3 overrides WithPool's MaxOpenConns 50"
	assert.Contains(t, db.Reason(), want)
	assert.Contains(t, logs.String(), want, "WithPool's MaxOpenConns was overridden silently")
	assert.NotContains(t, db.Reason(), "MaxIdleConns", "fields the URL does not set are not reported")

	// The same value on both sides, or a field WithPool leaves zero, is
	// no conflict: nothing is said.
	for _, pool := range []dbfallback.PoolConfig{{MaxOpenConns: 3}, {MaxIdleConns: 2}} {
		logs.Reset()
		opts := append(openOptions(t, "postgres"), dbfallback.WithURL(pgURL(t)+"&pool_max_conns=3"), dbfallback.WithLogger(logger), dbfallback.WithPool(pool))
		db, err := dbfallback.Open(context.Background(), opts...)
		require.NoError(t, err)
		assert.Empty(t, db.Reason())
		assert.NotContains(t, logs.String(), "overrides")
		require.NoError(t, db.Close())
	}
}

func TestAttackCloseThroughGORMThenDB(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			gdb := gormOpen(t, db)
			sqlDB, err := gdb.DB()
			require.NoError(t, err)
			require.NoError(t, sqlDB.Close())
			assert.NoError(t, db.Close(), "DB.Close after the pool was closed through GORM")
			assert.NoError(t, db.Close(), "idempotent")
			h := db.Health(context.Background())
			assert.Equal(t, "down", h.Status, "%+v", h)
			assert.Error(t, db.Tx(context.Background(), func(*sql.Tx) error { return nil }))
		})
	}
}

// TestAttackWithOpenDBCachedPool: a wrapper that caches the first pool it
// made (a sync.Once around otelsql.OpenDB, say) hands the SQLite candidate
// the refused primary's pool. Open must notice, not serve the primary's
// pool as the fallback.
func TestAttackWithOpenDBCachedPool(t *testing.T) {
	var cached *sql.DB
	defer func() {
		if cached != nil {
			cached.Close()
		}
	}()
	opts := []dbfallback.Option{
		dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }),
		dbfallback.WithURL("postgres://u:Sekr1t-cached@127.0.0.1:1/db?sslmode=disable"),
		dbfallback.WithSQLitePath(filepath.Join(t.TempDir(), "app.db")),
		dbfallback.WithOpenDB(func(c driver.Connector) *sql.DB {
			if cached == nil {
				cached = sql.OpenDB(c)
			}
			return cached
		}),
	}
	db, err := dbfallback.Open(context.Background(), opts...)
	if db != nil {
		db.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithOpenDB")
	assert.NotContains(t, err.Error(), "Sekr1t-cached")
}

// TestAttackCloseThroughMigrateThenDB: golang-migrate's Close closes the
// embedded pool; DB.Close afterwards still returns nil, twice, and Health
// and Tx report a closed database rather than hang or panic.
func TestAttackCloseThroughMigrateThenDB(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			m := newMigrate(t, db)
			if err := m.Up(); !errors.Is(err, migrate.ErrNoChange) { // the shared server may hold it already
				require.NoError(t, err)
			}
			srcErr, dbErr := m.Close()
			require.NoError(t, srcErr)
			require.NoError(t, dbErr)
			assert.NoError(t, db.Close())
			assert.NoError(t, db.Close())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			assert.Equal(t, "down", db.Health(ctx).Status)
			assert.Error(t, db.Tx(ctx, func(*sql.Tx) error { return nil }))
		})
	}
}
