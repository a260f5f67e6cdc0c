package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// BenchmarkOpenFailure measures the time to a usable database for each way
// the primary can fail, against a SQLiteOnly Open of the same file as the
// baseline. The targets (BENCHMARKS.md): refused, wrong password and unknown
// database within baseline + 20ms; a silent server within the connect
// timeout + 100ms.
func BenchmarkOpenFailure(b *testing.B) {
	base := testPostgresURL(b)
	bt, err := Validate(base)
	if err != nil {
		b.Fatal(err)
	}
	pw, _ := bt.Password()
	host := bt.Hosts[0]
	mk := func(h string, port int, password, db string) string {
		return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", escapeComponent(bt.User), escapeComponent(password), h, port, db)
	}
	const timeout = 500 * time.Millisecond
	dnsFail := func(ctx context.Context, h string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: h, IsNotFound: true}
	}
	path := filepath.Join(b.TempDir(), "bench.db")
	cases := []struct {
		name string
		opts []Option
	}{
		{"baseline SQLiteOnly", []Option{WithStrategy(SQLiteOnly)}},
		{"refused", []Option{env("DATABASE_URL", mk("127.0.0.1", freePort(b), pw, bt.Database))}},
		{"wrong password", []Option{env("DATABASE_URL", mk(host.Name, int(host.Port), "Wrong-Hunter22", bt.Database))}},
		{"unknown database", []Option{env("DATABASE_URL", mk(host.Name, int(host.Port), pw, "no_such_db_dbfallback"))}},
		{"dns failure", []Option{env("DATABASE_URL", mk("db.does-not-exist.invalid", 5432, pw, bt.Database)), withLookupFunc(dnsFail)}},
		{"silent server (timeout 500ms)", []Option{env("DATABASE_URL", mk("127.0.0.1", silentListener(b), pw, bt.Database))}},
		{"primary answers", []Option{env("DATABASE_URL", base)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			opts := append([]Option{env(), withDataDir(""), WithSQLitePath(path), WithConnectTimeout(timeout)}, c.opts...)
			for b.Loop() {
				db, err := Open(context.Background(), opts...)
				if err != nil {
					b.Fatal(err)
				}
				db.Close()
			}
		})
	}
	// What a plain pool does on the silent server without a connect
	// timeout: it waits for the caller's deadline (here 2s).
	b.Run("plain sql.Open+Ping, silent server, 2s deadline", func(b *testing.B) {
		url := mk("127.0.0.1", silentListener(b), pw, bt.Database)
		for b.Loop() {
			db, err := sql.Open("pgx", url)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if db.PingContext(ctx) == nil {
				b.Fatal("a silent server answered")
			}
			cancel()
			db.Close()
		}
	})
}

// BenchmarkQuery compares a simple query through DB with the same query
// on a pool opened directly with pgx's stdlib, same pool size, same run.
// Target: at most 5% overhead.
func BenchmarkQuery(b *testing.B) {
	url := testPostgresURL(b)
	db, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""), WithStrategy(PrimaryOnly))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	postgresPool.apply(raw)
	for name, pool := range map[string]*sql.DB{"dbfallback.DB": db.DB, "pgx stdlib": raw} {
		b.Run(name, func(b *testing.B) {
			var n int
			for b.Loop() {
				if err := pool.QueryRow("SELECT $1::int + 1", 41).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
