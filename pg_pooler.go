package dbfallback

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pg_pooler.go: PostgreSQL behind a transaction pooler (PgBouncer in
// transaction mode, Supabase's port 6543, most managed poolers). Such a
// pooler hands each transaction, or each statement outside one, to
// whichever server connection is free, so nothing that lives on a server
// connection survives from one to the next, named prepared statements
// included: PgBouncer supports them only from 1.21, Supabase's pooler not
// at all.
//
// pgx avoids named statements for queries when told to
// (default_query_exec_mode=exec, which Validate writes for Prisma's
// pgbouncer=true), but database/sql's Prepare still makes one on the
// server: pgx's stdlib driver names every statement it prepares. Through
// a transaction pooler the statement is then missing from the next server
// connection ("prepared statement … does not exist", 26000) or already
// there from another client ("… already exists", 42P05). In pooler mode
// this file prepares unnamed statements instead, as pgx does in those exec
// modes: Prepare sends Parse and Describe for the unnamed statement in one
// round trip (so a statement with a syntax error still fails at Prepare,
// and the number of arguments is known), and each execution sends the SQL
// again with its arguments, in one round trip, in the URL's exec mode.

// poolerMode reports whether the URL tells pgx to use no named prepared
// statements (default_query_exec_mode=exec or simple_protocol): the way
// pgx's documentation says to run behind a transaction pooler.
func poolerMode(cfg *pgx.ConnConfig) bool {
	return cfg.DefaultQueryExecMode == pgx.QueryExecModeExec || cfg.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol
}

// poolerTarget reports pooler mode from a validated target, as
// poolerMode does from pgx's config.
func poolerTarget(t Target) bool {
	switch t.Params["default_query_exec_mode"] {
	case "exec", "simple_protocol":
		return true
	}
	return false
}

// poolerWaitHint explains a timeout through a pooler: PgBouncer finishes
// a client's login from what it knows and then holds its queries while
// the server behind it does not answer; a login it cannot finish it holds
// until client_login_timeout. After the server refused PgBouncer's own
// login (a wrong password in its userlist), PgBouncer 1.18 holds the next
// clients the same way until server_login_retry has passed.
const poolerWaitHint = "through a connection pooler (the URL says pgbouncer=true or default_query_exec_mode=exec): " +
	"PgBouncer holds logins and queries while the database server behind it is down or unreachable from it, " +
	"or refuses PgBouncer's login (until server_login_retry has passed), " +
	"for up to client_login_timeout (60s by default) and query_wait_timeout (120s), " +
	"so a timeout here usually means that server is down or refuses PgBouncer's login (PgBouncer's log says which)"

// poolerConnector makes connections whose Prepare names nothing on the
// server.
type poolerConnector struct{ driver.Connector }

// Connect implements driver.Connector.
func (c poolerConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &poolerConn{dc.(*stdlib.Conn)}, nil
}

// stdlibConn names the embedded connection so that its Conn method is
// promoted (a field named Conn would hide it).
type stdlibConn = stdlib.Conn

// poolerConn is pgx's stdlib connection with unnamed prepared statements.
// It has every method of *stdlib.Conn, Conn() *pgx.Conn included, so code
// reaching pgx through sql.Conn.Raw works when it asserts
// interface{ Conn() *pgx.Conn } (not when it asserts *stdlib.Conn).
type poolerConn struct{ *stdlibConn }

// Prepare implements driver.Conn.
func (c *poolerConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext prepares the unnamed statement to check query and learn
// its parameters; nothing stays on the server.
func (c *poolerConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	pc := c.Conn().PgConn()
	if pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	sd, err := pc.Prepare(ctx, "", query, nil)
	if err != nil {
		return nil, err
	}
	return &poolerStmt{conn: c.stdlibConn, sd: sd}, nil
}

// poolerStmt runs its SQL text each time, in the URL's exec mode.
type poolerStmt struct {
	conn *stdlib.Conn
	sd   *pgconn.StatementDescription
}

// Close implements driver.Stmt; there is nothing to release.
func (s *poolerStmt) Close() error { return nil }

// NumInput implements driver.Stmt.
func (s *poolerStmt) NumInput() int { return len(s.sd.ParamOIDs) }

// Exec implements driver.Stmt; database/sql calls ExecContext instead.
func (s *poolerStmt) Exec([]driver.Value) (driver.Result, error) {
	return nil, errors.New("dbfallback: Stmt.Exec is not implemented; use ExecContext")
}

// Query implements driver.Stmt; database/sql calls QueryContext instead.
func (s *poolerStmt) Query([]driver.Value) (driver.Rows, error) {
	return nil, errors.New("dbfallback: Stmt.Query is not implemented; use QueryContext")
}

// ExecContext implements driver.StmtExecContext.
func (s *poolerStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.conn.ExecContext(ctx, s.sd.SQL, args)
}

// QueryContext implements driver.StmtQueryContext.
func (s *poolerStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.conn.QueryContext(ctx, s.sd.SQL, args)
}

// fromPooler reports whether a PostgreSQL error came from something other
// than a PostgreSQL server: PostgreSQL (9.6 and later) sends every error
// with its unlocalized severity and the source file, line and routine
// that raised it; PgBouncer sends a severity, a code and a message only.
func fromPooler(pg *pgconn.PgError) bool {
	return pg.SeverityUnlocalized == "" && pg.File == "" && pg.Line == 0 && pg.Routine == ""
}

// poolerConfigErrors are the PgBouncer errors (all SQLSTATE 08P01) that
// connecting again cannot fix, by the start of their message: PgBouncer
// sends nothing else to tell them from its transient 08P01 errors
// ("client_login_timeout (server down)", "server login has been failing,
// try again later (server_login_retry)", "no more connections allowed
// (max_client_conn)", "query_wait_timeout", "pgbouncer cannot connect to
// server").
var poolerConfigErrors = []string{
	"no such database",
	"no such user",
	"unsupported startup parameter",
	"bouncer config error",
	"login rejected",
	"not allowed",
	"SSL required",
	"TLS connection required",
	"certificate authentication failed",
	"password authentication failed",
	"SASL authentication failed", // a wrong password under auth_type = scram-sha-256
	"empty password returned by client",
	"client selected an invalid SASL authentication mechanism",
	"\"trust\" authentication failed",
	"username too long",
	"password too long",
}

// protocolViolationPermanent classifies SQLSTATE 08P01: from PostgreSQL it
// is a protocol violation, which sending the same bytes again repeats
// (permanent); from a pooler it is how PgBouncer reports nearly
// everything, a server that is down or busy included (transient), except
// its configuration errors (permanent).
func protocolViolationPermanent(pg *pgconn.PgError) bool {
	if !fromPooler(pg) {
		return true
	}
	for _, prefix := range poolerConfigErrors {
		if strings.HasPrefix(pg.Message, prefix) {
			return true
		}
	}
	return false
}
