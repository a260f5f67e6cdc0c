package dbfallback

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTxCommitRollbackPanic(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "tx.db"))
	_, err := db.Exec("CREATE TABLE t(x INTEGER)")
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, db.QueryRow("SELECT count(*) FROM t").Scan(&n))
		return n
	}
	ctx := context.Background()
	require.NoError(t, db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO t VALUES (1)")
		return err
	}))
	assert.Equal(t, 1, count(), "nil commits")

	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		tx.Exec("INSERT INTO t VALUES (2)")
		return boom
	})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 1, count(), "an error rolls back")

	assert.PanicsWithValue(t, "kaboom", func() {
		db.Tx(ctx, func(tx *sql.Tx) error {
			tx.Exec("INSERT INTO t VALUES (3)")
			panic("kaboom")
		})
	})
	assert.Equal(t, 1, count(), "a panic rolls back and re-panics")
	assert.Zero(t, db.Stats().InUse, "the connection went back")

	err = db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO t VALUES (4)")
		return err
	}, WithReadOnly())
	assert.Error(t, err, "a read-only transaction cannot write")
	assert.Equal(t, 1, count())
}

func TestTxRetries(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "tx.db"))
	busy := sqlite3.Error{Code: sqlite3.ErrBusy}
	serialization := &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
	tests := []struct {
		name     string
		fails    int   // attempts that fail before success
		err      error // what a failing attempt returns
		opts     []TxOption
		wantRuns int
		wantErr  bool
		attempts int
	}{
		{name: "busy then success", fails: 2, err: busy, wantRuns: 3},
		{name: "serialization then success", fails: 1, err: serialization, wantRuns: 2},
		{name: "deadlock", fails: 1, err: &pgconn.PgError{Code: "40P01"}, wantRuns: 2},
		{name: "gives up", fails: 100, err: busy, wantRuns: defaultTxAttempts, wantErr: true, attempts: defaultTxAttempts},
		{name: "custom limit", fails: 100, err: busy, opts: []TxOption{WithAttempts(2)}, wantRuns: 2, wantErr: true, attempts: 2},
		{name: "other errors are not retried", fails: 100, err: errors.New("constraint"), wantRuns: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := 0
			err := db.Tx(context.Background(), func(tx *sql.Tx) error {
				runs++
				if runs <= tt.fails {
					return tt.err
				}
				return nil
			}, tt.opts...)
			assert.Equal(t, tt.wantRuns, runs)
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.err)
			var te *TxError
			if tt.attempts > 0 {
				require.ErrorAs(t, err, &te)
				assert.Equal(t, tt.attempts, te.Attempts)
				assert.Contains(t, err.Error(), "after")
			} else {
				assert.False(t, errors.As(err, &te))
			}
		})
	}
	t.Run("stops when ctx is done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		runs := 0
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			runs++
			cancel()
			return busy
		})
		assert.Equal(t, 1, runs)
		assert.Error(t, err)
	})
}

// txCounter has 64 goroutines add 1 to one counter 200 times each through
// Tx: the final value must be exact and no error may reach a caller.
func txCounter(t *testing.T, db *DB, opts ...TxOption) {
	t.Helper()
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS tx_counter")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "CREATE TABLE tx_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "INSERT INTO tx_counter VALUES (1, 0)")
	require.NoError(t, err)
	const goroutines, each = 64, 200
	var errs atomic.Int64
	var first firstError
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, "SELECT n FROM tx_counter WHERE id = 1").Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE tx_counter SET n = $1 WHERE id = 1", n+1)
					return err
				}, opts...)
				if err != nil {
					errs.Add(1)
					first.set(err)
				}
			}
		}()
	}
	wg.Wait()
	if e := first.get(); e != nil {
		t.Errorf("first error: %v", e)
	}
	assert.Zero(t, errs.Load())
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT n FROM tx_counter WHERE id = 1").Scan(&n))
	assert.Equal(t, goroutines*each, n, "no lost update")
	assert.Zero(t, db.Stats().InUse)
}

