package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pg_failover.go: what the PostgreSQL pool does so that a failover, or a
// host that stops answering, costs callers as little as possible. Measured
// against a real primary/standby pair (RELIABILITY.md, "Failover"):
//
//   - A connection opened on a writable server is closed before its next
//     use once that server reports being read-only (PostgreSQL 14 and
//     later report it on every connection, without a query): an old
//     primary fenced read-only after a failover, or a server put in
//     read-only mode, would otherwise keep failing writes with SQLSTATE
//     25006 on every pooled connection until ConnMaxLifetime (30 min).
//     Each such connection fails at most the one statement that saw the
//     change; the next connection goes through target_session_attrs again.
//   - With several hosts and a target_session_attrs that makes pgx check
//     each server's role, new connections try first the host the last
//     connection reached, and last a host whose latest attempt hung: after
//     a failover whose old primary hangs (a lost machine, a network
//     partition, a provider that fences it silently), a connection waits
//     out its share of the connect timeout on it once, not every time.
//   - With several hosts, the connect timeout bounds a whole connection
//     attempt: each host gets an equal share of it (libpq gives each host
//     all of it), so a silent first host cannot use up the time Open has
//     for the primary and leave a live second host untried.

// pgConnector returns the database/sql connector for cfg: pgx's, with the
// hooks above unless o.pgPlain, and in pooler mode prepared statements that
// name nothing on the server (pg_pooler.go). after, when not nil, is the
// caller's WithPgxAfterConnect functions (hooks.go), run on each new
// connection after the hooks above.
func pgConnector(o *options, cfg *pgx.ConnConfig, after func(context.Context, *pgx.Conn) error) driver.Connector {
	shareConnectTimeout(cfg)
	if o.pgPlain {
		if after != nil {
			return stdlib.GetConnector(*cfg, stdlib.OptionAfterConnect(after))
		}
		return stdlib.GetConnector(*cfg)
	}
	w := &writableWatch{logger: o.logger}
	hp := newHostPreference(cfg)
	opts := []stdlib.OptionOpenDB{
		stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
			w.opened(c)
			hp.reached(c)
			if after != nil {
				return after(ctx, c)
			}
			return nil
		}),
		stdlib.OptionResetSession(func(_ context.Context, c *pgx.Conn) error {
			return w.check(c)
		}),
	}
	if hp != nil {
		opts = append(opts, stdlib.OptionBeforeConnect(hp.order))
	}
	c := stdlib.GetConnector(*cfg, opts...)
	if poolerMode(cfg) {
		return poolerConnector{c}
	}
	return c
}

// shareConnectTimeout gives each distinct host of cfg an equal share of
// its connect timeout (see the top of this file).
func shareConnectTimeout(cfg *pgx.ConnConfig) {
	hosts := map[string]bool{}
	for _, fb := range append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}, cfg.Fallbacks...) {
		_, addr := pgconn.NetworkAddress(fb.Host, fb.Port)
		hosts[addr] = true
	}
	if n := len(hosts); n > 1 && cfg.ConnectTimeout > 0 {
		cfg.ConnectTimeout = max(cfg.ConnectTimeout/time.Duration(n), time.Millisecond)
	}
}

// writableKey marks, in a connection's pgconn custom data, a connection
// opened on a writable server.
const writableKey = "dbfallback.opened-writable"

// writableWatch closes connections whose server turned read-only.
type writableWatch struct {
	logger *slog.Logger
}

// opened records whether the server of a new connection was writable:
// neither a hot standby nor read-only by default. Servers before
// PostgreSQL 14 do not report these settings; their connections are
// never marked, and never closed for this.
func (w *writableWatch) opened(c *pgx.Conn) {
	pc := c.PgConn()
	if pc.ParameterStatus("in_hot_standby") == "off" && pc.ParameterStatus("default_transaction_read_only") == "off" {
		pc.CustomData()[writableKey] = true
	}
}

