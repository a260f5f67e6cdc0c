package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"time"
)

// ErrNoSession is returned by [SessionFrom] for a context that did not come
// through [Middleware].
var ErrNoSession = errors.New("dbfallback: no database session in this context (is the handler wrapped with dbfallback.Middleware?)")

// ErrSessionDone is returned by every method of a [Session] used after its
// request ended (a goroutine that outlived the handler, a session kept in
// a struct): nothing reaches the database. As with [sql.ErrTxDone], the
// fix is in the caller.
var ErrSessionDone = errors.New("dbfallback: the database session ended with its request")

type sessionKey struct{}

// Middleware gives each request a lazy database [Session], found with
// [SessionFrom]. The session takes a connection from db's pool only while
// it needs one, and when the handler returns, on every path (normal
// return, error, panic, re-raised after the cleanup, and a client that
// went away), everything the request left open is closed: rows and
// prepared statements are closed, transactions rolled back and a pinned
// connection (see [Session.Conn]) given back. The handler's context ends
// when it returns, so database/sql also closes what the handler opened
// with it directly. Rows a goroutine was still reading then report
// context.Canceled from Err, not a short result that looks complete. A
// handler that never touches the database costs no connection.
func Middleware(db *DB) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := &Session{db: db}
			// The handler's context ends when it returns (before net/http
			// would end it), so that database/sql closes what the handler
			// opened with it outside the session's view, such as rows or a
			// transaction on the connection Conn pinned: closing that
			// connection waits for them.
			ctx, cancel := context.WithCancel(context.WithValue(r.Context(), sessionKey{}, s))
			s.endRequest = cancel
			defer s.end()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// SessionFrom returns the request's session, or [ErrNoSession].
func SessionFrom(ctx context.Context) (*Session, error) {
	if s := sessionOf(ctx); s != nil {
		return s, nil
	}
	return nil, ErrNoSession
}

// Session is one request's access to the database; it has the methods of
// *sql.DB that generated code needs (it satisfies sqlc's DBTX) plus
// BeginTx and Conn.
//
// A Session holds a pool connection only while it needs one: statements
// run on the pool and give their connection back at once; open rows and
// an open transaction hold theirs until closed or ended. So handlers that
// mix the session and the pool cannot exhaust the pool, however many run
// at once. Consecutive statements may therefore run on different
// connections: a handler that needs one connection for several statements
// (SET, temporary tables, advisory locks, SQLite's last_insert_rowid())
// pins one with [Session.Conn].
//
// When the request ends, everything the session left open is closed or
// rolled back, and every method then fails with [ErrSessionDone]. A
// Session is safe for use by the goroutines of one request.
//
// On SQLite, while a write transaction that a goroutine began with the
// request's context (Session.BeginTx, [DB.Tx] or the pool's BeginTx) is
// open, a write by that goroutine with that context outside the
// transaction would wait for the transaction's own lock: it fails at once
// with an error that says so. Write through the transaction instead.
// Other goroutines of the request queue for the lock like any writer, as
// they would wait for the row on PostgreSQL.
type Session struct {
	db *DB

	// endRequest ends the handler's context (see Middleware); nil for a
	// session made elsewhere.
	endRequest context.CancelFunc

	mu     sync.Mutex
	ended  bool
	in     context.Context // the last caller context bound, and its binding
	bound  context.Context
	unbind []context.CancelFunc // end every binding
	conn   *sql.Conn            // pinned by Conn
	txs    []*sql.Tx
	rows   []sessionRows
	stmts  []*sql.Stmt
}

// sessionRows are rows the session opened, with the function that ends
// their own context.
type sessionRows struct {
	rows   *sql.Rows
	cancel context.CancelFunc
}