func TestTxCounterSQLite(t *testing.T) {
	txCounter(t, openSQLiteAt(t, filepath.Join(t.TempDir(), "counter.db")))
}

func TestTxCounterPostgres(t *testing.T) {
	db, _ := openWith(t, testPostgresURL(t), WithPool(PoolConfig{MaxOpenConns: 8}))
	require.Equal(t, Postgres, db.Dialect())
	// Read-then-write under SERIALIZABLE: PostgreSQL aborts conflicting
	// transactions with 40001, which Tx retries. Raise the attempt limit:
	// 64 writers on one row conflict a lot.
	txCounter(t, db, WithIsolation(sql.LevelSerializable), WithAttempts(1000))
}

// TestMiddlewareReleases checks db.Stats().InUse after every request shape.
func TestMiddlewareReleases(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "mw.db"))
	_, err := db.Exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2)")
	require.NoError(t, err)
	var took atomic.Int64
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		uses    bool
		panics  bool
		cancel  bool
	}{
		{name: "no database use", handler: func(w http.ResponseWriter, r *http.Request) {
			took.Store(int64(db.Stats().InUse))
		}},
		{name: "query", uses: true, handler: func(w http.ResponseWriter, r *http.Request) {
			s, _ := SessionFrom(r.Context())
			var n int
			s.QueryRowContext(r.Context(), "SELECT count(*) FROM t").Scan(&n)
			took.Store(int64(db.Stats().InUse))
		}},
		{name: "error", uses: true, handler: func(w http.ResponseWriter, r *http.Request) {
			s, _ := SessionFrom(r.Context())
			_, err := s.ExecContext(r.Context(), "INSERT INTO missing VALUES (1)")
			took.Store(int64(db.Stats().InUse))
			http.Error(w, err.Error(), 500)
		}},
		{name: "panic", uses: true, panics: true, handler: func(w http.ResponseWriter, r *http.Request) {
			s, _ := SessionFrom(r.Context())
			s.ExecContext(r.Context(), "INSERT INTO t VALUES (3)")
			took.Store(int64(db.Stats().InUse))
			panic("handler bug")
		}},
		{name: "open rows and transaction left behind", uses: true, handler: func(w http.ResponseWriter, r *http.Request) {
			s, _ := SessionFrom(r.Context())
			rows, err := s.QueryContext(r.Context(), "SELECT x FROM t")
			require.NoError(t, err)
			rows.Next()
			tx, err := s.BeginTx(r.Context(), nil)
			if err == nil {
				tx.Exec("INSERT INTO t VALUES (4)")
			}
			took.Store(int64(db.Stats().InUse))
		}},
		{name: "client gone", uses: true, cancel: true, handler: func(w http.ResponseWriter, r *http.Request) {
			s, _ := SessionFrom(r.Context())
			s.ExecContext(r.Context(), "SELECT 1")
			took.Store(int64(db.Stats().InUse))
			<-r.Context().Done()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			took.Store(-1)
			h := Middleware(db)(http.HandlerFunc(tt.handler))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
			if tt.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			func() {
				defer func() {
					if p := recover(); p != nil && !tt.panics {
						t.Fatalf("unexpected panic %v", p)
					}
				}()
				h.ServeHTTP(httptest.NewRecorder(), req)
			}()
			if tt.uses {
				assert.Equal(t, int64(1), took.Load(), "the session took one connection")
			} else {
				assert.Equal(t, int64(0), took.Load(), "a handler that does not use the database takes no connection")
			}
			assert.Zero(t, db.Stats().InUse, "released after the handler")
		})
	}
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM t").Scan(&n))
	assert.Equal(t, 3, n, "the panic's insert committed (autocommit); the abandoned transaction rolled back")
}

