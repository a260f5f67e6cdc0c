package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_scale_test.go: hostile cases against the scale path (a real
// PgBouncer, a real primary/standby pair) that the figures' tests do not
// cover: a caller's deadline while a pooler's server is down, and a
// failover while a request's Session holds a connection. Bounds are
// generous (a loaded 2-core machine under -race); what is asserted is that
// nothing waits for PgBouncer's own timeouts (60s, 120s) or for ever.

// TestAttackPoolerServerDownDeadline: PgBouncer up, its server down, and a
// caller with a deadline shorter than anything involved (the connect
// timeout, PgBouncer's client_login_timeout and query_wait_timeout).
func TestAttackPoolerServerDownDeadline(t *testing.T) {
	srv := startPGServer(t)
	up := appURL(t, srv)

	t.Run("Open under a deadline falls back before it", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up})
		srv.stop("fast")
		defer srv.start()
		isolatedDirs(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		db, err := Open(ctx, env("DATABASE_URL", b.url(t, up, "pgbouncer=true")), withDataDir(""), WithConnectTimeout(30*time.Second))
		took := time.Since(start)
		require.NoError(t, err, "the fallback is still there")
		defer db.Close()
		assert.Equal(t, SQLite, db.Dialect())
		assert.Less(t, took, 3*time.Second, "the caller's 1s, not the 30s connect timeout or PgBouncer's 60s")
		a := db.Attempts()[0]
		assert.False(t, IsPermanent(a.Err), "%v", a.Err)
		assert.NotContains(t, db.Reason(), "App-Pw")
	})

	t.Run("PrimaryOnly under a deadline fails before it", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up})
		srv.stop("fast")
		defer srv.start()
		isolatedDirs(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		db, err := Open(ctx, env("DATABASE_URL", b.url(t, up, "pgbouncer=true")), withDataDir(""),
			WithStrategy(PrimaryOnly), WithPrimaryWait(time.Minute))
		took := time.Since(start)
		assert.Nil(t, db)
		require.Error(t, err)
		assert.Less(t, took, 3*time.Second, "the caller's 1s, not the minute of WithPrimaryWait")
		assert.NotContains(t, err.Error(), "App-Pw")
	})

	t.Run("Health and queries under a deadline on an open DB", func(t *testing.T) {
		b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 4, upstream: up})
		db, _ := openWith(t, b.url(t, up, "pgbouncer=true"), WithStrategy(PrimaryOnly))
		require.NoError(t, db.Ping())
		srv.stop("fast")
		restart := sync.OnceFunc(srv.start)
		defer restart()

		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		start := time.Now()
		h := db.Health(ctx)
		cancel()
		assert.Less(t, time.Since(start), 3*time.Second)
		assert.Equal(t, "down", h.Status)
		assert.Contains(t, h.Error, "no answer within")
		assert.Contains(t, h.Error, "connection pooler")
		assert.NotContains(t, h.Error, "App-Pw")

		for _, q := range []struct {
			name string
			run  func(ctx context.Context) error
		}{
			{"query", func(ctx context.Context) error {
				var n int
				return db.QueryRowContext(ctx, "SELECT $1::int", 1).Scan(&n)
			}},
			{"Tx", func(ctx context.Context) error {
				return db.Tx(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, "SELECT 1")
					return err
				})
			}},
			{"prepared", func(ctx context.Context) error {
				st, err := db.PrepareContext(ctx, "SELECT $1::int")
				if err != nil {
					return err
				}
				defer st.Close()
				var n int
				return st.QueryRowContext(ctx, 1).Scan(&n)
			}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			start := time.Now()
			err := q.run(ctx)
			cancel()
			assert.Errorf(t, err, "%s with the server down", q.name)
			assert.Lessf(t, time.Since(start), 3*time.Second, "%s: the caller's deadline, not query_wait_timeout", q.name)
		}

		restart()
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var n int
			return db.QueryRowContext(ctx, "SELECT $1::int", 7).Scan(&n) == nil && n == 7
		}, 20*time.Second, 100*time.Millisecond, "the same DB serves again once the server is back")
	})
}

