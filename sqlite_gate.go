package dbfallback

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
)

// sqlite_gate.go is the in-process write queue of a SQLite pool and how
// its waits end. SQLite allows one writer at a time; left to its busy
// handler, writers poll for the lock and the unlucky ones see "database
// is locked". Here every write of the process (a write transaction, a
// statement outside a transaction, a prepared write) first takes one
// gate, so writers queue in order, and only other processes meet
// SQLite's busy handler.
//
// Every wait is bounded by the pool's busy timeout, once: a writer that
// waited for the gate has its busy timeout shortened by that wait, and a
// wait that used the whole timeout ends in a *lockWaitError, which Tx does
// not retry. A write that would wait for a transaction its own goroutine
// began in the same request fails at once (errOwnWriteLock).

// writeGate serializes SQLite writers inside the process. Waiters queue in
// order instead of polling the busy handler, so no writer starves and
// none sees "database is locked".
type writeGate struct {
	ch chan struct{}
	// wait is the pool's busy timeout: the longest a writer waits for the
	// gate and the lock together. Set before the pool is shared.
	wait time.Duration
	// owner is the transaction begun with a session's context that holds
	// the gate, nil when the holder is anything else.
	owner atomic.Pointer[gateOwner]
	// since is when the holder took the gate (UnixNano).
	since atomic.Int64
	// shut is closed by shutWrites, before the final snapshot: no write
	// starts after it, and a write transaction still open then cannot
	// commit (see commitGated). endMu orders that commit against it: shut
	// is closed under it.
	shut     chan struct{}
	shutOnce sync.Once
	endMu    sync.Mutex
}

// gateOwner is a transaction holding the gate: the session whose
// context began it, and the goroutine that began it.
type gateOwner struct {
	session *Session
	// goroutine is the number of the goroutine that began the
	// transaction, learned just after (see learnGoroutine); 0 until then,
	// or if it could not be read.
	goroutine atomic.Uint64
	learned   chan struct{} // closed once goroutine is set
}

func newWriteGate(wait time.Duration) *writeGate {
	return &writeGate{ch: make(chan struct{}, 1), wait: wait, shut: make(chan struct{})}
}

// gateSlack is how long a writer may wait for the gate before its busy
// timeout is shortened by the wait: shorter waits are the normal queue
// and not worth two PRAGMA statements.
const gateSlack = 50 * time.Millisecond

// errWriteLockWait is what a writer that waited the whole busy timeout for
// the gate wraps (in a *lockWaitError).
var errWriteLockWait = errors.New("the SQLite write lock stayed taken for the whole busy timeout")

// errWriteLockBusy reports a taken gate when the busy timeout is zero: as
// SQLite's own busy at once, it is retryable.
var errWriteLockBusy = errors.New("dbfallback: SQLite write: the write lock is taken and the busy timeout is 0")

// errOwnWriteLock reports a write that would wait for a transaction its
// own goroutine began in the same request: the lock would never come.
var errOwnWriteLock = errors.New("dbfallback: SQLite write: a transaction this goroutine began in the same request holds the write lock, so the write would wait for itself until the busy timeout; run it on the transaction (tx.ExecContext), or after Commit")

// acquire takes the gate for a writer whose context is ctx, and returns
// how long it waited. It fails at once with errOwnWriteLock when the
// gate is held by a transaction that this goroutine began with the same
// session's context (the writer would wait for itself), with a
// *lockWaitError after the busy timeout, and with ctx's error when ctx
// ends first. Another goroutine of the same request waits its turn like
// any writer: the transaction it waits for can still end.
func (g *writeGate) acquire(ctx context.Context) (time.Duration, error) {
	select {
	case <-g.shut:
		return 0, errWritesShut
	default:
	}
	select {
	case g.ch <- struct{}{}:
		if g.isShut() {
			<-g.ch
			return 0, errWritesShut
		}
		return 0, nil
	default:
	}
	if s := sessionOf(ctx); s != nil {
		if o := g.owner.Load(); o != nil && o.session == s && o.begunBy(ctx, goroutineID()) {
			return 0, errOwnWriteLock
		}
	}
	if g.wait <= 0 {
		return 0, errWriteLockBusy
	}
	start := time.Now()
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.ch <- struct{}{}:
		if g.isShut() {
			<-g.ch
			return time.Since(start), errWritesShut
		}
		return time.Since(start), nil
	case <-g.shut:
		return time.Since(start), errWritesShut
	case <-ctx.Done():
		return time.Since(start), ctx.Err()
	case <-timer.C:
		held := time.Duration(0)
		if since := g.since.Load(); since != 0 {
			held = time.Since(time.Unix(0, since))
		}
		return time.Since(start), &lockWaitError{waited: time.Since(start), held: held, err: errWriteLockWait}
	}
}

