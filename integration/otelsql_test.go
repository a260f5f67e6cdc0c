package integration

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"testing"

	"github.com/XSAM/otelsql"
	"github.com/dbfallback/dbfallback"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spanWith returns the first ended span whose attributes hold query, and
// whether there is one.
func spanWith(sr *tracetest.SpanRecorder, query string) (sdktrace.ReadOnlySpan, bool) {
	for _, s := range sr.Ended() {
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.String(), query) {
				return s, true
			}
		}
	}
	return nil, false
}

// TestOtelsqlThroughWithOpenDB: XSAM/otelsql installed with WithOpenDB
// traces the pool's queries on both dialects, as children of the caller's
// span, and its Close passes on to the library's (the pool's resources
// are released).
func TestOtelsqlThroughWithOpenDB(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			defer tp.Shutdown(context.Background())
			db := open(t, dialect, dbfallback.WithOpenDB(func(c driver.Connector) *sql.DB {
				return otelsql.OpenDB(c, otelsql.WithTracerProvider(tp))
			}))
			ctx, span := tp.Tracer("test").Start(context.Background(), "request")
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT 40 + 2").Scan(&n))
			require.NoError(t, db.Tx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "SELECT 1")
				return err
			}))
			span.End()
			assert.Equal(t, 42, n)
			s, ok := spanWith(sr, "SELECT 40 + 2")
			require.True(t, ok, "a span for the query")
			assert.Equal(t, span.SpanContext().SpanID(), s.Parent().SpanID(), "under the caller's span")
			_, ok = spanWith(sr, "SELECT 1")
			assert.True(t, ok, "a span for the statement in db.Tx")
			require.NoError(t, db.Close())
		})
	}
}

// TestOtelpgxThroughWithPgxConfig: exaring/otelpgx, pgx's OpenTelemetry
// tracer, set through WithPgxConfig, traces the queries of the pool.
func TestOtelpgxThroughWithPgxConfig(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	db := open(t, "postgres", dbfallback.WithPgxConfig(func(cfg *pgx.ConnConfig) {
		cfg.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
	}))
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT 6 * 7").Scan(&n))
	span.End()
	assert.Equal(t, 42, n)
	s, ok := spanWith(sr, "SELECT 6 * 7")
	require.True(t, ok, "a span for the query")
	assert.Equal(t, span.SpanContext().TraceID(), s.SpanContext().TraceID(), "in the caller's trace")
}