func TestSessionErrors(t *testing.T) {
	_, err := SessionFrom(context.Background())
	assert.ErrorIs(t, err, ErrNoSession)
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "s.db"))
	var kept *Session
	Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept, _ = SessionFrom(r.Context())
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	_, err = kept.ExecContext(context.Background(), "SELECT 1")
	assert.ErrorIs(t, err, errSessionDone, "a session does not outlive its request")
	var x int
	assert.NoError(t, kept.QueryRowContext(context.Background(), "SELECT 1").Scan(&x), "QueryRowContext falls back to the pool")
}

// healthJSON fetches the health handler's response.
func healthJSON(t *testing.T, db *DB, method string) (int, map[string]any, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	db.HealthHandler().ServeHTTP(rec, httptest.NewRequest(method, "/healthz", nil))
	var m map[string]any
	if method == http.MethodGet {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m), rec.Body.String())
	}
	return rec.Code, m, rec.Body.String()
}

func TestHealthHandler(t *testing.T) {
	t.Run("fallback", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("DATABASE_URL", "mysql://root:Hunter22@db/app"), withDataDir(""))
		require.NoError(t, err)
		defer db.Close()
		code, m, body := healthJSON(t, db, http.MethodGet)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "up", m["status"])
		assert.Equal(t, "sqlite", m["dialect"])
		assert.Equal(t, true, m["fallback"])
		assert.Equal(t, true, m["ephemeral"])
		assert.Contains(t, m["reason"], "DATABASE_URL is not usable")
		assert.Equal(t, "file:data/app.db", m["target"])
		assert.IsType(t, float64(0), m["latency_ms"])
		assert.NotContains(t, m, "primary_up")
		assert.NotContains(t, m, "error")
		assert.NotContains(t, body, "Hunter22")

		code, _, body = healthJSON(t, db, http.MethodHead)
		assert.Equal(t, http.StatusOK, code)
		assert.Empty(t, body)
		rec := httptest.NewRecorder()
		db.HealthHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/healthz", nil))
		assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	})
	t.Run("primary", func(t *testing.T) {
		url := testPostgresURL(t)
		db, _ := openWith(t, url)
		code, m, body := healthJSON(t, db, http.MethodGet)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "up", m["status"])
		assert.Equal(t, "postgres", m["dialect"])
		assert.Equal(t, false, m["fallback"])
		assert.Equal(t, false, m["ephemeral"])
		assert.NotContains(t, m, "reason")
		assert.True(t, strings.HasPrefix(m["target"].(string), "postgres://"))
		assert.Contains(t, m["target"], ":xxxxx@")
		pw, _ := db.Target().Password()
		assert.NotContains(t, body, pw)
		assert.NotContains(t, body, escapeComponent(pw))
	})
	t.Run("stopped database", func(t *testing.T) {
		srv := startPGServer(t)
		db, _ := openWith(t, strings.Replace(srv.url(), "postgres@", "postgres:Hunter22@", 1))
		require.Equal(t, Postgres, db.Dialect())
		srv.stop("immediate")
		code, m, body := healthJSON(t, db, http.MethodGet)
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "down", m["status"])
		assert.NotEmpty(t, m["error"])
		assert.NotContains(t, body, "Hunter22")
		code, _, _ = healthJSON(t, db, http.MethodHead)
		assert.Equal(t, http.StatusServiceUnavailable, code)
	})
	t.Run("probe result", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("DATABASE_URL", "postgres://u:Hunter22@127.0.0.1:1/app"), withDataDir(""),
			WithRecoveryProbe(20*time.Millisecond, nil), WithConnectTimeout(200*time.Millisecond))
		require.NoError(t, err)
		defer db.Close()
		require.Eventually(t, func() bool {
			_, m, _ := healthJSON(t, db, http.MethodGet)
			return m["primary_up"] == false
		}, 5*time.Second, 20*time.Millisecond)
	})
}
