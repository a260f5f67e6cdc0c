package dbfallback

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkPgBouncer runs 64 clients straight to PostgreSQL and through a
// real PgBouncer in transaction and session mode, with two workloads:
// "queries", a query with arguments (SELECT $1::int + $2::int), 60 per
// client, which measures what the pooler adds to a round trip; and "mix",
// the workload of TestPgBouncerWorkload (queries with arguments, prepared
// statements, db.Tx, sqlc-style queries and requests through a Session),
// 10 rounds of six operations per client.
//
// Every path has 16 server connections: the direct pool opens 16; through
// PgBouncer its pool_size is 16, and the DB's pool 64 in transaction mode
// (16 too, to compare with the direct path at the same client
// concurrency), 16 in session mode (where each client connection holds a
// server connection). The last two paths show the errors pooler mode
// removes. Each reports ops/s, the p50 and p99 of one operation and the
// errors seen, by kind in the log. BENCHMARKS.md runs it six times with
// -benchtime 1x -count 1, so that the machine's load falls on every path
// alike, and compares the runs with benchstat.
func BenchmarkPgBouncer(b *testing.B) {
	paths := []struct {
		name    string
		mode    string // PgBouncer's pool_mode; "" for no PgBouncer
		extra   string
		opts    []Option
		maxOpen int
	}{
		{name: "direct", extra: "pgbouncer=true", maxOpen: 16},
		{name: "direct, pgx's default exec mode", maxOpen: 16},
		{name: "transaction", mode: "transaction", extra: "pgbouncer=true", maxOpen: 64},
		{name: "transaction, 16 client connections", mode: "transaction", extra: "pgbouncer=true", maxOpen: 16},
		{name: "session", mode: "session", extra: "pgbouncer=true", maxOpen: 16},
		{name: "transaction, no pgbouncer=true", mode: "transaction", maxOpen: 64},
		{name: "transaction, pgbouncer=true, pgx stdlib's named statements", mode: "transaction", extra: "pgbouncer=true", opts: []Option{withPGPlain()}, maxOpen: 64},
	}
	workloads := []struct {
		name   string
		round  []string
		rounds int
	}{
		{name: "queries", round: []string{"query"}, rounds: 60},
		{name: "mix", round: opKinds, rounds: 10},
	}
	for _, wl := range workloads {
		for _, p := range paths {
			if wl.name == "queries" && strings.Contains(p.name, "named statements") {
				continue // no prepared statements in it
			}
			b.Run(wl.name+"/"+p.name, func(b *testing.B) {
				url := testPostgresURL(b)
				if p.extra != "" {
					url = strings.Replace(url, "?", "?"+p.extra+"&", 1)
				}
				if p.mode != "" {
					url = startPgBouncer(b, pgBouncerConfig{mode: p.mode, poolSize: 16}).url(b, "", p.extra)
				}
				opts := append([]Option{WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: p.maxOpen, MaxIdleConns: p.maxOpen})}, p.opts...)
				db, _ := openWith(b, url, opts...)
				w := newWorkload(b, db)
				w.round = wl.round
				b.ResetTimer()
				var took time.Duration
				for range b.N {
					took += w.runClients(64, wl.rounds)
				}
				b.StopTimer()
				ops, errs := w.totals()
				b.ReportMetric(float64(ops)/took.Seconds(), "ops/s")
				b.ReportMetric(float64(w.percentile(99).Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(w.percentile(50).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(errs), "errors")
				b.ReportMetric(float64(ops), "ops")
				for _, line := range w.errorLines() {
					b.Log(line)
				}
			})
		}
	}
}
