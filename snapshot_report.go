package dbfallback

import (
	"context"
	"path/filepath"
	"time"
)

// SnapshotReport is what [InspectSnapshots] found in the snapshot
// directory. No field holds a secret.
type SnapshotReport struct {
	// Dir is the snapshot directory; "" when none is configured.
	Dir string `json:"dir"`
	// Database is the local SQLite file whose snapshots are listed (the
	// first usable SQLite location).
	Database string `json:"database"`
	// Off says why snapshots would be off (a missing directory, say).
	Off string `json:"off,omitempty"`
	// Warning says why snapshots there would not survive a restart (same
	// device as the database, overlay, tmpfs).
	Warning string `json:"warning,omitempty"`
	// Unwritable is the error of a test write, "" when it worked.
	Unwritable string `json:"unwritable,omitempty"`
	// Snapshots lists every manifest, newest first.
	Snapshots []SnapshotInfo `json:"snapshots,omitempty"`
	// Writers lists the writers of the snapshots, newest first: more than
	// one in a short time means two processes shared the directory.
	Writers []string `json:"writers,omitempty"`
}

// SnapshotInfo describes one snapshot in the directory.
type SnapshotInfo struct {
	// Manifest is the manifest's file name; File the snapshot's.
	Manifest string    `json:"manifest"`
	File     string    `json:"file,omitempty"`
	Writer   string    `json:"writer,omitempty"`
	Seq      int64     `json:"seq,omitempty"`
	Taken    time.Time `json:"taken"`
	Size     int64     `json:"size,omitempty"`
	// Problem says why a restore would skip it; "" when it verifies
	// (size, SHA-256 and SQLite header read back in full).
	Problem string `json:"problem,omitempty"`
	// Stranded reports that it carries a fallback period not yet marked
	// merged: rows the primary may not have.
	Stranded bool `json:"stranded,omitempty"`
}

// InspectSnapshots resolves the configuration (see [Resolve]) and
// reports the snapshot directory ([WithSnapshotDir]) of the first usable
// SQLite location: its checks and every snapshot, each read back whole
// and verified, as a restore would. It writes and deletes one small probe
// file to test that the directory is writable, and changes nothing else.
// The error is non-nil only when ctx is done or the directory cannot be
// listed; a report with Dir "" means no snapshot directory is configured.
func InspectSnapshots(ctx context.Context, opts ...Option) (SnapshotReport, error) {
	o := buildOptions(opts)
	r, err := resolve(ctx, &o)
	if err != nil {
		return SnapshotReport{}, err
	}
	set := snapshotSettingsOf(&o)
	rep := SnapshotReport{Dir: set.dir, Off: set.problem}
	for _, p := range r.Paths {
		if p.Err == nil {
			rep.Database = p.Path
			break
		}
	}
	if rep.Dir == "" || rep.Database == "" {
		return rep, nil
	}
	st := checkSnapshotDir(rep.Dir, rep.Database, o.snapshotFS)
	rep.Off, rep.Warning, rep.Unwritable = st.unusable, st.notDurable, st.unwritable
	if rep.Off != "" {
		return rep, nil
	}
	entries, err := listSnapshots(ctx, rep.Dir, filepath.Base(rep.Database))
	if err != nil {
		return rep, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		info := SnapshotInfo{Manifest: e.name, Problem: e.problem}
		if e.problem == "" {
			info.File, info.Writer, info.Seq, info.Taken, info.Size = e.m.File, e.m.Writer, e.m.Seq, e.m.Taken, e.m.Size
			info.Problem = verifySnapshot(ctx, rep.Dir, &e.m)
			info.Stranded = openStrandedPeriod(e.m.Stranded)
			if !seen[e.m.Writer] {
				seen[e.m.Writer] = true
				rep.Writers = append(rep.Writers, e.m.Writer)
			}
		}
		rep.Snapshots = append(rep.Snapshots, info)
	}
	return rep, ctx.Err()
}