// check is run by database/sql before it reuses a connection: a
// connection opened writable whose server now reports read-only is bad,
// so database/sql closes it and takes another.
func (w *writableWatch) check(c *pgx.Conn) error {
	pc := c.PgConn()
	if pc.CustomData()[writableKey] != true {
		return nil
	}
	if pc.ParameterStatus("in_hot_standby") == "on" || pc.ParameterStatus("default_transaction_read_only") == "on" {
		w.logger.Warn("dbfallback: closed a connection whose server turned read-only (a failover or a fenced primary?); new connections go through target_session_attrs again",
			"server", remoteAddr(pc))
		return driver.ErrBadConn
	}
	return nil
}

// remoteAddr is the address a connection reached ("" when unknown).
func remoteAddr(pc *pgconn.PgConn) string {
	if nc := pc.Conn(); nc != nil && nc.RemoteAddr() != nil {
		return nc.RemoteAddr().String()
	}
	return ""
}

// hostPreference orders the hosts of each new connection: first those
// leading to the server the last connection reached, then the others in
// the URL's order, last those whose latest attempt hung until its share
// of the connect timeout ran out. It applies only where the order of
// hosts cannot change which server is chosen, only how fast: several
// hosts, and a target_session_attrs that makes pgx check each server
// (pgx then sets ValidateConnect). With target_session_attrs=any the
// first host that answers wins, so the URL's order is kept.
type hostPreference struct {
	lookup pgconn.LookupFunc
	dial   pgconn.DialFunc
	share  time.Duration // each host's connect timeout

	mu    sync.Mutex
	addrs map[string][]string // host name → what its last lookup returned
	last  string              // the address the last connection reached
	hung  map[string]bool     // addresses whose latest attempt timed out
}

// newHostPreference returns nil where it does not apply; otherwise it
// wraps cfg's LookupFunc, to learn which addresses each host name has,
// and its DialFunc, to learn which attempts time out.
func newHostPreference(cfg *pgx.ConnConfig) *hostPreference {
	if len(cfg.Fallbacks) == 0 || cfg.ValidateConnect == nil {
		return nil
	}
	h := &hostPreference{lookup: cfg.LookupFunc, dial: cfg.DialFunc, share: cfg.ConnectTimeout,
		addrs: map[string][]string{}, hung: map[string]bool{}}
	if h.lookup == nil {
		h.lookup = net.DefaultResolver.LookupHost
	}
	if h.dial == nil {
		h.dial = (&net.Dialer{}).DialContext
	}
	cfg.LookupFunc, cfg.DialFunc = h.lookupHost, h.dialHost
	return h
}

func (h *hostPreference) lookupHost(ctx context.Context, host string) ([]string, error) {
	addrs, err := h.lookup(ctx, host)
	if err == nil {
		h.mu.Lock()
		h.addrs[host] = addrs
		h.mu.Unlock()
	}
	return addrs, err
}

// dialHost dials as the config did and watches the attempt's context,
// which pgx gives each host (and ends, by cancelling it, when the
// connection succeeds). The host hung when that context ends by its
// deadline while the attempt is still under way, and that deadline gave
// the attempt (nearly) its whole share: a caller's shorter deadline does
// not mark it, nor does the context of a host whose attempt failed
// earlier (pgx keeps each host's context until it has tried them all).
// Both tests compare fixed instants, not the time the check happens to
// run, so a slow machine does not mark a host that was not slow.
func (h *hostPreference) dialHost(ctx context.Context, network, addr string) (net.Conn, error) {
	start := time.Now()
	deadline, ok := ctx.Deadline()
	a := &attempt{}
	context.AfterFunc(ctx, func() {
		if !ok || h.share <= 0 || ctx.Err() != context.DeadlineExceeded || deadline.Sub(start) < h.share*9/10 {
			return
		}
		if at := a.endedAt(); !at.IsZero() && at.Before(deadline) {
			return
		}
		h.mu.Lock()
		h.hung[addr] = true
		h.mu.Unlock()
	})
	c, err := h.dial(ctx, network, addr)
	if err != nil {
		a.finish()
		return nil, err
	}
	return &attemptConn{Conn: c, a: a}, nil
}