// TestAttackFailoverSessionHoldsConnection: two requests hold connections
// on the primary when it fails over: one has a session transaction open
// (its Session holds the transaction's connection, nothing pinned), the
// other pinned a connection with Session.Conn. The transaction does not
// survive the primary (killed: its commit fails); the first request's next
// session write, and db.Tx in either request, reach the new primary
// without restarting anything. The pinned connection stays what it was
// for the rest of its request (a handler pins one for its session state,
// which a new server would not have): dead with a killed primary, or
// failing writes with 25006 on a fenced one, since the library checks a
// connection only when the pool hands it out. Once its request ends it is
// closed, and nothing stays held.
func TestAttackFailoverSessionHoldsConnection(t *testing.T) {
	for _, fault := range []failoverFault{faultKilled, faultFenced} {
		t.Run(fault.String(), func(t *testing.T) {
			pair := startPGPair(t, false)
			p, s := pair.primary, pair.standby
			db, _ := openWith(t, pair.url(p, s, "read-write")+"&connect_timeout=2", WithStrategy(PrimaryOnly),
				WithPool(PoolConfig{MaxOpenConns: 4, MaxIdleConns: 4}))
			_, err := db.Exec("CREATE TABLE held (id bigint PRIMARY KEY, port int)")
			require.NoError(t, err)

			// writeRetrying runs write until it succeeds, as a handler that
			// retries would, and returns the port that took it (0: never).
			writeRetrying := func(write func() (int, error)) (port int, failures []string) {
				for range 20 {
					port, err := write()
					if err == nil {
						return port, failures
					}
					failures = append(failures, failoverErrorKind(err))
					time.Sleep(50 * time.Millisecond)
				}
				return 0, failures
			}
			insert := func(q interface {
				QueryRowContext(context.Context, string, ...any) *sql.Row
			}, ctx context.Context, id int) (int, error) {
				var port int
				err := q.QueryRowContext(ctx, "INSERT INTO held VALUES ($1, inet_server_port()) ON CONFLICT (id) DO UPDATE SET port = excluded.port RETURNING port", id).Scan(&port)
				return port, err
			}

			type seen struct {
				before               int   // the port the held connection reached
				commitErr, pinnedErr error // the held transaction's commit; the pinned connection's write after the failover
				sessionPort, txPort  int
				sessionFail, txFail  []string
			}
			failedOver := make(chan struct{})
			request := func(pin bool, got *seen, held chan<- struct{}) http.Handler {
				return Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ctx := r.Context()
					sess, err := SessionFrom(ctx)
					if err != nil {
						t.Error(err)
						close(held)
						return
					}
					var tx *sql.Tx
					var conn *sql.Conn
					if pin {
						conn, err = sess.Conn(ctx)
						if err == nil {
							err = conn.QueryRowContext(ctx, "SELECT inet_server_port()").Scan(&got.before)
						}
					} else {
						tx, err = sess.BeginTx(ctx, nil)
						if err == nil {
							got.before, err = insert(tx, ctx, 1)
						}
					}
					close(held)
					if err != nil {
						t.Error(err)
						return
					}
					<-failedOver
					if pin {
						_, got.pinnedErr = insert(conn, ctx, 2)
					} else {
						got.commitErr = tx.Commit()
						got.sessionPort, got.sessionFail = writeRetrying(func() (int, error) { return insert(sess, ctx, 3) })
					}
					got.txPort, got.txFail = writeRetrying(func() (int, error) {
						var port int
						err := db.Tx(ctx, func(tx *sql.Tx) error {
							var err error
							port, err = insert(tx, ctx, 4)
							return err
						})
						return port, err
					})
				}))
			}
			var txReq, pinReq seen
			served := make(chan bool, 2)
			for _, rq := range []struct {
				pin bool
				got *seen
			}{{false, &txReq}, {true, &pinReq}} {
				held := make(chan struct{})
				h := request(rq.pin, rq.got, held)
				go func() {
					returned, _ := atkServe(t, h, 60*time.Second)
					served <- returned
				}()
				select {
				case <-held:
				case <-time.After(30 * time.Second):
					t.Fatal("a handler never held its connection")
				}
			}
			switch fault {
			case faultKilled:
				p.stop("immediate")
			case faultFenced:
				p.exec("ALTER SYSTEM SET default_transaction_read_only = on")
				p.exec("SELECT pg_reload_conf()")
			}
			pair.promote()
			close(failedOver)
			require.True(t, <-served, "the requests end")
			require.True(t, <-served, "the requests end")

			t.Logf("%s: session transaction: commit %v; next session write after %d failures %v; db.Tx after %d failures %v",
				fault, txReq.commitErr, len(txReq.sessionFail), txReq.sessionFail, len(txReq.txFail), txReq.txFail)
			t.Logf("%s: pinned connection: write %v; db.Tx after %d failures %v", fault, pinReq.pinnedErr, len(pinReq.txFail), pinReq.txFail)
			assert.Equal(t, p.port, txReq.before)
			assert.Equal(t, p.port, pinReq.before)
			assert.Equal(t, s.port, txReq.sessionPort, "the session's next write reaches the new primary")
			assert.Equal(t, s.port, txReq.txPort, "db.Tx reaches the new primary")
			assert.Equal(t, s.port, pinReq.txPort, "db.Tx reaches the new primary from the request that pinned a connection")
			assert.LessOrEqual(t, len(txReq.sessionFail), 4, "at most one failure per pooled connection")
			switch fault {
			case faultKilled:
				assert.Error(t, txReq.commitErr, "the transaction held on the dead primary does not commit")
				assert.Error(t, pinReq.pinnedErr, "the pinned connection died with its server")
			case faultFenced:
				// The old primary is up: the transaction begun before the
				// fence commits there, and what the standby had not received
				// is lost with it, as with any asynchronous pair.
				assert.ErrorContains(t, pinReq.pinnedErr, "25006", "the pinned connection stays on the fenced primary for its request")
			}

			require.Eventually(t, func() bool { return db.Stats().InUse == 0 }, 10*time.Second, 10*time.Millisecond,
				"nothing held after the requests")
			// Later requests write on the new primary: the pinned
			// connection was closed when it was given back (fenced: its
			// server reports read-only; killed: it is dead).
			for i := range db.Stats().MaxOpenConnections + 1 {
				port, err := insert(db, context.Background(), 10+i)
				if err != nil && fault == faultKilled && strings.Contains(failoverErrorKind(err), "connection lost") {
					continue // an idle connection to the dead primary, noticed now
				}
				require.NoError(t, err, "write %d after the requests", i)
				assert.Equal(t, s.port, port)
			}
			h := db.Health(context.Background())
			assert.Equal(t, "up", h.Status)
			assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", s.port), h.Server)
		})
	}
}