// use returns the context a call runs with, and the pinned connection if
// any. The context ends with ctx or with the request, whichever is first
// (so rows, transactions and rows of QueryRowContext the handler forgot
// are ended by database/sql too), and carries the session, which the
// SQLite write gate reads. The binding of the last ctx is reused, so a
// handler that passes r.Context() to every call costs one binding.
func (s *Session) use(ctx context.Context) (context.Context, *sql.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, nil, ErrSessionDone
	}
	if s.in != nil && reflect.TypeOf(ctx).Comparable() && ctx == s.in {
		return s.bound, s.conn, nil
	}
	bound := ctx
	if sessionOf(bound) != s {
		bound = context.WithValue(bound, sessionKey{}, s)
	}
	bound, cancel := context.WithCancel(bound)
	s.unbind = append(s.unbind, cancel)
	s.in, s.bound = ctx, bound
	return bound, s.conn, nil
}

// track records something to close when the request ends. It reports
// false, having recorded nothing, when the request ended meanwhile; the
// caller then closes it itself.
func (s *Session) track(add func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	add()
	return true
}

// Conn pins one pool connection to the session for the rest of the
// request, taking it on the first call (which may wait for the pool, as
// long as ctx allows), and returns it. From then on every method of the
// session runs on it: use it when statements must share a connection
// (SET, temporary tables, advisory locks, SQLite's last_insert_rowid()).
// Do not Close it; the session gives it back when the request ends.
//
// Behind a transaction pooler (PgBouncer in transaction mode, pgbouncer=true)
// pinning holds a connection to the pooler, not to a server: each statement
// outside a transaction may run on another server connection, and a plain
// SET stays on that server connection for whichever client gets it next.
// There, keep such statements in one transaction (SET LOCAL, temporary
// tables ON COMMIT DROP, pg_advisory_xact_lock); LISTEN does not work.
//
// Rows and transactions opened on it directly (not through the session's
// methods) are closed by database/sql when their context ends; the
// request's context ends with the request. Opened with a context that
// outlives the request (context.Background()), one left open keeps the
// request from ending, as [sql.Conn.Close] waits for it.
func (s *Session) Conn(ctx context.Context) (*sql.Conn, error) {
	ctx, conn, err := s.use(ctx)
	if err != nil || conn != nil {
		return conn, err
	}
	c, err := s.db.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ended:
		c.Close()
		return nil, ErrSessionDone
	case s.conn != nil: // another goroutine pinned one meanwhile
		c.Close()
		return s.conn, nil
	}
	s.conn = c
	return c, nil
}

// ExecContext runs a statement on the pool (or the pinned connection),
// which gets its connection back when the statement is done.
func (s *Session) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, conn, err := s.use(ctx)
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return conn.ExecContext(ctx, query, args...)
	}
	return s.db.DB.ExecContext(ctx, query, args...)
}

// QueryContext runs a query on the pool (or the pinned connection). The
// rows hold a connection until closed; rows left open are closed when
// the request ends.
func (s *Session) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx, conn, err := s.use(ctx)
	if err != nil {
		return nil, err
	}
	// The rows get a context of their own, which end cancels to close
	// them if the handler did not (see end).
	ctx, cancel := context.WithCancel(ctx)
	var rows *sql.Rows
	if conn != nil {
		rows, err = conn.QueryContext(ctx, query, args...)
	} else {
		rows, err = s.db.DB.QueryContext(ctx, query, args...)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if !s.track(func() { s.rows = append(s.rows, sessionRows{rows: rows, cancel: cancel}) }) {
		rows.Close()
		cancel()
		return nil, ErrSessionDone
	}
	return rows, nil
}

// QueryRowContext runs a query expected to return at most one row, on the
// pool (or the pinned connection); Row.Scan gives the connection back.
// After the request ended, Scan returns [ErrSessionDone] and the query is
// not run.
func (s *Session) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx, conn, err := s.use(ctx)
	if err != nil {
		return errRow(err)
	}
	if conn != nil {
		return conn.QueryRowContext(ctx, query, args...)
	}
	return s.db.DB.QueryRowContext(ctx, query, args...)
}

