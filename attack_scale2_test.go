package dbfallback

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An outside attack on the scale path (issue 14): what a service meets
// behind PgBouncer and a multi-host URL. One PgBouncer or one pair per
// test.

// atkBouncerOpen opens raw through PgBouncer, PrimaryOnly, with a 2s
// connect timeout; the DB is closed when the test ends.
func atkBouncerOpen(t *testing.T, raw string, opts ...Option) (*DB, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithURL(raw), WithLookupEnv(atkNoEnv), WithStrategy(PrimaryOnly), WithConnectTimeout(2 * time.Second)}, opts...)
	db, err := Open(ctx, opts...)
	if err == nil {
		t.Cleanup(func() { db.Close() })
	}
	return db, err
}

// TestAttackScale2PgBouncerOwnErrors: PgBouncer's own errors all carry
// SQLSTATE 08P01; IsPermanent must still tell a wrong password (never
// helped by retrying) from a full pool (helped by waiting).
func TestAttackScale2PgBouncerOwnErrors(t *testing.T) {
	upstream := testPostgresURL(t)
	b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 2,
		settings: []string{"max_client_conn = 2"}})
	up, err := Validate(upstream)
	require.NoError(t, err)
	const wrong = "Wr0ng-Pw#x9q"
	bad := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&pgbouncer=true",
		escapeComponent(up.User), escapeComponent(wrong), b.addr(), escapeComponent(up.Database))

	t.Run("wrong password is permanent", func(t *testing.T) {
		start := time.Now()
		_, err := atkBouncerOpen(t, bad, WithPrimaryWait(5*time.Second))
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrNoDatabase)
		assert.True(t, IsPermanent(err), "a wrong password through PgBouncer is permanent: %v", err)
		assert.Less(t, time.Since(start), 3*time.Second, "a permanent failure is not retried for WithPrimaryWait")
		assertNoFragment(t, err.Error(), wrong, "Open's error")
	})

	t.Run("pool full is transient", func(t *testing.T) {
		good := b.url(t, upstream, "pgbouncer=true")
		// Two clients hold PgBouncer's max_client_conn = 2.
		var held []*sql.Conn
		db, err := atkBouncerOpen(t, good)
		require.NoError(t, err)
		for range 2 {
			c, err := db.Conn(context.Background())
			require.NoError(t, err)
			require.NoError(t, c.PingContext(context.Background()))
			held = append(held, c)
		}
		_, err = atkBouncerOpen(t, good)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no more connections allowed")
		assert.False(t, IsPermanent(err), "a full pooler is transient: %v", err)
		for _, c := range held {
			c.Close()
		}
	})
}

// TestAttackScale2PoolerStatements runs what a service sends through
// PgBouncer in transaction mode with pgbouncer=true and one server
// connection shared by every client: prepared statements reused across
// transactions and clients, 0 and 65,535 arguments (and one too many),
// COPY through pgx, and session state (SET) on a pinned connection.
func TestAttackScale2PoolerStatements(t *testing.T) {
	upstream := testPostgresURL(t)
	b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 1})
	db, err := atkBouncerOpen(t, b.url(t, upstream, "pgbouncer=true"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	table := fmt.Sprintf("atk_scale2_%d", time.Now().UnixNano())
	_, err = db.ExecContext(ctx, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, v text)")
	require.NoError(t, err)
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table) })

	t.Run("prepared statements across transactions and clients", func(t *testing.T) {
		ins, err := db.PrepareContext(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, $2)")
		require.NoError(t, err)
		defer ins.Close()
		none, err := db.PrepareContext(ctx, "SELECT count(*) FROM "+table) // 0 arguments
		require.NoError(t, err)
		defer none.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 8*20*2)
		for c := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					id := c*1000 + i
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						errs <- err
						continue
					}
					_, err = tx.StmtContext(ctx, ins).ExecContext(ctx, id, "tx")
					if err == nil {
						var n int
						err = tx.StmtContext(ctx, none).QueryRowContext(ctx).Scan(&n)
					}
					if err != nil {
						tx.Rollback()
						errs <- err
						continue
					}
					errs <- tx.Commit()
					var n int
					errs <- none.QueryRowContext(ctx).Scan(&n)
				}
			}()
		}
		wg.Wait()
		close(errs)
		failed := map[string]int{}
		for err := range errs {
			if err != nil {
				failed[err.Error()]++
			}
		}
		assert.Empty(t, failed, "errors through PgBouncer in transaction mode")
		var n int
		require.NoError(t, none.QueryRowContext(ctx).Scan(&n))
		assert.Equal(t, 160, n)
	})

	t.Run("65535 arguments, then one too many", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			n    int
			ok   bool
		}{
			{"65535", 65535, true},
			{"65536", 65536, false},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var q strings.Builder
				q.WriteString("SELECT count(*) FROM (VALUES ")
				args := make([]any, tt.n)
				for i := range tt.n {
					if i > 0 {
						q.WriteString(",")
					}
					fmt.Fprintf(&q, "($%d::int)", i+1)
					args[i] = i
				}
				q.WriteString(") AS v(x)")
				var got int
				err := db.QueryRowContext(ctx, q.String(), args...).Scan(&got)
				if tt.ok {
					require.NoError(t, err)
					assert.Equal(t, tt.n, got)
				} else {
					require.Error(t, err)
					assert.Contains(t, err.Error(), "65535")
				}
				// The pool still serves afterwards.
				require.NoError(t, db.QueryRowContext(ctx, "SELECT $1::int", 7).Scan(&got))
				assert.Equal(t, 7, got)
			})
		}
	})

	t.Run("COPY through pgx", func(t *testing.T) {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		var copied int64
		err = conn.Raw(func(dc any) error {
			pc, ok := dc.(interface{ Conn() *pgx.Conn })
			if !ok {
				return fmt.Errorf("driver connection %T has no Conn()", dc)
			}
			rows := make([][]any, 500)
			for i := range rows {
				rows[i] = []any{int64(100000 + i), "copied"}
			}
			copied, err = pc.Conn().CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "v"}, pgx.CopyFromRows(rows))
			return err
		})
		require.NoError(t, err)
		assert.Equal(t, int64(500), copied)
		var n int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE v = 'copied'").Scan(&n))
		assert.Equal(t, 500, n)
	})

	t.Run("SET on a pinned connection reaches other clients", func(t *testing.T) {
		// The documented limit: a transaction pooler hands the server
		// connection to whichever client is next, session state included.
		// With one server connection, a plain SET from a pinned session is
		// what the next client sees, and SET LOCAL in a transaction is not.
		var hErr error
		h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hErr = atkScale2SessionSET(t, r.Context(), db)
		}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		require.NoError(t, hErr)
		var seen string
		require.NoError(t, db.QueryRowContext(ctx, "SHOW work_mem").Scan(&seen))
		assert.NotEqual(t, "8888kB", seen, "SET LOCAL ends with its transaction")
	})
}

