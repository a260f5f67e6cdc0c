package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Strategy decides which databases [Open] tries, in order.
type Strategy interface {
	// Candidates returns the targets to try, in order. Open stops at the
	// first that answers; when none does it returns ErrNoDatabase.
	Candidates(r Resolution) []Target
}

// StrategyFunc adapts a function to [Strategy].
type StrategyFunc func(r Resolution) []Target

// Candidates calls f(r).
func (f StrategyFunc) Candidates(r Resolution) []Target { return f(r) }

// BuiltinStrategy is the type of the built-in strategies, [PreferPrimary],
// [PrimaryOnly] and [SQLiteOnly], as [database/sql.IsolationLevel] is the
// type of the isolation levels. Being constants, they cannot be reassigned.
// A value outside the three behaves as PreferPrimary.
type BuiltinStrategy int

// The built-in strategies.
const (
	// PreferPrimary (the default) tries the primary, then the SQLite file,
	// then memory. Open fails only when ctx is done.
	PreferPrimary BuiltinStrategy = iota
	// PrimaryOnly tries the primary alone: for production, where serving
	// from a different database than intended is worse than failing. Open
	// returns an error wrapping ErrNoDatabase and the cause when the
	// primary is missing, invalid or down.
	PrimaryOnly
	// SQLiteOnly ignores the primary and opens the SQLite file, then memory.
	SQLiteOnly
)

// Candidates implements [Strategy].
func (s BuiltinStrategy) Candidates(r Resolution) []Target {
	var out []Target
	if s != SQLiteOnly && !r.Primary.IsZero() {
		out = append(out, r.Primary)
	}
	if s != PrimaryOnly {
		out = append(out, r.Fallbacks...)
	}
	return out
}

// String returns the strategy's name, for logs.
func (s BuiltinStrategy) String() string {
	switch s {
	case PreferPrimary:
		return "PreferPrimary"
	case PrimaryOnly:
		return "PrimaryOnly"
	case SQLiteOnly:
		return "SQLiteOnly"
	}
	return fmt.Sprintf("BuiltinStrategy(%d)", int(s))
}

// Attempt records one candidate Open tried.
type Attempt struct {
	// Target is the candidate (print it: it is redacted).
	Target Target
	// Duration is the time spent on it, retries included.
	Duration time.Duration
	// Tries counts connection attempts (more than one under WithPrimaryWait).
	Tries int
	// Err is why it was not used, redacted; nil for the database in use.
	Err error
}

// DB is an open database: a *sql.DB for the chosen candidate plus the story
// of how it was chosen. It is safe for concurrent use; the embedded pool is
// the caller's to use like any *sql.DB, but Close the DB, not the pool.
type DB struct {
	*sql.DB

	target    Target
	primary   Target
	fallback  bool
	ephemeral bool
	reason    string
	attempts  []Attempt
	release   *releaser // what closing the pool releases (pool_close.go)
	logger    *slog.Logger

	probeUp   atomic.Int32 // 0 no probe result yet, 1 primary answers, 2 it does not
	stopProbe context.CancelFunc
	integrity *integrity         // damage found in a SQLite file, by a statement or the background check (sqlite_check.go)
	stopCheck context.CancelFunc // stops that check
	stranded  []Stranded         // rows left in fallback files (stranded.go)
	snap      *snapshotter       // snapshots of the SQLite file (snapshot.go); nil when none
	gate      *writeGate         // the SQLite pool's write gate (sqlite_gate.go); nil for PostgreSQL
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Target returns the database in use (redacted when printed).
func (db *DB) Target() Target { return db.target }

// Dialect returns Postgres or SQLite.
func (db *DB) Dialect() Dialect { return db.target.Dialect }

// Fallback reports whether the database in use is not the primary: no
// primary was configured, it was invalid, or it did not answer.
func (db *DB) Fallback() bool { return db.fallback }

// Reason explains, redacted, why the primary is not in use ("" when it
// is) and why better SQLite locations were skipped, plus anything the
// operator should know, such as a corrupt SQLite file that was moved aside.
func (db *DB) Reason() string { return db.reason }

// Ephemeral reports whether data may vanish when the process restarts: an
// in-memory database, or a SQLite file in a location nobody vouched for
// (see [WithPersistent]) while no snapshot of it is safe in a durable
// snapshot directory ([WithSnapshotDir]). With snapshots it is false
// while the last snapshot succeeded, true before the first and after a
// failure; the writes since the last snapshot may still be lost (see
// [DB.Health]). Safe for concurrent use.
func (db *DB) Ephemeral() bool { return db.ephemeral && !db.snap.durable() }

// Attempts returns every candidate tried, in order, the last being the
// database in use.
func (db *DB) Attempts() []Attempt { return append([]Attempt(nil), db.attempts...) }

// Close closes the pool and releases what it holds: the recovery probe,
// the background integrity check, the connection that keeps an in-memory
// database alive. With snapshots ([WithSnapshotDir]) it then writes a
// final one when the data changed, bounded by 3 s; when that fails the
// error says which writes are only in the local file. It is idempotent
// and safe to call concurrently. Closing the embedded *sql.DB instead (as
// GORM's sqlDB.Close and golang-migrate's Close do) releases the same,
// unless a [WithOpenDB] wrapper keeps database/sql from calling the
// connector's Close.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		// The releaser runs after the pool closed: no write of this
		// process can follow the final snapshot.
		db.closeErr = errors.Join(db.DB.Close(), db.release.run())
	})
	return db.closeErr
}

