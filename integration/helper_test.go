package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/require"
)

// dialects are the databases every integration test runs on.
var dialects = []string{"sqlite", "postgres"}

// open opens a dbfallback DB on dialect: SQLite on a file under
// t.TempDir(), or the PostgreSQL server of DBFALLBACK_TEST_DATABASE_URL
// (the test skips, saying why, when it is unset; .ci/run sets it, and a
// skip fails CI).
func open(t *testing.T, dialect string, extra ...dbfallback.Option) *dbfallback.DB {
	t.Helper()
	db, err := dbfallback.Open(context.Background(), append(openOptions(t, dialect), extra...)...)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.Equal(t, dbfallback.Dialect(dialect), db.Dialect())
	return db
}

// openBench is open for a benchmark.
func openBench(b *testing.B, dialect string, extra ...dbfallback.Option) *dbfallback.DB {
	b.Helper()
	db, err := dbfallback.Open(context.Background(), append(openOptions(b, dialect), extra...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// openOptions are the options that open a DB on dialect (see open).
func openOptions(t testing.TB, dialect string) []dbfallback.Option {
	t.Helper()
	lookup := func(string) (string, bool) { return "", false }
	opts := []dbfallback.Option{dbfallback.WithLookupEnv(lookup)}
	switch dialect {
	case "sqlite":
		opts = append(opts, dbfallback.WithStrategy(dbfallback.SQLiteOnly),
			dbfallback.WithSQLitePath(filepath.Join(t.TempDir(), "app.db")))
	case "postgres":
		url := pgURL(t)
		opts = append(opts, dbfallback.WithStrategy(dbfallback.PrimaryOnly), dbfallback.WithURL(url))
	}
	return opts
}

// pgURL returns the PostgreSQL of DBFALLBACK_TEST_DATABASE_URL, or skips.
func pgURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("needs PostgreSQL: set DBFALLBACK_TEST_DATABASE_URL (.ci/run starts a server and sets it)")
	}
	return url
}
