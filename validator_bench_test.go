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

// BenchmarkParse compares Validate with the parsers a service could use
// instead, on the same inputs in the same run. One op parses every URL of
// benchURLs once. See BENCHMARKS.md.
func BenchmarkParse(b *testing.B) {
	b.Setenv("PGPASSFILE", "/nonexistent/dbfallback-bench-pgpass")
	b.Run("Validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, u := range benchURLs {
				if _, err := Validate(u); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("pgconn.ParseConfig", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, u := range benchURLs {
				if _, err := pgconn.ParseConfig(u); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
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
	b.Run("url.Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, u := range benchURLs {
				if _, err := url.Parse(u); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
