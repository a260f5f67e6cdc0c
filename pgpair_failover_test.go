package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failoverFault is what happens to the primary of a pair under load.
type failoverFault int

const (
	// faultKilled: pg_ctl stop -m immediate (a crash, as far as clients
	// can tell), then the standby is promoted.
	faultKilled failoverFault = iota
	// faultSilent: killed, and its address then accepts connections and
	// never answers (a lost machine or a partition, where connecting
	// hangs until the connect timeout), then the standby is promoted.
	faultSilent
	// faultFenced: the primary stays up but is made read-only
	// (default_transaction_read_only = on, reloaded), then the standby is
	// promoted: a switchover that fences the old primary.
	faultFenced
)

func (f failoverFault) String() string {
	return [...]string{"killed", "silent", "fenced"}[f]
}

// failoverRun is what writers saw during one failover.
type failoverRun struct {
	acked            int           // writes whose Tx returned nil
	lost             int           // acknowledged writes missing on the new primary
	unknown          int           // Tx calls that returned ErrCommitUnknown
	unknownCommitted int           // of those, how many did commit
	firstWrite       time.Duration // from the fault to the first write acknowledged by the new primary
	afterPromote     time.Duration // from pg_ctl promote returning to that write (negative: before)
	gap              time.Duration // from the last write acknowledged by the old primary to that write
	maxWait          time.Duration // the longest Tx call
	errs             map[string]int
	healthDuring     Health // right after the fault, before the promotion
	healthAfter      Health // once writes succeed again
	recovered        bool   // the new primary acknowledged a write
	standbyPort      int    // the new primary's port
	newConnWaits     []time.Duration
}

// ack is an acknowledged write: when, and which server's port said so.
type ack struct {
	at   time.Time
	port int
}

// failoverOptions shape a run.
type failoverOptions struct {
	sync     bool
	fault    failoverFault
	writers  int
	before   time.Duration // load before the fault
	after    time.Duration // load after the first acknowledged write
	newConns int           // after the load, Tx calls that each open a new connection (faultSilent)
	// recoveryWait bounds the wait for the first write after the fault
	// (default 30s); a run without one has recovered false.
	recoveryWait time.Duration
	opts         []Option
}

// runFailover starts a pair, opens it with a URL listing the primary
// first and target_session_attrs=read-write, runs writers through db.Tx,
// applies the fault and promotes the standby, and reports what the writers
// saw. Each writer inserts unique ids and pauses 10ms after an error, as a
// client retrying would.
func runFailover(t testing.TB, fo failoverOptions) failoverRun {
	t.Helper()
	pair := startPGPair(t, fo.sync)
	p, s := pair.primary, pair.standby
	url := pair.url(p, s, "read-write") + "&connect_timeout=2"
	db, _ := openWith(t, url, append([]Option{WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: 10, MaxIdleConns: 10})}, fo.opts...)...)
	_, err := db.Exec("CREATE TABLE failover_writes (id bigint PRIMARY KEY)")
	require.NoError(t, err)
	// A statement prepared before the failover, used after it.
	prepared, err := db.Prepare("INSERT INTO failover_writes VALUES ($1) RETURNING inet_server_port()")
	require.NoError(t, err)
	defer prepared.Close()

	run := failoverRun{errs: map[string]int{}, standbyPort: s.port}
	var (
		mu      sync.Mutex
		acked   = map[int64]ack{}
		unknown []int64
		nextID  atomic.Int64
		faultAt time.Time
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	write := func(ctx context.Context) error {
		id := nextID.Add(1)
		start := time.Now()
		var port int
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, "INSERT INTO failover_writes VALUES ($1) RETURNING inet_server_port()", id).Scan(&port)
		})
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		run.maxWait = max(run.maxWait, took)
		switch {
		case err == nil:
			acked[id] = ack{at: time.Now(), port: port}
		case errors.Is(err, ErrCommitUnknown):
			unknown = append(unknown, id)
		case ctx.Err() == nil:
			run.errs[failoverErrorKind(err)]++
		}
		return err
	}
	for range fo.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if write(ctx) != nil {
					sleepCtx(ctx, 10*time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(fo.before)

	mu.Lock()
	faultAt = time.Now()
	mu.Unlock()
	switch fo.fault {
	case faultKilled:
		p.stop("immediate")
	case faultSilent:
		p.stop("immediate")
		silentListenerOn(t, p.port)
	case faultFenced:
		p.exec("ALTER SYSTEM SET default_transaction_read_only = on")
		p.exec("SELECT pg_reload_conf()")
	}
	run.healthDuring = db.Health(context.Background())
	pair.promote()
	promotedAt := time.Now()

	// firstNew is the first write the new primary acknowledged, lastOld
	// the last one the old primary did.
	firstNew := func() (first, lastOld time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acked {
			switch {
			case a.port == s.port && (first.IsZero() || a.at.Before(first)):
				first = a.at
			case a.port == p.port && a.at.After(lastOld):
				lastOld = a.at
			}
		}
		return first, lastOld
	}
	firstAfter := func() time.Time {
		first, _ := firstNew()
		return first
	}
	if fo.recoveryWait == 0 {
		fo.recoveryWait = 30 * time.Second
	}
	for deadline := time.Now().Add(fo.recoveryWait); firstAfter().IsZero() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(fo.after)
	cancel()
	wg.Wait()
	if first, lastOld := firstNew(); !first.IsZero() {
		run.recovered = true
		run.firstWrite, run.afterPromote, run.gap = first.Sub(faultAt), first.Sub(promotedAt), first.Sub(lastOld)
	}
	run.healthAfter = db.Health(context.Background())

	if run.recovered {
		var port int
		require.NoError(t, prepared.QueryRow(-1).Scan(&port), "a statement prepared before the failover works after it")
		assert.Equal(t, s.port, port)
	}

	if fo.newConns > 0 && run.recovered {
		// Every call now opens a new connection, as a pool that grows or
		// replaces connections does.
		db.SetMaxIdleConns(0)
		for range fo.newConns {
			start := time.Now()
			require.NoError(t, write(context.Background()))
			run.newConnWaits = append(run.newConnWaits, time.Since(start))
		}
	}

	have := map[int64]bool{}
	for _, id := range s.queryInts("SELECT id FROM failover_writes") {
		have[id] = true
	}
	run.acked, run.unknown = len(acked), len(unknown)
	for id := range acked {
		if !have[id] {
			run.lost++
		}
	}
	for _, id := range unknown {
		if have[id] {
			run.unknownCommitted++
		}
	}
	return run
}

// failoverErrorKind names the kind of a writer's error, for the figures:
// a failed connection by what each host said, in the order tried.
func failoverErrorKind(err error) string {
	var pg *pgconn.PgError
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &ce):
		var hosts []string
		inner := ce.Unwrap()
		errs := []error{inner}
		if j, ok := inner.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			hosts = append(hosts, connectErrorKind(e))
		}
		return "connect: " + strings.Join(hosts, ", then ")
	case errors.As(err, &pg):
		return "SQLSTATE " + pg.Code + " (" + pg.Message + ")"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "conn closed"):
		return "connection lost mid-transaction"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// connectErrorKind names what one host did to a connection attempt.