// atkScale2SessionSET runs, in a request, a SET on the session's pinned
// connection, checks that the pool's next client sees it, then a SET LOCAL
// in a transaction on the same connection.
func atkScale2SessionSET(t *testing.T, ctx context.Context, db *DB) error {
	s, err := SessionFrom(ctx)
	if err != nil {
		return err
	}
	c, err := s.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := c.ExecContext(ctx, "SET work_mem = '7777kB'"); err != nil {
		return err
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), "RESET work_mem") })
	var seen string
	if err := db.QueryRowContext(ctx, "SHOW work_mem").Scan(&seen); err != nil {
		return err
	}
	assert.Equal(t, "7777kB", seen, "another client sees the pinned session's SET")
	if _, err := db.ExecContext(ctx, "RESET work_mem"); err != nil {
		return err
	}
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SET LOCAL work_mem = '8888kB'"); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, "SHOW work_mem").Scan(&seen); err != nil {
		return err
	}
	assert.Equal(t, "8888kB", seen)
	return tx.Commit()
}

// TestAttackScale2MultiHostRefusedAndSilent: a URL whose first host
// refuses and whose second accepts and never answers. PreferPrimary falls
// back within the connect timeout, PrimaryOnly fails as soon, and both
// say what each host did without the password.
func TestAttackScale2MultiHostRefusedAndSilent(t *testing.T) {
	const pw = "Sec-Pw#Zq81"
	refused, silent := freePort(t), silentListener(t)
	raw := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d,127.0.0.1:%d/app?sslmode=disable&target_session_attrs=read-write",
		escapeComponent(pw), refused, silent)
	for _, tt := range []struct {
		name     string
		strategy Strategy
	}{
		{"PreferPrimary", PreferPrimary},
		{"PrimaryOnly", PrimaryOnly},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			db, err := Open(ctx, WithURL(raw), WithLookupEnv(atkNoEnv), WithStrategy(tt.strategy),
				WithConnectTimeout(2*time.Second), WithSQLitePath(t.TempDir()+"/app.db"))
			took := time.Since(start)
			assert.Less(t, took, 4*time.Second, "bounded by the connect timeout")
			var report string
			if tt.strategy == PrimaryOnly {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrNoDatabase)
				assert.False(t, IsPermanent(err), "refused and silent hosts are transient: %v", err)
				report = err.Error()
			} else {
				require.NoError(t, err)
				defer db.Close()
				assert.Equal(t, SQLite, db.Dialect())
				report = db.Reason()
				h := db.Health(ctx)
				assert.Equal(t, "up", h.Status)
				assert.True(t, h.Fallback)
				b, err := json.Marshal(h)
				require.NoError(t, err)
				assertNoFragment(t, string(b), pw, "Health")
			}
			assert.Contains(t, report, fmt.Sprint(refused), "the refused host is named")
			assert.Contains(t, report, fmt.Sprint(silent), "the silent host is named")
			assertNoFragment(t, report, pw, "report")
		})
	}
}

