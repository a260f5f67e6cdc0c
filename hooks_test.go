package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an instrumentation wrapper in the style of otelsql: it wraps
// a driver.Connector and records every statement its connections run.
type recorder struct {
	mu      sync.Mutex
	queries []string
	closed  atomic.Int32 // Close calls passed on to the wrapped connector
}

func (r *recorder) record(q string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, q)
}

// reset forgets what was recorded (benchmarks run millions of queries).
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = r.queries[:0]
}

func (r *recorder) saw(q string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.queries {
		if s == q {
			return true
		}
	}
	return false
}

// open is the WithOpenDB function: sql.OpenDB over the wrapped connector.
func (r *recorder) open(c driver.Connector) *sql.DB {
	return sql.OpenDB(&recConnector{Connector: c, r: r})
}

type recConnector struct {
	driver.Connector
	r *recorder
}

func (c *recConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: conn, r: c.r}, nil
}

// Close passes io.Closer on, as database/sql asks of a wrapper.
func (c *recConnector) Close() error {
	c.r.closed.Add(1)
	if cl, ok := c.Connector.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

type recConn struct {
	driver.Conn
	r *recorder
}

func (c *recConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.r.record(q)
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *recConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.r.record(q)
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c *recConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.r.record(q)
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

func (c *recConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.r.record("BEGIN")
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

// hookDialects opens a DB with opts on SQLite (a file) and on the
// PostgreSQL of DBFALLBACK_TEST_DATABASE_URL.
var hookDialects = []struct {
	name string
	opts func(t *testing.T) []Option
}{
	{"sqlite", func(t *testing.T) []Option {
		isolatedDirs(t)
		return []Option{env(), withDataDir(""), WithStrategy(SQLiteOnly), WithSQLitePath(filepath.Join(t.TempDir(), "app.db"))}
	}},
	{"postgres", func(t *testing.T) []Option {
		return []Option{env(), WithStrategy(PrimaryOnly), WithURL(testPostgresURL(t))}
	}},
}

// TestWithOpenDBSeesQueries: a wrapper installed with WithOpenDB sees the
// queries of the pool on both dialects, the SQLite write gate still
// queues writers under it (no "database is locked" from 16 concurrent
// read-then-write transactions), and closing the DB passes through it.
func TestWithOpenDBSeesQueries(t *testing.T) {
	for _, d := range hookDialects {
		t.Run(d.name, func(t *testing.T) {
			rec := &recorder{}
			db, err := Open(context.Background(), append(d.opts(t), WithOpenDB(rec.open))...)
			require.NoError(t, err)
			defer db.Close()
			ctx := context.Background()
			_, err = db.ExecContext(ctx, "DROP TABLE IF EXISTS hook_counter")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, "CREATE TABLE hook_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, "INSERT INTO hook_counter VALUES (1, 0)")
			require.NoError(t, err)
			const writers = 16
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- db.Tx(ctx, func(tx *sql.Tx) error {
						var n int
						if err := tx.QueryRowContext(ctx, "SELECT n FROM hook_counter WHERE id = 1").Scan(&n); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, "UPDATE hook_counter SET n = $1 WHERE id = 1", n+1)
						return err
					})
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT n FROM hook_counter WHERE id = 1").Scan(&n))
			assert.Equal(t, writers, n, "no update lost under the wrapper")
			for _, q := range []string{"INSERT INTO hook_counter VALUES (1, 0)", "SELECT n FROM hook_counter WHERE id = 1", "BEGIN"} {
				assert.True(t, rec.saw(q), "the wrapper saw %q", q)
			}
			require.NoError(t, db.Close())
			assert.Equal(t, int32(1), rec.closed.Load(), "database/sql closed the wrapper's connector once")
		})
	}
}

// TestWithOpenDBMisused: a function that returns nil, or a pool that does
// not connect through the connector it was given (bypassing the write
// gate), fails Open under the default strategy rather than falling back.
func TestWithOpenDBMisused(t *testing.T) {
	tests := []struct {
		name string
		open func(c driver.Connector) *sql.DB
	}{
		{"nil", func(driver.Connector) *sql.DB { return nil }},
		{"another connector", func(driver.Connector) *sql.DB {
			db, _ := openRawSQLite("file::memory:")
			return db
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, tmp := isolatedDirs(t)
			db, err := Open(context.Background(), env("TMPDIR", tmp), withDataDir(""), WithOpenDB(tt.open))
			require.Error(t, err)
			assert.Nil(t, db)
			assert.Contains(t, err.Error(), "WithOpenDB")
			assert.NotErrorIs(t, err, ErrNoDatabase, "a bug, not an outage: no other candidate was tried")
		})
	}
}

// tracer is a pgx.QueryTracer that records the SQL of each query span.
type tracer struct {
	mu    sync.Mutex
	spans []string // "start SQL" and "end SQL"
}

type traceKey struct{}

func (tr *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.spans = append(tr.spans, "start "+data.SQL)
	return context.WithValue(ctx, traceKey{}, data.SQL)
}

func (tr *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	q, _ := ctx.Value(traceKey{}).(string)
	tr.spans = append(tr.spans, fmt.Sprintf("end %s (%v)", q, data.Err))
}

func (tr *tracer) has(s string) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, sp := range tr.spans {
		if sp == s {
			return true
		}
	}
	return false
}

// TestWithPgxConfigTracer: a pgx tracer set through WithPgxConfig sees each
// query's span start and end; the function runs after the library's
// hardening, sees the password in clear (the documented %+v hazard), and
// what it sets wins.
func TestWithPgxConfigTracer(t *testing.T) {
	url := testPostgresURL(t)
	tr := &tracer{}
	var sawTimeout time.Duration
	var sawApp string
	var printed string
	db, err := Open(context.Background(), env(), WithStrategy(PrimaryOnly), WithURL(url), WithConnectTimeout(3*time.Second),
		WithPgxConfig(func(cfg *pgx.ConnConfig) {
			cfg.Tracer = tr
			sawTimeout, sawApp = cfg.ConnectTimeout, cfg.RuntimeParams["application_name"]
			printed = fmt.Sprintf("%+v", cfg)
			cfg.RuntimeParams["application_name"] = "h12-traced"
		}))
	require.NoError(t, err)
	defer db.Close()
	var answer int
	require.NoError(t, db.QueryRow("SELECT 42").Scan(&answer))
	assert.True(t, tr.has("start SELECT 42"), "spans: %v", tr.spans)
	assert.True(t, tr.has("end SELECT 42 (<nil>)"), "spans: %v", tr.spans)
	assert.Equal(t, 3*time.Second, sawTimeout, "the hook runs after the connect timeout is set")
	assert.NotEmpty(t, sawApp, "and after the application_name default")
	var app string
	require.NoError(t, db.QueryRow("SHOW application_name").Scan(&app))
	assert.Equal(t, "h12-traced", app, "what the hook sets wins")
	pw, ok := db.Target().Password()
	require.True(t, ok)
	assert.Contains(t, printed, pw, "a *pgx.ConnConfig prints its password under %%+v, as WithPgxConfig's doc warns")
}

// TestWithPgxAfterConnect: the function runs on every new connection
// (here it registers a custom enum type and sets session state); an error
// that is a bug fails Open under the default strategy, an availability
// error falls back.
func TestWithPgxAfterConnect(t *testing.T) {
	url := testPostgresURL(t)
	raw, err := sql.Open("pgx", url)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Exec(`DROP TYPE IF EXISTS h12_mood; CREATE TYPE h12_mood AS ENUM ('calm', 'busy')`)
	require.NoError(t, err)

	t.Run("registers a type on every connection", func(t *testing.T) {
		var calls atomic.Int32
		db, err := Open(context.Background(), env(), WithStrategy(PrimaryOnly), WithURL(url), WithPool(PoolConfig{MaxOpenConns: 3}),
			WithPgxAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
				calls.Add(1)
				typ, err := conn.LoadType(ctx, "h12_mood")
				if err != nil {
					return err
				}
				conn.TypeMap().RegisterType(typ)
				_, err = conn.Exec(ctx, "SET statement_timeout = 12345")
				return err
			}))
		require.NoError(t, err)
		defer db.Close()
		conns := make([]*sql.Conn, 3)
		for i := range conns {
			conns[i], err = db.Conn(context.Background())
			require.NoError(t, err)
			var timeout, mood string
			require.NoError(t, conns[i].QueryRowContext(context.Background(), "SHOW statement_timeout").Scan(&timeout))
			assert.Equal(t, "12345ms", timeout)
			require.NoError(t, conns[i].QueryRowContext(context.Background(), "SELECT 'busy'::h12_mood").Scan(&mood))
			assert.Equal(t, "busy", mood)
		}
		for _, c := range conns {
			c.Close()
		}
		assert.Equal(t, int32(3), calls.Load(), "once per connection")
	})
	t.Run("a bug fails Open", func(t *testing.T) {
		_, tmp := isolatedDirs(t)
		db, err := Open(context.Background(), env("TMPDIR", tmp), withDataDir(""), WithURL(url),
			WithPgxAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
				_, err := conn.LoadType(ctx, "h12_no_such_type")
				return err
			}))
		require.Error(t, err)
		assert.Nil(t, db)
		assert.Contains(t, err.Error(), "WithPgxAfterConnect")
		assert.True(t, strings.Contains(err.Error(), "h12_no_such_type"), "%v", err)
	})
	t.Run("unavailable falls back", func(t *testing.T) {
		_, tmp := isolatedDirs(t)
		db, err := Open(context.Background(), env("TMPDIR", tmp), withDataDir(""), WithURL(url),
			WithPgxAfterConnect(func(context.Context, *pgx.Conn) error {
				return fmt.Errorf("setup: %w", driver.ErrBadConn)
			}))
		require.NoError(t, err)
		defer db.Close()
		assert.Equal(t, SQLite, db.Dialect())
		assert.Contains(t, db.Reason(), "bad connection")
	})
}

func TestDialectDriverName(t *testing.T) {
	tests := []struct {
		d    Dialect
		want string
	}{
		{Postgres, "postgres"},
		{SQLite, "sqlite3"},
		{"", ""},
		{"mysql", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.d), func(t *testing.T) { assert.Equal(t, tt.want, tt.d.DriverName()) })
	}
}