func connectErrorKind(err error) string {
	var pg *pgconn.PgError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "reset during login"
	case isTimeout(err):
		return "timeout"
	case errors.As(err, &pg):
		return "SQLSTATE " + pg.Code
	case strings.Contains(err.Error(), "read only connection"): // pgx's ValidateConnect for read-write
		return "read-only (a standby, or fenced)"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// report logs a run's figures.
func (r failoverRun) report(t testing.TB, name string) {
	t.Helper()
	if !r.recovered {
		t.Logf("%s: no write succeeded after the fault", name)
	}
	t.Logf("%s: first write on the new primary %v after the fault (%v after promote returned; %v after the old primary's last); acked %d, lost %d, commit unknown %d (%d committed); longest Tx call %v",
		name, r.firstWrite.Round(time.Millisecond), r.afterPromote.Round(time.Millisecond), r.gap.Round(time.Millisecond), r.acked, r.lost, r.unknown, r.unknownCommitted, r.maxWait.Round(time.Millisecond))
	var kinds []string
	for k := range r.errs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("%s:   %4d × %s", name, r.errs[k], k)
	}
	if len(r.newConnWaits) > 0 {
		t.Logf("%s: new connections after the failover: %v", name, r.newConnWaits)
	}
}

// TestFailover: writers through db.Tx while the primary of a real pair
// dies and the standby is promoted. Writes succeed again without
// reopening; with synchronous replication no acknowledged write is lost;
// commits in flight report ErrCommitUnknown, never a false success or
// failure; Health says down, then up on the new primary.
func TestFailover(t *testing.T) {
	for _, sync := range []bool{true, false} {
		name := map[bool]string{true: "synchronous", false: "asynchronous"}[sync]
		t.Run(name, func(t *testing.T) {
			r := runFailover(t, failoverOptions{sync: sync, fault: faultKilled, writers: 8, before: 500 * time.Millisecond, after: time.Second})
			r.report(t, name)
			assert.Positive(t, r.acked)
			require.True(t, r.recovered, "writes succeed again without reopening")
			if sync {
				assert.Zero(t, r.lost, "synchronous replication loses no acknowledged write")
			}
			assert.Less(t, r.firstWrite, 10*time.Second, "writes succeed again without reopening")
			assert.Less(t, r.maxWait, 5*time.Second, "no caller waits long: a refused host and a read-only standby answer at once")
			assert.Equal(t, "down", r.healthDuring.Status)
			assert.Contains(t, r.healthDuring.Error, "read only", "Health names the standby that is not promoted yet")
			assert.NotContains(t, r.healthDuring.Error, "App-Pw")
			assert.Equal(t, "up", r.healthAfter.Status)
			assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", r.standbyPort), r.healthAfter.Server, "up on the new primary")
			for kind := range r.errs {
				assert.NotContains(t, kind, "App-Pw")
			}
		})
	}
}

