package integration

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"testing"

	"github.com/XSAM/otelsql"
	"github.com/dbfallback/dbfallback"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkOtelsql measures what XSAM/otelsql, installed with WithOpenDB,
// adds to a point query on each dialect: the pool as Open makes it, then
// the same pool traced, every span sampled and ended (recorded by the SDK,
// exported nowhere).
func BenchmarkOtelsql(b *testing.B) {
	for _, dialect := range dialects {
		for _, traced := range []bool{false, true} {
			name := dialect + "/plain"
			if traced {
				name = dialect + "/otelsql"
			}
			b.Run(name, func(b *testing.B) {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
				defer tp.Shutdown(context.Background())
				var extra []dbfallback.Option
				if traced {
					extra = append(extra, dbfallback.WithOpenDB(func(c driver.Connector) *sql.DB {
						return otelsql.OpenDB(c, otelsql.WithTracerProvider(tp))
					}))
				}
				db := openBench(b, dialect, extra...)
				ctx, span := tp.Tracer("bench").Start(context.Background(), "request")
				defer span.End()
				var n int
				for b.Loop() {
					if err := db.QueryRowContext(ctx, "SELECT 42").Scan(&n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
