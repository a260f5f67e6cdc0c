package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestPgxPoolFromTarget: a service on pgxpool builds its pool from the
// resolved primary's PgxPoolConfig: the URL's pool_* keys size it (with
// pgxpool.ParseConfig(target.DSN()) they were lost), the server never
// sees them, application_name comes from SPACE_ID read through
// WithLookupEnv, and a tracer set with WithPgxConfig sees the queries.
func TestPgxPoolFromTarget(t *testing.T) {
	url := pgURL(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	url += sep + "pool_max_conns=3&pool_min_conns=1&pool_max_conn_lifetime=10m&pool_ping_timeout=2s"
	env := map[string]string{"DATABASE_URL": url, "SPACE_ID": "team/pgxpool-test"}
	lookup := dbfallback.WithLookupEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	ctx := context.Background()

	r, err := dbfallback.Resolve(ctx, lookup)
	require.NoError(t, err)
	cfg, err := r.Primary.PgxPoolConfig(lookup, dbfallback.WithPgxConfig(func(cfg *pgx.ConnConfig) {
		cfg.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
	}))
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()

	var app string
	reqCtx, span := tp.Tracer("test").Start(ctx, "request") // otelpgx traces under a caller's span
	require.NoError(t, pool.QueryRow(reqCtx, "SELECT current_setting('application_name')").Scan(&app))
	span.End()
	assert.Equal(t, "team/pgxpool-test", app)
	assert.Equal(t, int32(3), pool.Stat().MaxConns())
	_, ok := spanWith(sr, "current_setting('application_name')")
	assert.True(t, ok, "the tracer saw the query")

	// Three connections at once: the pool is the URL's size, and a fourth
	// Acquire waits until one is released.
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = pool.Acquire(short)
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a fourth connection waits: pool_max_conns=3")
	for _, c := range conns {
		c.Release()
	}
}

// TestPgxPoolConfigWithoutPrimary: with no primary configured there is no
// pgxpool to build, and the error says so (no SQLite fallback on a
// pgxpool).
func TestPgxPoolConfigWithoutPrimary(t *testing.T) {
	r, err := dbfallback.Resolve(context.Background(), dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }))
	require.NoError(t, err)
	_, err = r.Primary.PgxPoolConfig()
	assert.ErrorContains(t, err, "pgxpool needs PostgreSQL")
}
