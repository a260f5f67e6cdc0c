package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_session_test.go attacks Middleware and Session from outside:
// lazy connections, cleanup at the end of the request on every path, and
// nothing reaching the database afterwards.

// Whatever a handler leaves open on the connection Session.Conn pinned
// (rows, a transaction begun on it) must not keep the request from ending.
func TestAttackSessionPinnedConnLeftOpen(t *testing.T) {
	leave := []struct {
		name string
		do   func(ctx context.Context, conn *sql.Conn, table string) error
	}{
		{"rows", func(ctx context.Context, conn *sql.Conn, table string) error {
			_, err := conn.QueryContext(ctx, "SELECT n FROM "+table)
			return err
		}},
		{"row not scanned", func(ctx context.Context, conn *sql.Conn, table string) error {
			s, err := SessionFrom(ctx)
			if err == nil {
				s.QueryRowContext(ctx, "SELECT n FROM "+table) // through the session, on conn
			}
			return err
		}},
		{"tx", func(ctx context.Context, conn *sql.Conn, table string) error {
			tx, err := conn.BeginTx(ctx, nil)
			if err == nil {
				_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = 7 WHERE id = 1")
			}
			return err
		}},
	}
	for _, d := range atkDialects() {
		for _, l := range leave {
			t.Run(d.name+"/"+l.name, func(t *testing.T) {
				db := d.open(t, PoolConfig{})
				table := atkCounter(t, db)
				var herr error
				h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s, err := SessionFrom(r.Context())
					if err == nil {
						var conn *sql.Conn
						if conn, err = s.Conn(r.Context()); err == nil {
							err = l.do(r.Context(), conn, table)
						}
					}
					herr = err
				}))
				returned, took := atkServe(t, h, 3*time.Second)
				require.NoError(t, herr)
				assert.True(t, returned, "the request ended (took %s)", took)
				assert.Equal(t, 0, atkCount(t, db, table), "the transaction was rolled back")
				assert.Eventually(t, func() bool { return db.Stats().InUse == 0 }, 2*time.Second, 10*time.Millisecond)
			})
		}
	}
}

// Rows a goroutine still reads when the request ends must not look like a
// complete result: Err reports that they were cut short.
func TestAttackSessionRowsCutShortSay(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			ctx := context.Background()
			for i := 2; i <= 50; i++ {
				_, err := db.ExecContext(ctx, "INSERT INTO "+table+" (id, n) VALUES ($1, 0)", i)
				require.NoError(t, err)
			}
			read := make(chan struct{})
			end := make(chan struct{})
			var seen int
			var rowsErr error
			var wg sync.WaitGroup
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s, _ := SessionFrom(r.Context())
				rows, err := s.QueryContext(r.Context(), "SELECT id FROM "+table+" ORDER BY id")
				if err != nil {
					rowsErr = err
					return
				}
				wg.Add(1)
				go func() { // outlives the request
					defer wg.Done()
					defer rows.Close()
					for rows.Next() {
						seen++
						if seen == 1 {
							close(read)
							<-end
						}
					}
					rowsErr = rows.Err()
				}()
				<-read
			}))
			returned, _ := atkServe(t, h, 5*time.Second)
			require.True(t, returned)
			close(end)
			wg.Wait()
			if seen < 50 {
				assert.Error(t, rowsErr, "rows cut short after %d of 50 say so", seen)
			}
		})
	}
}

// After the request, every method fails with ErrSessionDone and nothing
// reaches the database, and what was obtained during the request (a
// statement, a pinned connection, a transaction) is unusable too.
func TestAttackSessionAfterRequest(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			var (
				s    *Session
				st   *sql.Stmt
				conn *sql.Conn
				tx   *sql.Tx
				rctx context.Context
			)
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var err error
				s, err = SessionFrom(r.Context())
				require.NoError(t, err)
				rctx = r.Context()
				st, err = s.PrepareContext(r.Context(), "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
				require.NoError(t, err)
				tx, err = s.BeginTx(r.Context(), &sql.TxOptions{ReadOnly: true})
				require.NoError(t, err)
				conn, err = s.Conn(r.Context())
				require.NoError(t, err)
			}))
			returned, _ := atkServe(t, h, 5*time.Second)
			require.True(t, returned)
			bg := context.Background()
			_, err := st.ExecContext(bg)
			assert.Error(t, err, "statement after the request")
			_, err = conn.ExecContext(bg, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
			assert.Error(t, err, "pinned connection after the request")
			_, err = tx.ExecContext(bg, "SELECT 1")
			assert.ErrorIs(t, err, sql.ErrTxDone)
			_, err = s.ExecContext(bg, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
			assert.ErrorIs(t, err, ErrSessionDone)
			_, err = s.ExecContext(rctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
			assert.ErrorIs(t, err, ErrSessionDone)
			var n int
			assert.ErrorIs(t, s.QueryRowContext(bg, "UPDATE "+table+" SET n = n + 1 WHERE id = 1 RETURNING n").Scan(&n), ErrSessionDone)
			_, err = s.QueryContext(bg, "UPDATE "+table+" SET n = n + 1 WHERE id = 1 RETURNING n")
			assert.ErrorIs(t, err, ErrSessionDone)
			_, err = s.PrepareContext(bg, "SELECT 1")
			assert.ErrorIs(t, err, ErrSessionDone)
			_, err = s.BeginTx(bg, nil)
			assert.ErrorIs(t, err, ErrSessionDone)
			_, err = s.Conn(bg)
			assert.ErrorIs(t, err, ErrSessionDone)
			// db.Tx with the ended request's context is not a session method:
			// it is the pool, with a context that may still be live.
			assert.Equal(t, 0, atkCount(t, db, table), "nothing reached the database")
			assert.Equal(t, 0, db.Stats().InUse)
		})
	}
}

