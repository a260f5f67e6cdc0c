package integration

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"testing"
	"time"

	"github.com/XSAM/otelsql"
	"github.com/dbfallback/dbfallback"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

// attack_test.go: the integrations used as a new user would, in the
// orders and states the other tests do not reach.

// TestAttackTracersOnEitherDialect: a service installs both tracers
// (otelsql through WithOpenDB, otelpgx through WithPgxConfig) and lets
// Open choose. With the primary down it lands on SQLite: otelsql traces
// the SQLite queries, the pgx tracer simply never runs, and the failed
// PostgreSQL candidate's traced pool leaves nothing running. With the
// primary up both tracers see the same query.
func TestAttackTracersOnEitherDialect(t *testing.T) {
	tests := []struct {
		name    string
		url     func(t *testing.T) string
		dialect dbfallback.Dialect
		pgxSpan bool
	}{
		{name: "primary down, SQLite", url: func(*testing.T) string { return "postgres://app@127.0.0.1:1/app?sslmode=disable" }, dialect: dbfallback.SQLite},
		{name: "primary up", url: func(t *testing.T) string { return pgURL(t) }, dialect: dbfallback.Postgres, pgxSpan: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url(t)
			before := goleak.IgnoreCurrent()
			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			defer tp.Shutdown(context.Background())
			db, err := dbfallback.Open(context.Background(),
				dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }),
				dbfallback.WithURL(url), dbfallback.WithSQLitePath(filepath.Join(t.TempDir(), "app.db")),
				dbfallback.WithOpenDB(func(c driver.Connector) *sql.DB {
					return otelsql.OpenDB(c, otelsql.WithTracerProvider(tp))
				}),
				dbfallback.WithPgxConfig(func(cfg *pgx.ConnConfig) {
					cfg.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
				}))
			require.NoError(t, err)
			require.Equal(t, tt.dialect, db.Dialect())
			ctx, span := tp.Tracer("test").Start(context.Background(), "request")
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT 17 + 25").Scan(&n))
			span.End()
			assert.Equal(t, 42, n)
			spans := 0
			for _, s := range sr.Ended() {
				for _, a := range s.Attributes() {
					if a.Value.AsString() == "SELECT 17 + 25" {
						spans++
						break
					}
				}
			}
			want := 1 // otelsql's
			if tt.pgxSpan {
				want = 2 // and otelpgx's
			}
			assert.GreaterOrEqual(t, spans, want, "spans naming the query")
			require.NoError(t, db.Close())
			assert.NoError(t, goleak.Find(before), "no candidate's pool is left running")
		})
	}
}

// TestAttackGORMClosesDuringTx: GORM's sqlDB.Close() runs while a db.Tx
// holds a connection (shutdown racing a request). Close does not wait for
// it, the transaction still ends (committed, or an error, never a hang),
// new work fails with sql's "database is closed", nothing is left
// running, and DB.Close afterwards is harmless.
func TestAttackGORMClosesDuringTx(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			db, err := dbfallback.Open(context.Background(), openOptions(t, dialect)...)
			require.NoError(t, err)
			g := gormOpen(t, db)
			require.NoError(t, g.Exec("DROP TABLE IF EXISTS attack_close").Error)
			require.NoError(t, g.Exec("CREATE TABLE attack_close (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)").Error)
			inTx, release := make(chan struct{}), make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- db.Tx(context.Background(), func(tx *sql.Tx) error {
					if _, err := tx.Exec("INSERT INTO attack_close VALUES (1, 1)"); err != nil {
						return err
					}
					close(inTx)
					<-release
					return nil
				})
			}()
			<-inTx
			sqlDB, err := g.DB()
			require.NoError(t, err)
			closed := make(chan error, 1)
			go func() { closed <- sqlDB.Close() }()
			select {
			case err := <-closed:
				assert.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("sqlDB.Close waited for the transaction")
			}
			close(release)
			select {
			case err := <-done:
				t.Logf("the transaction ended: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the transaction hung after the pool closed")
			}
			assert.ErrorContains(t, db.Ping(), "database is closed")
			assert.NoError(t, db.Close(), "DB.Close after GORM's is harmless")
			assert.NoError(t, goleak.Find(before), "nothing of the DB is left running")
		})
	}
}