// TestAttackScale2StandbysOnlyAndHealthDuringPromote: with both hosts
// standbys, target_session_attrs=read-write finds no primary; then Health
// polled through a kill and a promote never calls a dead or read-only
// server up.
func TestAttackScale2StandbysOnlyAndHealthDuringPromote(t *testing.T) {
	p := startPGPair(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pw = "App-Pw#1" // the pair's role password (see pgPair.url)

	t.Run("both hosts standbys", func(t *testing.T) {
		raw := p.url(p.standby, p.standby, "read-write")
		_, err := Open(ctx, WithURL(raw), WithLookupEnv(atkNoEnv), WithStrategy(PrimaryOnly), WithConnectTimeout(2*time.Second))
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrNoDatabase)
		assert.False(t, IsPermanent(err), "a standby may be promoted: %v", err)
		assert.Regexp(t, `no host accepts writes.*standby or read-only`, err.Error(), "says why the host was not taken")
		assertNoFragment(t, err.Error(), pw, "PrimaryOnly's error")

		db, err := Open(ctx, WithURL(raw), WithLookupEnv(atkNoEnv), WithConnectTimeout(2*time.Second),
			WithSQLitePath(t.TempDir()+"/app.db"))
		require.NoError(t, err)
		defer db.Close()
		assert.Equal(t, SQLite, db.Dialect(), "PreferPrimary falls back rather than writing to a standby")
		assertNoFragment(t, db.Reason(), pw, "Reason")

		ro, err := Open(ctx, WithURL(p.url(p.standby, p.standby, "read-only")), WithLookupEnv(atkNoEnv),
			WithStrategy(PrimaryOnly), WithConnectTimeout(2*time.Second))
		require.NoError(t, err, "read-only takes a standby")
		ro.Close()
	})

	t.Run("Health during a promote", func(t *testing.T) {
		db, err := Open(ctx, WithURL(p.url(p.primary, p.standby, "read-write")), WithLookupEnv(atkNoEnv),
			WithStrategy(PrimaryOnly), WithConnectTimeout(2*time.Second))
		require.NoError(t, err)
		defer db.Close()
		primaryAddr := fmt.Sprintf("127.0.0.1:%d", p.primary.port)
		standbyAddr := fmt.Sprintf("127.0.0.1:%d", p.standby.port)
		require.Equal(t, primaryAddr, db.Health(ctx).Server)

		p.primary.stop("immediate")
		type sample struct {
			h    Health
			took time.Duration
		}
		var samples []sample
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				start := time.Now()
				h := db.Health(ctx)
				samples = append(samples, sample{h, time.Since(start)})
				if h.Status == "up" || ctx.Err() != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		time.Sleep(200 * time.Millisecond)
		p.promote()
		<-done
		require.NotEmpty(t, samples)
		for _, s := range samples {
			assert.Less(t, s.took, 3*time.Second, "Health is bounded")
			if s.h.Status == "up" {
				assert.Equal(t, standbyAddr, s.h.Server, "up only on the promoted server")
			} else {
				assert.NotEmpty(t, s.h.Error, "down says why")
				assertNoFragment(t, s.h.Error, pw, "Health.Error")
			}
		}
		last := samples[len(samples)-1].h
		assert.Equal(t, "up", last.Status)
		assert.Equal(t, "down", samples[0].h.Status, "the first sample after the kill is down")
		_, err = db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS atk_after_promote (id int)")
		assert.NoError(t, err, "writes go to the new primary")
	})
}

// TestAttackScale2PgBouncerServerLoginFails: PgBouncer accepts the client
// (the password matches its userlist) but the server rejects that
// password. The first client gets the server's refusal (permanent); PgBouncer
// 1.18 holds the next ones until server_login_retry has passed, so they
// time out: transient, and the hint must not blame only a server that is
// down.
func TestAttackScale2PgBouncerServerLoginFails(t *testing.T) {
	up, err := Validate(testPostgresURL(t))
	require.NoError(t, err)
	const wrong = "Srv-Wr0ng#7k"
	upstream := fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", escapeComponent(up.User), escapeComponent(wrong),
		up.Hosts[0].Name, up.Hosts[0].Port, escapeComponent(up.Database))
	b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 2, upstream: upstream,
		settings: []string{"server_login_retry = 30"}})
	raw := b.url(t, upstream, "pgbouncer=true")
	for i := range 2 {
		start := time.Now()
		_, err := atkBouncerOpen(t, raw)
		require.Error(t, err)
		assert.Less(t, time.Since(start), 4*time.Second)
		assertNoFragment(t, err.Error(), wrong, "Open's error")
		t.Logf("attempt %d: permanent=%v: %v", i, IsPermanent(err), err)
		if i == 0 {
			assert.True(t, IsPermanent(err), "the server's password refusal is permanent: %v", err)
		} else {
			assert.Contains(t, err.Error(), "refuses PgBouncer's login", "the hint names the other cause")
			assert.False(t, IsPermanent(err), "PgBouncer retries the server login: %v", err)
		}
	}
}