// errWritesShut is what a write of a DB being closed gets: the final
// snapshot has begun (or is about to), so a write now would be
// acknowledged and then lost with the local disk.
var errWritesShut = errors.New("dbfallback: SQLite write: the DB is closing and its final snapshot has begun; the write was not made")

// errCommitShut is what Commit of a write transaction still open when
// the final snapshot began returns: it was rolled back, so that no write
// is acknowledged that the snapshot lacks.
var errCommitShut = errors.New("dbfallback: SQLite commit: the DB was closed while this transaction was open, and its final snapshot was taken without it; the transaction was rolled back")

func (g *writeGate) isShut() bool {
	select {
	case <-g.shut:
		return true
	default:
		return false
	}
}

// shutWrites ends writing on the pool before the final snapshot: it
// waits, until ctx ends, for the write transaction or statement that
// holds the gate to end (so that one committed just before Close is in
// the snapshot), then refuses every later write, and every commit of a
// transaction still open. It keeps the gate when it got it. It does no
// I/O.
func (g *writeGate) shutWrites(ctx context.Context) {
	select {
	case g.ch <- struct{}{}: // kept: no writer may follow
	case <-ctx.Done():
	}
	g.endMu.Lock()
	g.shutOnce.Do(func() { close(g.shut) })
	g.endMu.Unlock()
}

// hold records who took the gate: the session of a transaction's context
// and the calling goroutine, which begins the transaction; nil for a
// single statement.
func (g *writeGate) hold(owner *Session) {
	if owner != nil {
		o := &gateOwner{session: owner, learned: make(chan struct{})}
		go o.learnGoroutine()
		g.owner.Store(o)
	} else {
		g.owner.Store(nil)
	}
	g.since.Store(time.Now().UnixNano())
}

// Which goroutine began a transaction.
//
// Go hides goroutine identity on purpose, and nothing here uses it as
// goroutine-local storage: the gate only needs to tell whether a writer
// is the very goroutine whose transaction holds the lock, the one case in
// which waiting can never end. Other goroutines of the same request wait
// like any writer. The number is read from tracebacks, as debugging code
// does (golang.org/x/net/http2 checks lock ownership this way); when it
// cannot be read, the writer waits, bounded by the busy timeout, and the
// error still names the cause.
//
// A traceback of the goroutine that begins a transaction costs tens of
// microseconds (it walks the whole, deep stack), more than the
// transaction itself. So the gate starts a goroutine of two frames that
// reads its creator's number from the "created by … in goroutine N" line
// of its own traceback (Go 1.21 and later), about a microsecond for the
// transaction; a writer that waits reads its own number, which only a
// waiter with the same session pays.

// learnGoroutine runs in a goroutine that hold starts from the goroutine
// beginning the transaction, and records that goroutine's number.
func (o *gateOwner) learnGoroutine() {
	var buf [1024]byte
	b := buf[:runtime.Stack(buf[:], false)]
	const marker = " in goroutine "
	if i := bytes.LastIndex(b, []byte(marker)); i >= 0 {
		o.goroutine.Store(parseGoroutineID(b[i+len(marker):]))
	}
	close(o.learned)
}

// begunBy reports whether goroutine id began the owner's transaction,
// waiting (at most until ctx ends or a moment has passed) for the number
// to be learned.
func (o *gateOwner) begunBy(ctx context.Context, id uint64) bool {
	if id == 0 {
		return false
	}
	t := time.NewTimer(gateSlack)
	defer t.Stop()
	select {
	case <-o.learned:
	case <-ctx.Done():
	case <-t.C:
	}
	return o.goroutine.Load() == id
}

