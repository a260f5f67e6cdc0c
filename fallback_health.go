package dbfallback

import (
	"context"
	"time"
)

// healthTimeout bounds a health ping when ctx has no earlier deadline.
const healthTimeout = 2 * time.Second

// Health is a snapshot of the database's state, safe to serve as JSON: the
// target is redacted and no field holds a secret.
type Health struct {
	// Status is "up" when the database answered a ping and no damage was
	// found in its file, "down" otherwise.
	Status string `json:"status"`
	// Dialect is "postgres" or "sqlite".
	Dialect Dialect `json:"dialect"`
	// Fallback reports that the database in use is not the primary.
	Fallback bool `json:"fallback"`
	// Reason says why the primary is not in use.
	Reason string `json:"reason,omitempty"`
	// Ephemeral reports that data may vanish on restart.
	Ephemeral bool `json:"ephemeral"`
	// Target is the database in use, redacted.
	Target string `json:"target"`
	// LatencyMS is the ping's round trip in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
	// Server is the address (host:port, or a socket path) of the
	// PostgreSQL server that answered the ping, or of the pooler in front
	// of it: with several hosts in the URL, it says which one is serving,
	// the new primary after a failover. Empty for SQLite and when the ping
	// failed.
	Server string `json:"server,omitempty"`
	// Error is the ping's failure, redacted, when Status is "down".
	Error string `json:"error,omitempty"`
	// PrimaryUp is the recovery probe's latest answer while on a fallback:
	// true when the primary answers again. Absent when no probe has run.
	PrimaryUp *bool `json:"primary_up,omitempty"`
	// Integrity is the background check of a SQLite file (PRAGMA
	// quick_check): "checking", "ok", "damaged: <what SQLite found>" (and
	// Status is then "down"), or "unknown: <why the check failed>". A
	// statement of the pool that fails on damage makes it "damaged" at
	// once, while the check still runs. Empty for PostgreSQL and in-memory
	// databases.
	Integrity string `json:"integrity,omitempty"`
	// Stranded lists rows that SQLite fallback files hold and the primary
	// does not (see [DB.Stranded]); empty when there are none.
	Stranded []Stranded `json:"stranded,omitempty"`
	// Snapshot is the state of the SQLite file's snapshots to a durable
	// directory (see [WithSnapshotDir]): the last one's time, age and size,
	// and the last error. Absent without snapshots.
	Snapshot *SnapshotHealth `json:"snapshot,omitempty"`
}

// Health pings the database, within 2s unless ctx ends sooner, and reports
// its state. It never returns an error: a failed ping is Status "down".
func (db *DB) Health(ctx context.Context) Health {
	h := Health{
		Dialect:   db.target.Dialect,
		Fallback:  db.fallback,
		Reason:    db.reason,
		Ephemeral: db.Ephemeral(),
		Target:    db.target.Redacted(),
		Status:    "up",
	}
	switch db.probeUp.Load() {
	case 1:
		up := true
		h.PrimaryUp = &up
	case 2:
		up := false
		h.PrimaryUp = &up
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	start := time.Now()
	var err error
	if db.target.Dialect == Postgres {
		h.Server, err = pingServer(ctx, db.DB)
	} else {
		err = db.PingContext(ctx)
	}
	h.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		h.Status = "down"
		h.Error = scrubSecrets(err.Error(), secretsOf(db.target)...)
		if isTimeout(err) {
			h.Error = "no answer within " + time.Since(start).Round(time.Millisecond).String() + ": " + h.Error
			if db.target.Dialect == Postgres && poolerTarget(db.target) {
				h.Error += " (" + poolerWaitHint + ")"
			}
		}
	}
	h.Stranded = db.Stranded()
	h.Snapshot = db.snap.health(time.Now())
	if state, detail := db.integrity.get(); state != "" {
		h.Integrity = state
		if detail != "" {
			h.Integrity += ": " + detail
		}
		if state == integrityDamaged && h.Status == "up" {
			h.Status = "down"
			h.Error = "the SQLite database file is damaged: " + detail
		}
	}
	return h
}

// startProbe runs the recovery probe while the DB serves from a fallback.
func (db *DB) startProbe(o *options, r Resolution) {
	if !db.fallback || r.Primary.IsZero() || o.probeInterval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	db.stopProbe = cancel
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		t := time.NewTicker(o.probeInterval)
		defer t.Stop()
		wasUp := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			e, err := openTarget(ctx, o, r, r.Primary)
			up := err == nil
			if up {
				e.close()
				db.probeUp.Store(1)
			} else if ctx.Err() == nil {
				db.probeUp.Store(2)
			}
			if up && !wasUp {
				db.logger.Warn("dbfallback: the primary database answers again; the service still uses the fallback until it restarts",
					"primary", r.Primary, "in_use", db.target)
				if o.probeFunc != nil {
					o.probeFunc(r.Primary)
				}
			}
			wasUp = up
		}
	}()
}
