package dbfallback

import (
	"fmt"
	"time"
)

// SnapshotHealth is the state of a DB's snapshots (see [WithSnapshotDir]),
// as [DB.Health] reports it. No field holds a secret.
type SnapshotHealth struct {
	// State is "ok" (the last snapshot succeeded and the directory is
	// durable), "pending" (none written yet: the data is ephemeral until
	// the first), "failing" (the last attempt failed; the previous good
	// snapshot, if any, is kept), "not durable" (the directory vanishes with
	// the database: same device, overlay or tmpfs) or "off" (see Off).
	State string `json:"state"`
	// Dir is the snapshot directory.
	Dir string `json:"dir"`
	// Writer is this DB's id in the directory's file names.
	Writer string `json:"writer"`
	// IntervalSeconds is the least time between two snapshots.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Last is when the newest snapshot of this database's data was
	// taken (written by this DB, or restored at Open); nil when none.
	Last *time.Time `json:"last,omitempty"`
	// AgeSeconds is how long ago Last was: writes made since are only in
	// the local file. Zero when Last is nil.
	AgeSeconds float64 `json:"age_seconds,omitempty"`
	// File and Size name the newest snapshot and its bytes.
	File string `json:"file,omitempty"`
	Size int64  `json:"size,omitempty"`
	// TookMS is how long the newest snapshot this DB wrote took.
	TookMS float64 `json:"took_ms,omitempty"`
	// LastError is the last attempt's failure, "" when it succeeded;
	// LastErrorAt is when.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Restored says which snapshot Open restored the database from.
	Restored string `json:"restored,omitempty"`
	// Off says why no snapshot is written (a missing directory, say).
	Off string `json:"off,omitempty"`
	// Warning says why snapshots do not make the data durable, or that
	// another process writes snapshots to the same directory.
	Warning string `json:"warning,omitempty"`
	// OtherWriters lists writers of other processes seen in the directory
	// while this DB ran (or interleaved with the restored snapshot): two
	// replicas. Each restore takes one writer's rows only.
	OtherWriters []string `json:"other_writers,omitempty"`
}

// health reports the snapshots' state at now; nil for a DB without them.
func (s *snapshotter) health(now time.Time) *SnapshotHealth {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &SnapshotHealth{Dir: s.dir, Writer: s.writer, IntervalSeconds: s.interval.Seconds(), LastError: s.lastErr, Off: s.off}
	if s.last != nil {
		at := s.last.Taken
		h.Last, h.AgeSeconds = &at, now.Sub(at).Seconds()
		h.File, h.Size = s.last.File, s.last.Size
		h.TookMS = float64(s.lastTook.Microseconds()) / 1000
	}
	if s.lastErr != "" {
		at := s.errAt
		h.LastErrorAt = &at
	}
	if s.restored != nil {
		h.Restored = fmt.Sprintf("%s, taken %s by writer %s", s.restored.File, s.restored.Taken.Format(time.RFC3339), s.restored.Writer)
	}
	h.OtherWriters = sortedWriters(s.others)
	switch {
	case s.off != "":
		h.State = "off"
	case s.dirState.notDurable != "":
		h.State, h.Warning = "not durable", s.dirState.notDurable
	case s.lastErr != "":
		h.State = "failing"
	case s.last == nil:
		h.State = "pending"
	default:
		h.State = "ok"
	}
	if len(h.OtherWriters) > 0 && h.Warning == "" {
		h.Warning = fmt.Sprintf("%d other writer(s) use this snapshot directory: two processes (replicas) each keep their own database, and a restore takes one writer's rows only; run one replica, or use PrimaryOnly with a shared PostgreSQL", len(h.OtherWriters))
	}
	return h
}