// attempt is one connection attempt to one address; it ends when its
// connection is closed (pgx closes it when the attempt fails).
type attempt struct{ ended atomic.Int64 } // unix nanoseconds, 0 while under way

func (a *attempt) finish() { a.ended.CompareAndSwap(0, time.Now().UnixNano()) }

func (a *attempt) endedAt() time.Time {
	if n := a.ended.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// attemptConn is a dialled connection that tells its attempt when it is
// closed.
type attemptConn struct {
	net.Conn
	a *attempt
}

func (c *attemptConn) Close() error {
	c.a.finish()
	return c.Conn.Close()
}

// reached records the server a new connection reached.
func (h *hostPreference) reached(c *pgx.Conn) {
	if h == nil {
		return
	}
	if addr := remoteAddr(c.PgConn()); addr != "" {
		h.mu.Lock()
		h.last = addr
		delete(h.hung, addr)
		h.mu.Unlock()
	}
}

// order is a BeforeConnect hook (see hostPreference). cfg is a shallow
// copy; its Fallbacks are replaced, never modified in place.
func (h *hostPreference) order(_ context.Context, cfg *pgx.ConnConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == "" && len(h.hung) == 0 {
		return nil
	}
	all := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	var first, rest, hung []*pgconn.FallbackConfig
	for _, fb := range all {
		switch {
		case h.leadsToHung(fb):
			hung = append(hung, fb)
		case h.last != "" && h.leadsTo(fb, h.last):
			first = append(first, fb)
		default:
			rest = append(rest, fb)
		}
	}
	ordered := append(append(first, rest...), hung...)
	cfg.Host, cfg.Port, cfg.TLSConfig = ordered[0].Host, ordered[0].Port, ordered[0].TLSConfig
	cfg.Fallbacks = ordered[1:]
	return nil
}

func (h *hostPreference) leadsToHung(fb *pgconn.FallbackConfig) bool {
	for addr := range h.hung {
		if h.leadsTo(fb, addr) {
			return true
		}
	}
	return false
}

// leadsTo reports whether fb's host reaches addr: a socket directory by
// its path, a host name by what its last lookup returned (an IP address
// looks up as itself).
func (h *hostPreference) leadsTo(fb *pgconn.FallbackConfig, addr string) bool {
	if _, a := pgconn.NetworkAddress(fb.Host, fb.Port); a == addr {
		return true
	}
	for _, a := range h.addrs[fb.Host] {
		if _, _, err := net.SplitHostPort(a); err == nil {
			if a == addr {
				return true
			}
			continue
		}
		if _, a := pgconn.NetworkAddress(a, fb.Port); a == addr {
			return true
		}
	}
	return false
}

// pingServer pings a PostgreSQL pool as PingContext does, and returns
// the address of the server that answered. Unlike PingContext, whose
// driver turns every failure into driver.ErrBadConn, it returns the
// error the server or the pooler sent (PgBouncer's "server login has been
// failing", a timeout). A ping that fails on a pooled connection (one
// lost while idle) is tried once more on another, as database/sql does,
// unless ctx is done; a failure to connect is not tried again.
func pingServer(ctx context.Context, db *sql.DB) (string, error) {
	addr, connected, err := pingOnce(ctx, db)
	if err != nil && connected && ctx.Err() == nil {
		addr, _, err = pingOnce(ctx, db)
	}
	return addr, err
}

// pingOnce pings on one connection of db; connected reports that it got
// one.
func pingOnce(ctx context.Context, db *sql.DB) (addr string, connected bool, err error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	wrapped := false
	err = c.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			// A WithOpenDB wrapper's connection (otelsql's, say) hides
			// pgx's: ping through it, without the address.
			wrapped = true
			return nil
		}
		if err := pc.Conn().Ping(ctx); err != nil {
			return err
		}
		addr = remoteAddr(pc.Conn().PgConn())
		return nil
	})
	if wrapped {
		err = c.PingContext(ctx)
	}
	return addr, true, err
}