// PrepareContext prepares a statement on the pool (or the pinned
// connection). A statement prepared on the pool holds no connection
// between executions. It is closed when the request ends.
func (s *Session) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	ctx, conn, err := s.use(ctx)
	if err != nil {
		return nil, err
	}
	var st *sql.Stmt
	if conn != nil {
		st, err = conn.PrepareContext(ctx, query)
	} else {
		st, err = s.db.DB.PrepareContext(ctx, query)
	}
	if err != nil {
		return nil, err
	}
	if !s.track(func() { s.stmts = append(s.stmts, st) }) {
		st.Close()
		return nil, ErrSessionDone
	}
	return st, nil
}

// BeginTx starts a transaction on a pool connection (or the pinned one),
// which it holds until Commit or Rollback. One left open is rolled back
// when the request ends. As with database/sql, nil opts means the
// driver's default isolation, READ COMMITTED on PostgreSQL; for
// read-modify-write code use [DB.Tx], which is serializable on both
// dialects and retries conflicts.
func (s *Session) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	ctx, conn, err := s.use(ctx)
	if err != nil {
		return nil, err
	}
	var tx *sql.Tx
	if conn != nil {
		tx, err = conn.BeginTx(ctx, opts)
	} else {
		tx, err = s.db.DB.BeginTx(ctx, opts)
	}
	if err != nil {
		return nil, err
	}
	if !s.track(func() { s.txs = append(s.txs, tx) }) {
		tx.Rollback()
		return nil, ErrSessionDone
	}
	return tx, nil
}

// end closes what the request left open, in the order that frees
// connections: rows (a transaction's connection cannot end while rows
// read from it), transactions, statements; then it ends the request's
// contexts, which stops calls still under way in goroutines that
// outlived the handler and has database/sql close what was opened with
// them outside the session's view; last the pinned connection, whose
// Close waits for those.
func (s *Session) end() {
	s.mu.Lock()
	s.ended = true
	rows, txs, stmts, conn, unbind := s.rows, s.txs, s.stmts, s.conn, s.unbind
	s.rows, s.txs, s.stmts, s.conn, s.in, s.bound, s.unbind = nil, nil, nil, nil, nil, nil, nil
	s.mu.Unlock()
	for _, r := range rows {
		r.cut()
	}
	for _, tx := range txs {
		tx.Rollback()
	}
	for _, st := range stmts {
		st.Close()
	}
	if s.endRequest != nil {
		s.endRequest()
	}
	for _, cancel := range unbind {
		cancel()
	}
	if conn != nil {
		conn.Close()
	}
}

// cut closes rows the handler left open so that a goroutine still reading
// them learns that they were cut short: Rows.Err then reports
// context.Canceled rather than nil, which would read as a complete
// result. Only database/sql's own reaction to their context ending
// records that, so cut ends their context, waits (briefly: it runs at
// once) until database/sql has closed them, and then calls Close, which
// also covers rows the handler already closed.
func (r sessionRows) cut() {
	r.cancel()
	deadline := time.Now().Add(100 * time.Millisecond)
	for wait := time.Microsecond; time.Now().Before(deadline); wait = min(2*wait, time.Millisecond) {
		if _, err := r.rows.Columns(); err != nil { // closed
			break
		}
		time.Sleep(wait)
	}
	r.rows.Close()
}

// errRow returns a *sql.Row whose Scan reports err. database/sql has no
// constructor for one; the Row of a pool whose connector fails with err
// is one, and nothing is dialled.
func errRow(err error) *sql.Row {
	db := sql.OpenDB(failConnector{err})
	defer db.Close()
	return db.QueryRowContext(context.Background(), "")
}

// failConnector is a connector whose every connection fails with err.
type failConnector struct{ err error }

func (c failConnector) Connect(context.Context) (driver.Conn, error) { return nil, c.err }
func (c failConnector) Driver() driver.Driver                        { return failDriver(c) }

type failDriver struct{ err error }

func (d failDriver) Open(string) (driver.Conn, error) { return nil, d.err }