// goroutineID returns the calling goroutine's number, read from the first
// line of its traceback ("goroutine 18 [running]:"), or 0 if that fails.
func goroutineID() uint64 {
	var buf [64]byte
	b, ok := bytes.CutPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	if !ok {
		return 0
	}
	return parseGoroutineID(b)
}

// parseGoroutineID reads the number at the start of b, up to a blank or
// the end of the line; 0 if there is none.
func parseGoroutineID(b []byte) uint64 {
	if i := bytes.IndexAny(b, " \n"); i >= 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}

func (g *writeGate) release() {
	g.owner.Store(nil)
	g.since.Store(0)
	<-g.ch
}

// lockWaitError reports a writer that waited the whole busy timeout: for
// the gate (another transaction of this process holds it) or in SQLite's
// busy handler (another process holds the database lock). Waiting again
// would wait as long again, so it is not retryable.
type lockWaitError struct {
	waited time.Duration
	held   time.Duration // how long the gate's holder had it; 0 when not known
	err    error         // errWriteLockWait, or SQLite's SQLITE_BUSY
}

func (e *lockWaitError) Error() string {
	waited := e.waited.Round(time.Millisecond)
	if errors.Is(e.err, errWriteLockWait) {
		return fmt.Sprintf("dbfallback: SQLite write: waited %s (the busy timeout) for the write lock, held %s by a transaction of this process: likely a transaction left open, or a write through db or the session instead of tx inside db.Tx or a session transaction",
			waited, e.held.Round(time.Millisecond))
	}
	return fmt.Sprintf("dbfallback: SQLite write: waited %s (the busy timeout) for the database lock, held by another connection: likely a transaction left open in another process: %v", waited, e.err)
}

func (e *lockWaitError) Unwrap() error { return e.err }

// lockWait turns SQLITE_BUSY that came after waiting at least half the
// busy timeout into a *lockWaitError. SQLite's busy handler gives up only
// when the timeout has passed, so such a busy means it waited; a busy
// reported at once (a snapshot conflict, a lock that waiting cannot
// resolve) is left as it is, and stays retryable.
func (g *writeGate) lockWait(err error, waited time.Duration) error {
	if code, ok := sqliteCode(err); g.wait > 0 && waited >= g.wait/2 && ok && code == sqlengine.Busy {
		return &lockWaitError{waited: waited, err: err}
	}
	return err
}

// sessionOf returns the session a context carries (see [Middleware]).
func sessionOf(ctx context.Context) *Session {
	s, _ := ctx.Value(sessionKey{}).(*Session)
	return s
}

// gatedConnector opens engine connections that take the write gate for
// write transactions and for writes outside a transaction.
type gatedConnector struct {
	engine sqlengine.Engine
	dsn    string
	gate   *writeGate
	seen   *integrity // records damage a statement met (sqlite_check.go); nil for memory
}

func (c *gatedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.engine.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: conn, gate: c.gate, seen: c.seen}, nil
}

func (c *gatedConnector) Driver() driver.Driver { return c.engine.Driver() }

// gatedConn wraps an engine connection. database/sql uses one connection
// from one goroutine at a time, so inTx needs no lock.
type gatedConn struct {
	sqlengine.Conn
	gate *writeGate
	seen *integrity
	inTx bool
	// aborted is the first error of a statement of the open transaction,
	// which then fails as PostgreSQL's would (see sqlite_txabort.go).
	aborted error
	// readOnlyStuck records a read-only transaction whose PRAGMA
	// query_only could not be turned off: the connection is discarded
	// rather than handed to a writer.
	readOnlyStuck bool
}

// endQueryOnly turns PRAGMA query_only off after a read-only transaction.
// A cancelled context can interrupt the statement that follows it on
// some engines, so it is tried again; when it still fails the connection
// is marked for discarding (ResetSession and IsValid refuse it).
func (c *gatedConn) endQueryOnly() error {
	var err error
	for range 3 {
		if _, err = c.Conn.ExecContext(context.Background(), "PRAGMA query_only = 0", nil); err == nil {
			return nil
		}
	}
	c.readOnlyStuck = true
	return err
}

