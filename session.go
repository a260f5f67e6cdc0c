package dbfallback

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TxOption configures [DB.Tx].
type TxOption func(*txOptions)

type txOptions struct {
	sql.TxOptions
	attempts int
}

// defaultTxAttempts bounds how often Tx runs fn when it keeps failing
// with a retryable error.
const defaultTxAttempts = 5

// WithIsolation sets the transaction's isolation level (default: the
// driver's, READ COMMITTED on PostgreSQL; SQLite is always serializable).
func WithIsolation(level sql.IsolationLevel) TxOption {
	return func(o *txOptions) { o.Isolation = level }
}

// WithReadOnly makes the transaction read-only. On SQLite a read-only
// transaction does not wait for writers.
func WithReadOnly() TxOption {
	return func(o *txOptions) { o.ReadOnly = true }
}

// WithAttempts sets how many times Tx may run fn in all (default 5); 1
// disables retries.
func WithAttempts(n int) TxOption {
	return func(o *txOptions) { o.attempts = max(n, 1) }
}

// Tx runs fn in a transaction: it commits when fn returns nil, rolls back
// when fn returns an error or panics (and then re-panics). When fn returns,
// or Commit reports, a conflict the database asks to retry (SQLite
// SQLITE_BUSY or SQLITE_LOCKED, PostgreSQL serialization failure 40001 or
// deadlock 40P01), Tx rolls back and runs fn again in a new transaction,
// with a short backoff, up to the attempt limit (see [WithAttempts]); the
// final error says how many attempts ran and wraps the last one. fn may
// therefore run more than once: keep side effects outside the database out
// of it. Tx stops early when ctx is done.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error, opts ...TxOption) error {
	o := txOptions{attempts: defaultTxAttempts}
	for _, opt := range opts {
		opt(&o)
	}
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := db.runTx(ctx, &o.TxOptions, fn)
		if err == nil {
			return nil
		}
		if !IsRetryable(err) {
			return err
		}
		// sleepCtx gives up at once when ctx is done.
		if attempt == o.attempts || !sleepCtx(ctx, jitter(backoff)) {
			return &TxError{Attempts: attempt, Err: err}
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// runTx is one attempt of Tx.
func (db *DB) runTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, rerr)
		}
		return err
	}
	return tx.Commit()
}

// TxError is the error [DB.Tx] returns after retrying a retryable
// conflict; errors.Is and errors.As see the last attempt's error.
type TxError struct {
	// Attempts is how many times fn ran.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

// Error says how many attempts ran and why the last one failed.
func (e *TxError) Error() string {
	return fmt.Sprintf("dbfallback: transaction failed after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *TxError) Unwrap() error { return e.Err }

// IsRetryable reports a conflict that running the transaction again can
// resolve: SQLite's "database is locked" (SQLITE_BUSY) and "table is
// locked" (SQLITE_LOCKED), and PostgreSQL's serialization failure (40001)
// and deadlock (40P01).
func IsRetryable(err error) bool {
	if isBusy(err) {
		return true
	}
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}

// ErrNoSession is returned by [SessionFrom] for a context that did not come
// through [Middleware].
var ErrNoSession = errors.New("dbfallback: no database session in this context (is the handler wrapped with dbfallback.Middleware?)")

type sessionKey struct{}

// Middleware gives each request a lazy database [Session], found with
// [SessionFrom]. The connection is taken from db's pool on the session's
// first use, so a handler that never touches the database never takes
// one, and it is given back when the handler returns, on every path:
// normal return, error, panic (re-raised after the release) and a client
// that went away. Transactions and rows the handler left open are rolled
// back and closed first.
func Middleware(db *DB) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := &Session{db: db}
			defer s.release()
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
		})
	}
}

// SessionFrom returns the request's session, or [ErrNoSession].
func SessionFrom(ctx context.Context) (*Session, error) {
	if s, ok := ctx.Value(sessionKey{}).(*Session); ok && s != nil {
		return s, nil
	}
	return nil, ErrNoSession
}

// Session is one request's database connection, taken on first use. Its
// methods are those of *sql.Conn. A Session is safe for use by the
// goroutines of one request; it ends when the request does.
type Session struct {
	db *DB

	mu       sync.Mutex
	conn     *sql.Conn
	released bool
	txs      []*sql.Tx
	rows     []*sql.Rows
}

// errSessionDone reports use of a session after its request ended.
var errSessionDone = errors.New("dbfallback: the database session ended with its request")

// Conn returns the session's connection, taking it from the pool on first
// use.
func (s *Session) Conn(ctx context.Context) (*sql.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return nil, errSessionDone
	}
	if s.conn == nil {
		c, err := s.db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		s.conn = c
	}
	return s.conn, nil
}

// ExecContext runs a statement on the session's connection.
func (s *Session) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	c, err := s.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.ExecContext(ctx, query, args...)
}

// QueryContext runs a query on the session's connection. Rows left open
// are closed when the request ends.
func (s *Session) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c, err := s.Conn(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := c.QueryContext(ctx, query, args...)
	if err == nil {
		s.mu.Lock()
		s.rows = append(s.rows, rows)
		s.mu.Unlock()
	}
	return rows, err
}

// QueryRowContext runs a query expected to return at most one row. If the
// session cannot take a connection, the query goes to the pool, which
// reports the same failure through Row.Scan.
func (s *Session) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	c, err := s.Conn(ctx)
	if err != nil {
		return s.db.DB.QueryRowContext(ctx, query, args...)
	}
	return c.QueryRowContext(ctx, query, args...)
}

// BeginTx starts a transaction on the session's connection. One left open
// is rolled back when the request ends.
func (s *Session) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	c, err := s.Conn(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.BeginTx(ctx, opts)
	if err == nil {
		s.mu.Lock()
		s.txs = append(s.txs, tx)
		s.mu.Unlock()
	}
	return tx, err
}

// release gives the connection back: open rows are closed and open
// transactions rolled back first, since either would hold it.
func (s *Session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	for _, r := range s.rows {
		r.Close()
	}
	for _, tx := range s.txs {
		tx.Rollback()
	}
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn, s.rows, s.txs = nil, nil, nil
}

// HealthHandler serves [DB.Health] as JSON for GET and HEAD: status 200
// when the database answers a ping within 2s, 503 when it does not. The
// body holds status, dialect, fallback, reason, ephemeral, the redacted
// target, latency_ms and, while a recovery probe runs, primary_up; never a
// secret. Other methods get 405.
func (db *DB) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := db.Health(r.Context())
		body, err := json.Marshal(h)
		if err != nil {
			http.Error(w, "health encoding failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if h.Status != "up" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if r.Method == http.MethodGet {
			w.Write(append(body, '\n'))
		}
	})
}