// Handlers that mix session statements, session rows and pool queries, at
// as many concurrent requests as the pool has connections (1 and 2), all
// finish well within their deadline.
func TestAttackSessionSmallPools(t *testing.T) {
	for _, d := range atkDialects() {
		for _, size := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/pool%d", d.name, size), func(t *testing.T) {
				db := d.open(t, PoolConfig{MaxOpenConns: size, MaxIdleConns: size})
				table := atkCounter(t, db)
				h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
					defer cancel()
					s, _ := SessionFrom(ctx)
					fail := func(err error) { http.Error(w, err.Error(), 500) }
					var n int
					if err := s.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
						fail(err)
						return
					}
					if _, err := s.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1"); err != nil {
						fail(err)
						return
					}
					if err := db.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
						fail(err)
						return
					}
					rows, err := s.QueryContext(ctx, "SELECT id FROM "+table)
					if err != nil {
						fail(err)
						return
					}
					for rows.Next() {
					}
					rows.Close()
					if err := db.Tx(ctx, func(tx *sql.Tx) error { return atkIncrement(ctx, tx, table) }); err != nil {
						fail(err)
						return
					}
				}))
				srv := httptest.NewServer(h)
				defer srv.Close()
				const requests = 6
				var wg sync.WaitGroup
				codes := make(chan int, requests*size)
				for range requests * size {
					wg.Add(1)
					go func() {
						defer wg.Done()
						resp, err := srv.Client().Get(srv.URL)
						if err != nil {
							codes <- -1
							return
						}
						resp.Body.Close()
						codes <- resp.StatusCode
					}()
				}
				wg.Wait()
				close(codes)
				for c := range codes {
					assert.Equal(t, http.StatusOK, c)
				}
				assert.Equal(t, 2*requests*size, atkCount(t, db, table))
			})
		}
	}
}

// A client that goes away mid-request, and a handler that panics, both
// with a session transaction open and rows open: rolled back, closed, no
// connection held.
func TestAttackSessionAbandonedRequests(t *testing.T) {
	ways := []struct {
		name string
		end  func(cancel context.CancelFunc)
	}{
		{"client gone", func(cancel context.CancelFunc) { cancel(); time.Sleep(50 * time.Millisecond) }},
		{"panic", func(context.CancelFunc) { panic("handler bug") }},
		{"abort", func(context.CancelFunc) { panic(http.ErrAbortHandler) }},
	}
	for _, d := range atkDialects() {
		for _, way := range ways {
			t.Run(d.name+"/"+way.name, func(t *testing.T) {
				db := d.open(t, PoolConfig{})
				table := atkCounter(t, db)
				var cancel context.CancelFunc
				h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s, _ := SessionFrom(r.Context())
					tx, err := s.BeginTx(r.Context(), nil)
					require.NoError(t, err)
					_, err = tx.ExecContext(r.Context(), "UPDATE "+table+" SET n = 5 WHERE id = 1")
					require.NoError(t, err)
					_, err = s.QueryContext(r.Context(), "SELECT id FROM "+table)
					require.NoError(t, err)
					way.end(cancel)
				}))
				ctx, c := context.WithCancel(context.Background())
				cancel = c
				defer c()
				r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
				func() {
					defer func() { recover() }()
					h.ServeHTTP(httptest.NewRecorder(), r)
				}()
				assert.Equal(t, 0, atkCount(t, db, table))
				assert.Eventually(t, func() bool { return db.Stats().InUse == 0 }, 2*time.Second, 10*time.Millisecond)
				wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer wcancel()
				_, err := db.ExecContext(wctx, "UPDATE "+table+" SET n = 1 WHERE id = 1")
				assert.NoError(t, err, "the write lock and row locks were released")
			})
		}
	}
}