// ResetSession passes database/sql's check to the engine connection, when
// it has one.
func (c *gatedConn) ResetSession(ctx context.Context) error {
	if c.readOnlyStuck {
		return driver.ErrBadConn
	}
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid passes database/sql's check to the engine connection, when it
// has one.
func (c *gatedConn) IsValid() bool {
	if c.readOnlyStuck {
		return false
	}
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// take acquires the gate for one write, shortens the connection's busy
// timeout by a long wait for it, and returns the function that undoes
// both, and when the wait began.
func (c *gatedConn) take(ctx context.Context, owner *Session) (done func(), start time.Time, err error) {
	start = time.Now()
	waited, err := c.gate.acquire(ctx)
	if err != nil {
		return nil, start, err
	}
	c.gate.hold(owner)
	restore := c.shortenBusy(waited)
	return func() {
		restore()
		c.gate.release()
	}, start, nil
}

// shortenBusy lowers the busy timeout by a wait for the gate longer than
// gateSlack, so that the gate and SQLite's busy handler together wait no
// longer than the busy timeout; the returned function restores it.
func (c *gatedConn) shortenBusy(waited time.Duration) func() {
	if waited <= gateSlack || c.gate.wait <= 0 {
		return func() {}
	}
	left := max(c.gate.wait-waited, time.Millisecond)
	if _, err := c.Conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA busy_timeout = %d", left.Milliseconds()), nil); err != nil {
		return func() {}
	}
	return func() {
		c.Conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA busy_timeout = %d", c.gate.wait.Milliseconds()), nil)
	}
}

func (c *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := checkIsolation(sql.IsolationLevel(opts.Isolation)); err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		// A deferred BEGIN: readers share the database in WAL mode and need
		// no write lock. query_only makes SQLite refuse writes, as the
		// caller asked.
		if _, err := c.Conn.ExecContext(ctx, "PRAGMA query_only = 1", nil); err != nil {
			c.endQueryOnly()
			return nil, err
		}
		if _, err := c.Conn.ExecContext(ctx, "BEGIN", nil); err != nil {
			c.endQueryOnly()
			return nil, err
		}
		c.inTx = true
		return &gatedTx{conn: c}, nil
	}
	done, start, err := c.take(ctx, sessionOf(ctx))
	if err != nil {
		return nil, err
	}
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		done()
		return nil, c.gate.lockWait(err, time.Since(start))
	}
	c.inTx = true
	return &gatedTx{conn: c, inner: tx, done: done}, nil
}

