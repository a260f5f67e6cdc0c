package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// pool_close.go makes closing the embedded *sql.DB release as much as
// DB.Close. Tools that take a *sql.DB close it themselves (GORM's
// sqlDB.Close, golang-migrate's m.Close); database/sql then calls its
// connector's Close, once, which is where the pool's other resources are
// released: the keeper connection of an in-memory database, the recovery
// probe and the integrity check.

// poolConnector is the connector of every pool Open makes, around the
// dialect's own (the SQLite write gate's, pgx's).
type poolConnector struct {
	driver.Connector
	release *releaser
	// connected records a connection made through it, to tell a
	// WithOpenDB function that opened its pool on something else.
	connected atomic.Bool
	// tried records any call of Connect, to tell a pool whose ping failed
	// without ever asking this connector (a WithOpenDB function that handed
	// back another, or closed, pool).
	tried atomic.Bool
	// wrapped reports a pool opened by a WithOpenDB function.
	wrapped bool
}

func (c *poolConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c.tried.Store(true)
	conn, err := c.Connector.Connect(ctx)
	if err == nil {
		c.connected.Store(true)
	}
	return conn, err
}

// Close is called by sql.DB.Close (the pool's or a wrapper's that passes
// io.Closer on, as otelsql's does).
func (c *poolConnector) Close() error {
	var err error
	if cl, ok := c.Connector.(io.Closer); ok {
		err = cl.Close()
	}
	return errors.Join(err, c.release.run())
}

// releaser runs, once, what a pool's owner must release.
type releaser struct {
	mu   sync.Mutex
	fns  []func() error
	once sync.Once
	err  error
}

// add appends fn; first puts it before the others.
func (r *releaser) add(fn func() error, first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if first {
		r.fns = append([]func() error{fn}, r.fns...)
	} else {
		r.fns = append(r.fns, fn)
	}
}

// run calls every function, in order, the first time; later calls return
// the same error.
func (r *releaser) run() error {
	r.once.Do(func() {
		r.mu.Lock()
		fns := r.fns
		r.mu.Unlock()
		var errs []error
		for _, fn := range fns {
			errs = append(errs, fn())
		}
		r.err = errors.Join(errs...)
	})
	return r.err
}

// openPool opens the pool of a candidate on inner, through the WithOpenDB
// function when there is one.
func openPool(o *options, inner driver.Connector, rel *releaser) (*sql.DB, *poolConnector, error) {
	pc := &poolConnector{Connector: inner, release: rel}
	if o.openDB == nil {
		return sql.OpenDB(pc), pc, nil
	}
	pc.wrapped = true
	db := o.openDB(pc)
	if db == nil {
		return nil, nil, permanent(&hookError{hook: "WithOpenDB", err: errors.New("the function returned a nil *sql.DB")})
	}
	return db, pc, nil
}

// checkOpenedOn reports a WithOpenDB function whose pool did not connect
// through the connector it was given: it would bypass the SQLite write gate
// and Close's releases. pingErr is the outcome of the pool's first ping;
// when it failed without the connector ever being asked (a pool opened on
// another connector, or one already closed, such as a cached pool of an
// earlier candidate) and ctx is not done, the function is blamed, not the
// database; otherwise pingErr is returned as it is.
func (c *poolConnector) checkOpenedOn(ctx context.Context, pingErr error) error {
	switch {
	case pingErr == nil && c.connected.Load():
		return nil
	case pingErr == nil:
		return permanent(&hookError{hook: "WithOpenDB", err: errors.New("the pool it returned did not connect through the connector it was given; open the pool on that connector (otelsql.OpenDB(c), sql.OpenDB(wrap(c)))")})
	case c.wrapped && !c.tried.Load() && ctx.Err() == nil:
		return permanent(&hookError{hook: "WithOpenDB", err: fmt.Errorf("the pool it returned failed without asking the connector it was given (%w); open a new pool on that connector each call (otelsql.OpenDB(c), sql.OpenDB(wrap(c)))", pingErr)})
	}
	return pingErr
}
