package dbfallback

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkFailover runs the failovers of TestFailover,
// TestFailoverFencedPrimary and TestFailoverSilentOldPrimary with longer
// load (2s before the fault, 2s after the first write on the new
// primary), each on a new pair. Run with -benchtime 1x -count 5: each run
// is one failover, reporting the time from the fault to the first write
// the new primary acknowledged, acknowledged writes lost, Tx calls that
// returned ErrCommitUnknown (and how many of those committed), the
// longest Tx call, the errors callers saw, and where it applies the
// median time of a new connection after the failover.
func BenchmarkFailover(b *testing.B) {
	cases := []struct {
		name string
		fo   failoverOptions
	}{
		{"killed, synchronous", failoverOptions{sync: true, fault: faultKilled}},
		{"killed, asynchronous", failoverOptions{fault: faultKilled}},
		{"fenced", failoverOptions{fault: faultFenced}},
		{"fenced, pgx stdlib alone", failoverOptions{fault: faultFenced, recoveryWait: 5 * time.Second, opts: []Option{withPGPlain()}}},
		{"silent", failoverOptions{fault: faultSilent, newConns: 10}},
		{"silent, pgx stdlib alone", failoverOptions{fault: faultSilent, newConns: 10, opts: []Option{withPGPlain()}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			fo := c.fo
			fo.writers, fo.before, fo.after = 8, 2*time.Second, 2*time.Second
			for range b.N {
				r := runFailover(b, fo)
				r.report(b, c.name)
				if r.recovered {
					b.ReportMetric(float64(r.firstWrite.Microseconds())/1000, "first-write-ms")
				} else {
					b.ReportMetric(-1, "first-write-ms")
				}
				b.ReportMetric(float64(r.acked), "acked")
				b.ReportMetric(float64(r.lost), "lost")
				b.ReportMetric(float64(r.unknown), "unknown")
				b.ReportMetric(float64(r.unknownCommitted), "unknown-committed")
				b.ReportMetric(float64(r.maxWait.Microseconds())/1000, "max-wait-ms")
				errs := 0
				for _, n := range r.errs {
					errs += n
				}
				b.ReportMetric(float64(errs), "errors")
				if len(r.newConnWaits) > 0 {
					d := append([]time.Duration(nil), r.newConnWaits...)
					sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
					b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "newconn-ms")
				}
			}
		})
	}
}