func (c *gatedConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.inTx {
		if err := c.txRefuses(query); err != nil {
			return nil, err
		}
		res, err := c.Conn.ExecContext(ctx, query, args)
		c.txNote(query, err)
		return res, c.seen.note(err)
	}
	done, start, err := c.take(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := c.Conn.ExecContext(ctx, query, args)
	return res, c.seen.note(c.gate.lockWait(err, time.Since(start)))
}

// QueryContext runs a query; one that writes (INSERT … RETURNING) outside
// a transaction holds the gate until its rows are closed, as SQLite holds
// the write lock until then.
func (c *gatedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.inTx {
		if err := c.txRefuses(query); err != nil {
			return nil, err
		}
		rows, err := c.Conn.QueryContext(ctx, query, args)
		c.txNote(query, err)
		if err != nil {
			return nil, c.seen.note(err)
		}
		return &gatedRows{Rows: rows.(sqlengine.Rows), tx: c, seen: c.seen}, nil
	}
	if !c.writes(ctx, query) {
		rows, err := c.Conn.QueryContext(ctx, query, args)
		if err != nil {
			return nil, c.seen.note(err)
		}
		return &gatedRows{Rows: rows.(sqlengine.Rows), seen: c.seen}, nil
	}
	done, start, err := c.take(ctx, nil)
	if err != nil {
		return nil, err
	}
	rows, err := c.Conn.QueryContext(ctx, query, args)
	if err != nil {
		done()
		return nil, c.seen.note(c.gate.lockWait(err, time.Since(start)))
	}
	return &gatedRows{Rows: rows.(sqlengine.Rows), gate: c.gate, done: done, waited: time.Since(start), seen: c.seen}, nil
}

// writes reports whether query may write. A single statement that
// starts with SELECT or VALUES only reads; anything else is asked of
// SQLite (sqlite3_stmt_readonly), and an error counts as a write, to be
// reported by the real run. Several statements count as a write:
// the engines run them all, and SQLite judges only the first.
func (c *gatedConn) writes(ctx context.Context, query string) bool {
	if severalStatements(query) {
		return true
	}
	switch strings.ToUpper(firstKeyword(query)) {
	case "SELECT", "VALUES":
		return false
	}
	st, err := c.Conn.PrepareStmt(ctx, query)
	if err != nil {
		return true
	}
	defer st.Close()
	return !st.Readonly()
}

// PrepareContext prepares a statement whose executions outside a
// transaction take the gate when SQLite says the statement writes.
func (c *gatedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if c.inTx {
		if err := c.txRefuses(query); err != nil {
			return nil, err
		}
	}
	st, err := c.Conn.PrepareStmt(ctx, query)
	if err != nil {
		if c.inTx {
			c.txNote(query, err)
		}
		return nil, err
	}
	// SQLite judges the first statement only.
	return &gatedStmt{Stmt: st, conn: c, query: query, readonly: st.Readonly() && !severalStatements(query)}, nil
}

func (c *gatedConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// firstKeyword returns the first word of query after blanks, comments and
// opening parentheses.
func firstKeyword(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n\f(")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			i := strings.Index(q[2:], "*/")
			if i < 0 {
				return ""
			}
			q = q[i+4:]
		default:
			end := strings.IndexFunc(q, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
			})
			if end < 0 {
				return q
			}
			return q[:end]
		}
	}
}

// severalStatements reports whether query holds a statement after a
// semicolon: it skips string literals, quoted names and comments, and
// ignores trailing semicolons, blanks and comments.
func severalStatements(q string) bool {
	ended := false // a semicolon was seen outside quotes and comments
	for i := 0; i < len(q); i++ {
		switch ch := q[i]; {
		case ch == '\'' || ch == '"' || ch == '`' || ch == '[':
			if ended {
				return true
			}
			closing := ch
			if ch == '[' {
				closing = ']'
			}
			j := strings.IndexByte(q[i+1:], closing)
			if j < 0 {
				return false
			}
			i += j + 1 // a doubled quote reads as two literals, which is the same here
		case ch == '-' && strings.HasPrefix(q[i:], "--"):
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				return false
			}
			i += j
		case ch == '/' && strings.HasPrefix(q[i:], "/*"):
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return false
			}
			i += j + 3
		case ch == ';':
			ended = true
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f':
		default:
			if ended {
				return true
			}
		}
	}
	return false
}

// gatedStmt is a prepared statement that takes the gate to write outside a
// transaction.
type gatedStmt struct {
	sqlengine.Stmt
	conn     *gatedConn
	query    string
	readonly bool
}