// A goroutine that outlives its request, writing through the session in a
// loop: once the request has ended, nothing more reaches the database, and
// every write that reported success is there.
func TestAttackSessionOutlivingWriter(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			var ok, attempts int
			var last error
			var sess *Session
			stopped := make(chan struct{})
			started := make(chan struct{})
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s, _ := SessionFrom(r.Context())
				sess = s
				go func() {
					defer close(stopped)
					for i := 0; ; i++ {
						attempts++
						_, err := s.ExecContext(context.Background(), "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
						if err != nil {
							last = err
							return
						}
						ok++
						if i == 2 {
							close(started)
						}
					}
				}()
				<-started
			}))
			returned, _ := atkServe(t, h, 5*time.Second)
			require.True(t, returned)
			<-stopped
			t.Logf("%d writes, then: %v", ok, last)
			// The write under way when the request ended is cancelled;
			// any later one never starts.
			if !errors.Is(last, ErrSessionDone) {
				assert.ErrorIs(t, last, context.Canceled)
			}
			_, err := sess.ExecContext(context.Background(), "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
			assert.ErrorIs(t, err, ErrSessionDone)
			// On PostgreSQL the cancelled write reaches the server's end
			// asynchronously (the cancel request races it): let the count
			// settle, then check that nothing arrives afterwards.
			n := atkCount(t, db, table)
			for still, deadline := 0, time.Now().Add(3*time.Second); still < 3 && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				if m := atkCount(t, db, table); m != n {
					n, still = m, 0
				} else {
					still++
				}
			}
			time.Sleep(50 * time.Millisecond)
			assert.Equal(t, n, atkCount(t, db, table), "nothing arrived afterwards")
			// The write under way when the request ended may have landed
			// though it reported the end of the request: at most that one.
			assert.GreaterOrEqual(t, n, ok, "every reported write landed")
			assert.LessOrEqual(t, n, ok+1, "and at most the one under way besides")
		})
	}
}

// sqlc's DBTX, as generated code declares it.
type atkDBTX interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

var (
	_ atkDBTX = (*Session)(nil)
	_ atkDBTX = (*DB)(nil)
	_ atkDBTX = (*sql.Tx)(nil)
)

// With a pinned connection, SQLite's last_insert_rowid() and a session
// temporary table see the statements before them, on both dialects'
// equivalents; a write through the session in a transaction's request on
// the pinned connection runs inside that transaction on both.
func TestAttackSessionPinnedSharesState(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{})
			table := atkCounter(t, db)
			var herr error
			var got int
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				s, _ := SessionFrom(ctx)
				if _, herr = s.Conn(ctx); herr != nil {
					return
				}
				if _, herr = s.ExecContext(ctx, "CREATE TEMPORARY TABLE atk_tmp (x INTEGER)"); herr != nil {
					return
				}
				if _, herr = s.ExecContext(ctx, "INSERT INTO atk_tmp (x) VALUES (41)"); herr != nil {
					return
				}
				herr = s.QueryRowContext(ctx, "SELECT x + 1 FROM atk_tmp").Scan(&got)
			}))
			returned, _ := atkServe(t, h, 5*time.Second)
			require.True(t, returned)
			require.NoError(t, herr)
			assert.Equal(t, 42, got)
			_ = table
		})
	}
}

// Goroutines of one request hammer every session method while the
// handler returns: no race, no panic, and afterwards no connection held
// and only ErrSessionDone or a cancelled call.
func TestAttackSessionConcurrentUseAtEnd(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{MaxOpenConns: 4})
			table := atkCounter(t, db)
			var wg sync.WaitGroup
			errs := make(chan error, 1024)
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s, _ := SessionFrom(r.Context())
				ctx := r.Context()
				calls := []func() error{
					func() error { _, err := s.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1"); return err },
					func() error {
						rows, err := s.QueryContext(ctx, "SELECT n FROM "+table)
						if err != nil {
							return err
						}
						for rows.Next() {
						}
						return errors.Join(rows.Err(), rows.Close())
					},
					func() error { var n int; return s.QueryRowContext(ctx, "SELECT n FROM "+table).Scan(&n) },
					func() error {
						st, err := s.PrepareContext(ctx, "SELECT n FROM "+table)
						if err != nil {
							return err
						}
						var n int
						return st.QueryRowContext(ctx).Scan(&n)
					},
					func() error {
						tx, err := s.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
						if err != nil {
							return err
						}
						var n int
						return errors.Join(tx.QueryRowContext(ctx, "SELECT n FROM "+table).Scan(&n), tx.Commit())
					},
				}
				for i := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; ; j++ {
							if err := calls[(i+j)%len(calls)](); err != nil {
								select {
								case errs <- err:
								default:
								}
								if errors.Is(err, ErrSessionDone) {
									return
								}
							}
						}
					}()
				}
				time.Sleep(100 * time.Millisecond)
			}))
			returned, _ := atkServe(t, h, 5*time.Second)
			require.True(t, returned)
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, ErrSessionDone) && !errors.Is(err, context.Canceled) && !errors.Is(err, sql.ErrTxDone) && !errors.Is(err, sql.ErrConnDone) && !strings.Contains(err.Error(), "closed") {
					t.Errorf("unexpected: %v", err)
				}
			}
			assert.Eventually(t, func() bool { return db.Stats().InUse == 0 }, 2*time.Second, 10*time.Millisecond)
		})
	}
}
