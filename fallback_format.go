package dbfallback

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// The printed forms of a DB and of what Open reports. A DB holds its
// target in an unexported field, which fmt would print by reflection;
// these methods give every printer a deliberate, redacted form instead.

// String returns a one-line redacted summary: the dialect, the target in
// use and whether it is a fallback or ephemeral. It does no I/O.
func (db *DB) String() string {
	if db == nil {
		return "dbfallback.DB(nil)"
	}
	s := fmt.Sprintf("dbfallback.DB(%s %s", db.target.Dialect, db.target.Redacted())
	if db.fallback {
		s += ", fallback"
	}
	if db.ephemeral {
		s += ", ephemeral"
	}
	return s + ")"
}

// GoString returns the same as String, so %#v shows no field of the DB.
func (db *DB) GoString() string { return db.String() }

// Format prints String's form for every verb (%q quoted), so that no verb
// walks the DB's fields: fmt prints a struct field by field for verbs
// such as %d, which would both reach unexported state and race with the
// DB's background goroutines.
func (db *DB) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", db.String())
		return
	}
	io.WriteString(f, db.String())
}

// LogValue logs a DB as a group: dialect, redacted target, fallback,
// ephemeral and, when there is one, the reason.
func (db *DB) LogValue() slog.Value {
	if db == nil {
		return slog.StringValue("dbfallback.DB(nil)")
	}
	attrs := []slog.Attr{
		slog.String("dialect", string(db.target.Dialect)),
		slog.String("target", db.target.Redacted()),
		slog.Bool("fallback", db.fallback),
		slog.Bool("ephemeral", db.ephemeral),
	}
	if db.reason != "" {
		attrs = append(attrs, slog.String("reason", db.reason))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes what the DB knows without asking the database:
// dialect, redacted target, fallback, ephemeral, reason and attempts. For
// a live status, serve [DB.Health] or [DB.HealthHandler].
func (db *DB) MarshalJSON() ([]byte, error) {
	if db == nil {
		return []byte("null"), nil
	}
	return json.Marshal(struct {
		Dialect   Dialect   `json:"dialect"`
		Target    string    `json:"target"`
		Fallback  bool      `json:"fallback"`
		Ephemeral bool      `json:"ephemeral"`
		Reason    string    `json:"reason,omitempty"`
		Attempts  []Attempt `json:"attempts"`
	}{db.target.Dialect, db.target.Redacted(), db.fallback, db.ephemeral, db.reason, db.attempts})
}

// String returns one line: the redacted target and how the attempt ended.
func (a Attempt) String() string {
	if a.Err != nil {
		return fmt.Sprintf("%s: %s (%d tries, %s)", a.Target, a.Err, a.Tries, a.Duration.Round(time.Microsecond))
	}
	return fmt.Sprintf("%s: ok (%d tries, %s)", a.Target, a.Tries, a.Duration.Round(time.Microsecond))
}

// GoString returns a Go-syntax form with the error as its text.
func (a Attempt) GoString() string {
	return fmt.Sprintf("dbfallback.Attempt{Target:%#v, Duration:%d, Tries:%d, Err:%q}",
		a.Target, a.Duration, a.Tries, errText(a.Err))
}

// LogValue logs an Attempt as a group, the error as text.
func (a Attempt) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("target", a.Target.Redacted()), slog.Duration("duration", a.Duration),
		slog.Int("tries", a.Tries)}
	if a.Err != nil {
		attrs = append(attrs, slog.String("error", a.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the fields under their Go names, Err as its text
// (null when nil).
func (a Attempt) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Target   Target
		Duration time.Duration
		Tries    int
		Err      *string
	}{a.Target, a.Duration, a.Tries, errPtr(a.Err)})
}

// GoString shows an attempt's error as its redacted text: without it, %#v
// of an Attempt would print the driver's error by reflection.
func (e *attemptError) GoString() string { return fmt.Sprintf("dbfallback.attemptError(%q)", e.msg) }

// LogValue logs a Health as a group of its JSON fields.
func (h Health) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("status", h.Status), slog.String("dialect", string(h.Dialect)),
		slog.Bool("fallback", h.Fallback), slog.Bool("ephemeral", h.Ephemeral), slog.String("target", h.Target),
		slog.Float64("latency_ms", h.LatencyMS)}
	if h.Reason != "" {
		attrs = append(attrs, slog.String("reason", h.Reason))
	}
	if h.Error != "" {
		attrs = append(attrs, slog.String("error", h.Error))
	}
	if h.PrimaryUp != nil {
		attrs = append(attrs, slog.Bool("primary_up", *h.PrimaryUp))
	}
	return slog.GroupValue(attrs...)
}