func (s *gatedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if s.conn.inTx {
		if err := s.conn.txRefuses(s.query); err != nil {
			return nil, err
		}
		res, err := s.Stmt.ExecContext(ctx, args)
		s.conn.txNote(s.query, err)
		return res, s.conn.seen.note(err)
	}
	if s.readonly {
		res, err := s.Stmt.ExecContext(ctx, args)
		return res, s.conn.seen.note(err)
	}
	done, start, err := s.conn.take(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := s.Stmt.ExecContext(ctx, args)
	return res, s.conn.seen.note(s.conn.gate.lockWait(err, time.Since(start)))
}

func (s *gatedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if s.conn.inTx {
		if err := s.conn.txRefuses(s.query); err != nil {
			return nil, err
		}
		rows, err := s.Stmt.QueryContext(ctx, args)
		s.conn.txNote(s.query, err)
		if err != nil {
			return nil, s.conn.seen.note(err)
		}
		return &gatedRows{Rows: rows.(sqlengine.Rows), tx: s.conn, seen: s.conn.seen}, nil
	}
	if s.readonly {
		rows, err := s.Stmt.QueryContext(ctx, args)
		if err != nil {
			return nil, s.conn.seen.note(err)
		}
		return &gatedRows{Rows: rows.(sqlengine.Rows), seen: s.conn.seen}, nil
	}
	done, start, err := s.conn.take(ctx, nil)
	if err != nil {
		return nil, err
	}
	rows, err := s.Stmt.QueryContext(ctx, args)
	if err != nil {
		done()
		return nil, s.conn.seen.note(s.conn.gate.lockWait(err, time.Since(start)))
	}
	return &gatedRows{Rows: rows.(sqlengine.Rows), gate: s.conn.gate, done: done, waited: time.Since(start), seen: s.conn.seen}, nil
}

// gatedRows are the rows of a query. Those of a write outside a
// transaction hold the gate until closed (gate is set); those of a
// statement inside one report a failure that aborts the transaction (tx
// is set, see sqlite_txabort.go). The engines take the first step when the
// query runs, so a busy error met then is reported by the first Next, and
// classified with the time the query waited. Every query's rows report
// damage they meet to seen (sqlite_check.go).
type gatedRows struct {
	sqlengine.Rows
	gate   *writeGate // nil for a read or inside a transaction
	done   func()     // releases the gate; nil once called
	waited time.Duration
	nexted bool
	tx     *gatedConn // the connection whose transaction the rows belong to
	seen   *integrity
}

func (r *gatedRows) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err != nil && err != io.EOF {
		if !r.nexted && r.gate != nil {
			err = r.gate.lockWait(err, r.waited)
		}
		if r.tx != nil {
			r.tx.txNote("", err)
		}
		r.seen.note(err)
	}
	r.nexted = true
	return err
}

func (r *gatedRows) Close() error {
	err := r.Rows.Close()
	if r.done != nil {
		r.done()
		r.done = nil
	}
	return err
}

// The column-type methods database/sql looks for on rows.

func (r *gatedRows) ColumnTypeDatabaseTypeName(i int) string {
	return r.Rows.ColumnTypeDatabaseTypeName(i)
}

func (r *gatedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	return r.Rows.ColumnTypeNullable(i)
}

func (r *gatedRows) ColumnTypeScanType(i int) reflect.Type { return r.Rows.ColumnTypeScanType(i) }

// gatedTx ends a transaction and releases the gate it holds.
type gatedTx struct {
	conn  *gatedConn
	inner driver.Tx // nil for a read-only transaction begun by hand
	done  func()    // releases the gate; nil for a read-only transaction
}

func (t *gatedTx) Commit() error { return t.end("COMMIT") }

func (t *gatedTx) Rollback() error { return t.end("ROLLBACK") }

func (t *gatedTx) end(stmt string) error {
	defer func() {
		t.conn.inTx = false
		t.conn.aborted = nil
		if t.done != nil {
			t.done()
			t.done = nil
		}
	}()
	if first := t.conn.aborted; first != nil && stmt == "COMMIT" {
		t.end("ROLLBACK")
		return &txAbortedError{first: first, commit: true}
	}
	if t.inner != nil {
		if stmt == "COMMIT" {
			return t.commitGated()
		}
		return t.inner.Rollback()
	}
	_, err := t.conn.Conn.ExecContext(context.Background(), stmt, nil)
	if err != nil && stmt == "COMMIT" {
		t.conn.Conn.ExecContext(context.Background(), "ROLLBACK", nil)
	}
	if qerr := t.conn.endQueryOnly(); qerr != nil && err == nil {
		err = qerr
	}
	return err
}

// commitGated commits a write transaction unless the final snapshot
// began while it was open (see writeGate.shutWrites): it is then rolled
// back and fails with errCommitShut.
func (t *gatedTx) commitGated() error {
	g := t.conn.gate
	g.endMu.Lock()
	defer g.endMu.Unlock()
	if g.isShut() {
		t.inner.Rollback()
		return errCommitShut
	}
	return t.inner.Commit()
}

// busyTimeout reads the pool's busy timeout (the URL's _busy_timeout, or
// the default), which the gate's waits share.
func busyTimeout(ctx context.Context, db *sql.DB) (time.Duration, error) {
	var ms int64
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, nil
}