// TestFailoverFencedPrimary: the old primary stays up, read-only, while
// the standby is promoted. Pooled connections to it would fail every
// write with 25006 until ConnMaxLifetime (30 min); the library closes each
// once its server reports read-only, so writes move to the new primary.
// withPGPlain shows the pool without that.
func TestFailoverFencedPrimary(t *testing.T) {
	t.Run("closes connections to a server turned read-only", func(t *testing.T) {
		r := runFailover(t, failoverOptions{fault: faultFenced, writers: 8, before: 300 * time.Millisecond, after: time.Second})
		r.report(t, "with the library's hooks")
		require.True(t, r.recovered)
		assert.LessOrEqual(t, r.errs["SQLSTATE 25006 (cannot execute INSERT in a read-only transaction)"], 10+8,
			"at most one failed write per pooled connection (10), plus writes racing the promotion")
		assert.Less(t, r.firstWrite, 5*time.Second)
		assert.Equal(t, "up", r.healthAfter.Status)
		assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", r.standbyPort), r.healthAfter.Server, "up on the new primary")
	})
	t.Run("pgx stdlib alone keeps them", func(t *testing.T) {
		r := runFailover(t, failoverOptions{fault: faultFenced, writers: 8, before: 300 * time.Millisecond, recoveryWait: 2 * time.Second, opts: []Option{withPGPlain()}})
		r.report(t, "without")
		assert.False(t, r.recovered, "no write reaches the new primary: every pooled connection is to the fenced one")
		assert.Greater(t, r.errs["SQLSTATE 25006 (cannot execute INSERT in a read-only transaction)"], 100, "writes keep failing on the fenced primary")
	})
}

// TestFailoverSilentOldPrimary: the old primary's address hangs after the
// failover (connecting waits out the connect timeout). The first new
// connections wait their share of the connect timeout on it; later ones
// go straight to the host the last connection reached. withPGPlain shows
// every new connection waiting.
func TestFailoverSilentOldPrimary(t *testing.T) {
	const share = time.Second // connect_timeout=2 over two hosts
	t.Run("later connections try the new primary first", func(t *testing.T) {
		r := runFailover(t, failoverOptions{fault: faultSilent, writers: 8, before: 300 * time.Millisecond, after: 500 * time.Millisecond, newConns: 5})
		r.report(t, "with the library's hooks")
		require.True(t, r.recovered)
		assert.GreaterOrEqual(t, r.firstWrite, share, "the first connections wait out the silent host's share")
		for i, d := range r.newConnWaits {
			assert.Lessf(t, d, share/2, "new connection %d goes to the new primary first", i)
		}
	})
	t.Run("pgx stdlib alone waits on every new connection", func(t *testing.T) {
		r := runFailover(t, failoverOptions{fault: faultSilent, writers: 8, before: 300 * time.Millisecond, after: 500 * time.Millisecond, newConns: 3, opts: []Option{withPGPlain()}})
		r.report(t, "without")
		require.True(t, r.recovered)
		for i, d := range r.newConnWaits {
			assert.GreaterOrEqualf(t, d, share*9/10, "new connection %d waits on the silent host first", i)
		}
	})
}

// TestOpenDuringFailover: a service that starts while the primary is dead
// and the standby not yet promoted waits for the promotion with
// WithPrimaryWait (a refused host and a read-only standby are transient),
// then opens the new primary.
func TestOpenDuringFailover(t *testing.T) {
	pair := startPGPair(t, false)
	p, s := pair.primary, pair.standby
	url := pair.url(p, s, "read-write")
	p.stop("immediate")
	type result struct {
		db  *DB
		err error
	}
	done := make(chan result, 1)
	isolatedDirs(t)
	go func() {
		db, err := Open(context.Background(), env("DATABASE_URL", url), withDataDir(""),
			WithStrategy(PrimaryOnly), WithPrimaryWait(30*time.Second))
		done <- result{db, err}
	}()
	time.Sleep(time.Second) // Open is retrying: nothing is writable
	pair.promote()
	r := <-done
	require.NoError(t, r.err)
	defer r.db.Close()
	assert.GreaterOrEqual(t, r.db.Attempts()[0].Tries, 2, "retried until the promotion")
	h := r.db.Health(context.Background())
	assert.Equal(t, "up", h.Status)
	assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", s.port), h.Server)
}