// stopBackground stops the snapshot loop, the recovery probe and the
// integrity check and waits for them; it runs when the pool closes,
// whoever closes it.
func (db *DB) stopBackground() error {
	db.snap.stopLoop()
	if db.stopProbe != nil {
		db.stopProbe()
	}
	if db.stopCheck != nil {
		db.stopCheck()
	}
	db.wg.Wait()
	return nil
}

// Open resolves the configuration (see [Resolve]), asks the [Strategy] for
// candidates and opens the first that answers: each is connected and pinged
// within its connect timeout, tuned for its dialect (see [PoolConfig]) and
// passed to the [WithInit] hooks. It logs one line saying which database
// is live, why, and whether its data is ephemeral.
//
// With the default [PreferPrimary] strategy Open returns an error only
// when ctx is done or an init hook reports a bug: a missing, invalid,
// refusing, silent or misconfigured primary costs at most its connect
// timeout, then SQLite takes over. With [PrimaryOnly] it returns an error
// wrapping [ErrNoDatabase] instead.
//
// When ctx has a deadline, every candidate but the last gets only the part
// of the remaining time that leaves the rest of the chain a reserve of
// min(max(remaining/4, 250ms), 2s, remaining/2): a caller who gives Open
// one second against a silent primary gets SQLite within that second.
// [WithPrimaryWait] retries stop at the same point.
//
// An error from a [WithInit] hook that [IsUnavailable] recognises (the
// connection was lost, the disk is full, the database is busy) moves on to
// the next candidate; any other hook error fails Open with that error,
// under every strategy, since falling back would move the service's data
// to another database. The error's text is redacted; errors.Is and
// errors.As see the hook's own error.
//
// SQLite files: a directory, named pipe, socket or device is never opened
// (nor a location where SQLite's -wal, -journal or -shm is one), a file
// that is not SQLite is left untouched and skipped, a damaged SQLite
// database is moved aside under a name no other move can take, and when a
// file location fails to open, or is still opening when its share of the
// deadline ends (another process holds it locked), the next one is tried
// before memory. Once a file is in use, a background check reads all its
// pages and [DB.Health] reports the outcome, or the damage a statement
// met first.
//
// When Open lands on the primary while a SQLite fallback file holds rows
// written while the primary was not in use, Reason, Health, [DB.Stranded]
// and a log line say so until [MarkMerged] is called.
// Close the DB when done.
func Open(ctx context.Context, opts ...Option) (*DB, error) {
	o := buildOptions(opts)
	r, err := resolve(ctx, &o)
	if err != nil {
		return nil, err
	}
	o.snap = newSnapshotter(&o)
	start := time.Now()
	var attempts []Attempt
	var causes []error
	if r.Primary.IsZero() {
		causes = append(causes, errors.New(r.Reason()))
	}
	candidates := withoutEngineless(&o, o.strategy.Candidates(r))
	for i, t := range candidates {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cctx, cancel, budget := candidateContext(ctx, i < len(candidates)-1)
		e, a := tryCandidate(cctx, &o, r, t)
		budget.explain(ctx, cctx, &a)
		cancel()
		attempts = append(attempts, a)
		if a.Err != nil {
			var he *hookError
			if errors.As(a.Err, &he) {
				o.logger.Error("dbfallback: a hook failed; not falling back to another database", "target", t, "error", a.Err.Error())
				return nil, a.Err
			}
			causes = append(causes, a.Err)
			continue
		}
		db := newDB(&o, r, e, attempts)
		if err := runInits(ctx, &o, db); err != nil {
			db.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			attempts[len(attempts)-1].Err = err
			if !IsUnavailable(err) {
				o.logger.Error("dbfallback: init hook failed; not falling back to another database", "target", t, "error", err.Error())
				return nil, err
			}
			causes = append(causes, err)
			continue
		}
		db.trackStranded(ctx, &o, r)
		o.snap.start(db)
		db.startIntegrityCheck()
		db.startProbe(&o, r)
		db.logOpen(time.Since(start))
		return db, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = fmt.Errorf("%w: %w", ErrNoDatabase, errors.Join(causes...))
	o.logger.Error("dbfallback: no database available", "error", err.Error())
	return nil, err
}

// tryCandidate opens one target, retrying a primary's transient failures
// for up to WithPrimaryWait (see primaryWaitPolicy).
func tryCandidate(ctx context.Context, o *options, r Resolution, t Target) (*engine, Attempt) {
	a := Attempt{Target: t}
	start := time.Now()
	isPrimary := !r.Primary.IsZero() && sameTarget(t, r.Primary)
	policy := primaryWaitPolicy
	policy.budget = o.primaryWait
	if !isPrimary || o.primaryWait <= 0 {
		policy.tries = 1
	}
	var e *engine
	tries, err := retry(ctx, policy, func() error {
		var err error
		e, err = openTarget(ctx, o, r, t)
		if err == nil {
			return nil
		}
		err = describeFailure(r, t, err)
		if IsPermanent(err) {
			return stop(err)
		}
		return err
	})
	a.Tries, a.Err, a.Duration = tries, err, time.Since(start)
	if err != nil {
		return nil, a
	}
	return e, a
}

func openTarget(ctx context.Context, o *options, r Resolution, t Target) (*engine, error) {
	switch t.Dialect {
	case Postgres:
		return openPostgres(ctx, o, r, t, connectTimeout(o, r, t))
	case SQLite:
		if _, err := o.sqliteEngine(); err != nil {
			return nil, permanent(err)
		}
		return openSQLiteBounded(ctx, o, t)
	}
	return nil, permanent(fmt.Errorf("unknown dialect %q", t.Dialect))
}

func newDB(o *options, r Resolution, e *engine, attempts []Attempt) *DB {
	chosen := attempts[len(attempts)-1].Target
	db := &DB{
		DB:        e.db,
		target:    chosen,
		primary:   r.Primary,
		fallback:  r.Primary.IsZero() || !sameTarget(chosen, r.Primary),
		ephemeral: r.Ephemeral(chosen),
		attempts:  attempts,
		release:   e.release,
		logger:    o.logger,
		integrity: e.integrity,
		gate:      e.gate,
	}
	e.release.add(db.stopBackground, true)
	e.release.add(func() error { return db.snap.finish() }, false) // last: after the pool and the keeper closed
	if db.integrity == nil {
		db.integrity = &integrity{}
	}
	db.integrity.setLogger(o.logger)
	var why []string
	if db.fallback {
		if r.Primary.IsZero() {
			why = append(why, r.Reason())
		}
		for _, a := range attempts[:len(attempts)-1] {
			why = append(why, fmt.Sprintf("%s: %v", a.Target, a.Err))
		}
	}
	if db.fallback && chosen.Dialect == SQLite {
		// Say why better SQLite locations were passed over at Resolve
		// (the attempts above say why others failed to open).
		for _, p := range r.Paths {
			if !chosen.Memory && p.Path == chosen.Path {
				break
			}
			if p.Err != nil {
				why = append(why, fmt.Sprintf("SQLite location %s skipped: %v", p.Origin, p.Err))
			}
		}
	}
	if e.note != "" {
		why = append(why, e.note)
	}
	db.reason = strings.Join(why, "; ")
	return db
}

func (db *DB) logOpen(took time.Duration) {
	attrs := []any{
		"dialect", db.target.Dialect,
		"target", db.target,
		"fallback", db.fallback,
		"ephemeral", db.Ephemeral(),
		"attempts", len(db.attempts),
		"took", took.Round(time.Millisecond).String(),
	}
	if db.reason != "" {
		attrs = append(attrs, "reason", db.reason)
	}
	msg := "dbfallback: using the primary database"
	level := slog.LevelInfo
	ephemeral := db.Ephemeral()
	switch {
	case db.fallback && ephemeral:
		msg, level = "dbfallback: using a fallback database; data is ephemeral", slog.LevelWarn
	case db.fallback:
		msg, level = "dbfallback: using a fallback database", slog.LevelWarn
	case ephemeral:
		msg, level = "dbfallback: using the primary database; data is ephemeral", slog.LevelWarn
	}
	db.logger.Log(context.Background(), level, msg, attrs...)
}
