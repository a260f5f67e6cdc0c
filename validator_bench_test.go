package dbfallback

import (
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/xo/dburl"
)

// benchURLs is a mix of the URLs services really receive: platform
// strings with and without parameters, a pooler string, multi-host, IPv6.
// Every parser below accepts all of them, so the work compared is the same.
var benchURLs = []string{
	"postgres://username:password@ec2-54-225-96-191.compute-1.amazonaws.com:5432/d8u1bp3qb8c3tq",
	"postgresql://neondb_owner:npg_s3cr3t@ep-morning-hat-123456.us-east-1.aws.neon.tech/neondb?sslmode=require",
	"postgresql://postgres.abcdefghijklmnop:pa55word@aws-0-us-east-1.pooler.supabase.com:6543/postgres?sslmode=require&application_name=web",
	"postgres://app:app@localhost:5432/app",
	"postgres://myuser:pass@dpg-abc123def456ghi-a.oregon-postgres.render.com/mydb",
	"postgresql://doadmin:pass@db-postgresql-nyc1-12345-do-user-1-0.b.db.ondigitalocean.com:25060/defaultdb?sslmode=require&connect_timeout=10",
	"postgres://jack:secret@foo.example.com:5432,bar.example.com:5433/mydb?target_session_attrs=read-write",
	"postgres://u:p@[2001:db8::1]:5432/db",
}

// benchMultiHost is a mix of multi-host URLs: a primary and standbys in
// one string, with and without per-host ports, as the scale path uses.
var benchMultiHost = []string{
	"postgres://app:s3cr3t@pg-1.internal:5432,pg-2.internal:5432,pg-3.internal:5432/app?target_session_attrs=read-write",
	"postgresql://svc:pw@10.0.1.10:5432,10.0.1.11:5433,10.0.1.12:5434,10.0.1.13:5435/orders?target_session_attrs=primary&connect_timeout=5",
	"postgres://u:p@db-a.example.com,db-b.example.com,db-c.example.com,db-d.example.com,db-e.example.com/app?port=6432&sslmode=require",
	"postgres://ro:pw@replica-1.eu-west-1.rds.amazonaws.com:5432,replica-2.eu-west-1.rds.amazonaws.com:5432/app?target_session_attrs=prefer-standby",
}

// benchLongParams is a mix of URLs that carry many parameters, some with
// long or encoded values: what a tuned production service passes.
var benchLongParams = []string{
	"postgres://app:s3cr3t@db.example.com:5432/app?sslmode=verify-full&sslcertmode=allow&krbsrvname=postgres" +
		"&application_name=checkout-service-production&statement_timeout=30000&lock_timeout=5000" +
		"&idle_in_transaction_session_timeout=60000&search_path=app%2Cpublic&connect_timeout=10" +
		"&target_session_attrs=read-write&timezone=UTC&client_encoding=UTF8&default_transaction_isolation=serializable",
	"postgresql://svc:pw@pg.internal/analytics?options=-c%20work_mem%3D256MB%20-c%20maintenance_work_mem%3D1GB%20-c%20jit%3Doff" +
		"&application_name=nightly-rollup&statement_timeout=3600000&sslmode=require&connect_timeout=30&extra_float_digits=3",
	"postgres://u:p@h.example.com:6543/db?sslmode=require&application_name=a&statement_timeout=1&lock_timeout=2" +
		"&search_path=s1&timezone=Europe%2FParis&datestyle=ISO&intervalstyle=postgres&work_mem=64MB&role=app_rw",
}

// benchMixes are the inputs BenchmarkParseMix runs, by name.
var benchMixes = []struct {
	name string
	urls []string
}{
	{"typical", benchURLs},
	{"multi-host", benchMultiHost},
	{"long-params", benchLongParams},
}

// BenchmarkParse compares Validate with the parsers a service could use
// instead, on the same inputs in the same run. One op parses every URL of
// benchURLs once. See BENCHMARKS.md.
func BenchmarkParse(b *testing.B) {
	b.Setenv("PGPASSFILE", "/nonexistent/dbfallback-bench-pgpass")
	b.Run("Validate", func(b *testing.B) { benchValidate(b, benchURLs) })
	b.Run("pgconn.ParseConfig", func(b *testing.B) { benchPgconn(b, benchURLs) })
	b.Run("dburl.Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, u := range benchURLs {
				if _, err := dburl.Parse(u); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("url.Parse", func(b *testing.B) { benchNetURL(b, benchURLs) })
}

// BenchmarkParseMix runs Validate, pgconn.ParseConfig, net/url.Parse
// alone (the floor: it leaves the query unparsed) and net/url.Parse with
// the query split into parameters on each mix: one op parses every URL of
// the mix once. The benchmark
// names (mix=…/parser=…) let benchstat compare parsers with -col /parser
// and two builds of the library on the same names. It uses no API newer
// than commit 810d129, so the same file measures the code before issue 9.
func BenchmarkParseMix(b *testing.B) {
	b.Setenv("PGPASSFILE", "/nonexistent/dbfallback-bench-pgpass")
	for _, mix := range benchMixes {
		b.Run("mix="+mix.name+"/parser=Validate", func(b *testing.B) { benchValidate(b, mix.urls) })
		b.Run("mix="+mix.name+"/parser=pgconn", func(b *testing.B) { benchPgconn(b, mix.urls) })
		b.Run("mix="+mix.name+"/parser=net-url", func(b *testing.B) { benchNetURL(b, mix.urls) })
		b.Run("mix="+mix.name+"/parser=net-url+query", func(b *testing.B) { benchNetURLQuery(b, mix.urls) })
	}
}

// benchLoop runs parse on every URL once per op and reports, besides
// wall time, the CPU time per op of the benchmark's thread (cpu-ns/op):
// on a shared machine it does not count the time spent waiting for a core.
func benchLoop(b *testing.B, urls []string, parse func(string) error) {
	b.ReportAllocs()
	defer lockThread()()
	start, n := threadCPU(), 0
	for b.Loop() {
		for _, u := range urls {
			if err := parse(u); err != nil {
				b.Fatal(err)
			}
		}
		n++
	}
	if cpu := threadCPU() - start; cpu > 0 && n > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

func benchValidate(b *testing.B, urls []string) {
	benchLoop(b, urls, func(u string) error { _, err := Validate(u); return err })
}

func benchPgconn(b *testing.B, urls []string) {
	benchLoop(b, urls, func(u string) error { _, err := pgconn.ParseConfig(u); return err })
}

func benchNetURL(b *testing.B, urls []string) {
	benchLoop(b, urls, func(u string) error { _, err := url.Parse(u); return err })
}

// benchNetURLQuery is net/url doing the work Validate does at least:
// parse the URL, split the query into parameters, read the password and
// the port.
func benchNetURLQuery(b *testing.B, urls []string) {
	benchLoop(b, urls, func(s string) error {
		u, err := url.Parse(s)
		if err != nil {
			return err
		}
		_ = u.Query()
		_, _ = u.User.Password()
		_ = u.Port()
		return nil
	})
}
