package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pgPair is a primary and a streaming standby made from it with
// pg_basebackup -R: two throwaway clusters on free loopback ports, never
// the cluster the other tests share. With sync the primary waits for the
// standby to flush every commit (synchronous_standby_names = '*',
// synchronous_commit = on) before it acknowledges it.
type pgPair struct {
	primary, standby *pgServer
	sync             bool
}

// startPGPair starts a primary, creates the role app on it (see appURL),
// copies it into a standby that streams from it, and waits until the
// standby streams (synchronously, with sync). Both stop when the test
// ends.
func startPGPair(t testing.TB, sync bool) *pgPair {
	t.Helper()
	p := &pgPair{primary: startPGServer(t), sync: sync}
	appURL(t, p.primary)
	p.standby = newPGServer(t, p.primary.bin)
	p.standby.run("pg_basebackup", "-D", p.standby.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
		"-h", "127.0.0.1", "-p", fmt.Sprint(p.primary.port), "-U", "postgres")
	p.standby.start()
	t.Cleanup(func() { p.standby.stop("immediate") })
	if sync {
		// Set on the primary only, after the copy: a promoted standby that
		// inherited it would wait forever for a standby of its own.
		p.primary.exec("ALTER SYSTEM SET synchronous_standby_names = '*'")
		p.primary.exec("SELECT pg_reload_conf()")
	}
	state := "async"
	if sync {
		state = "sync"
	}
	require.Eventually(t, func() bool {
		return p.primary.queryInt(fmt.Sprintf("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = '%s'", state)) == 1
	}, 30*time.Second, 50*time.Millisecond, "the standby streams (%s)", state)
	return p
}

// url is a URL naming both servers, first and second in that order, for
// the role app, with target_session_attrs set to attrs ("" for none).
func (p *pgPair) url(first, second *pgServer, attrs string) string {
	u := fmt.Sprintf("postgres://app:App-Pw%%231@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable", first.port, second.port)
	if attrs != "" {
		u += "&target_session_attrs=" + attrs
	}
	return u
}

// promote promotes the standby and waits until it accepts writes.
func (p *pgPair) promote() {
	p.standby.tb.Helper()
	p.standby.run("pg_ctl", "-D", p.standby.dataDir, "-w", "-t", "30", "promote")
}

// queryInt runs a query returning one integer as the superuser.
func (s *pgServer) queryInt(query string) int64 {
	s.tb.Helper()
	db, err := sql.Open("pgx", s.url())
	require.NoError(s.tb, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	require.NoError(s.tb, db.QueryRowContext(ctx, query).Scan(&n))
	return n
}

// queryInts runs a query returning one integer column as the superuser.
func (s *pgServer) queryInts(query string) []int64 {
	s.tb.Helper()
	db, err := sql.Open("pgx", s.url())
	require.NoError(s.tb, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, query)
	require.NoError(s.tb, err)
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		require.NoError(s.tb, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(s.tb, rows.Err())
	return out
}
