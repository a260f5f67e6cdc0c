package dbfallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// snapshot_stranded.go: rows written to a SQLite fallback while the
// primary was down may live only in a snapshot once the container's disk
// is wiped. When Open lands on the primary and the first SQLite location
// holds no file, the newest verified snapshot whose record of a fallback
// period is still open (not marked merged) is restored there, record
// included, so that stranded.go counts and reports its rows as it does
// for any fallback file, and MarkMerged or DBFALLBACK_MERGED ends the
// report.

// strandedRestoreTimeout bounds that restore when ctx allows longer: the
// primary is in use already, so the report must not hold Open long.
const strandedRestoreTimeout = 10 * time.Second

// restoreStranded restores, on the primary, the snapshot holding rows of
// an open fallback period into the first usable SQLite location, when no
// file is there. It adds to db's reason what it could not do.
func (s *snapshotter) restoreStranded(ctx context.Context, db *DB, r Resolution) {
	if s == nil || s.off != "" {
		return
	}
	var path string
	for _, p := range r.Paths {
		if p.Err == nil {
			path = p.Path
			break
		}
	}
	if path == "" {
		return
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return // a file is there: stranded.go counts its rows
	}
	rctx, cancel := context.WithTimeout(ctx, strandedRestoreTimeout)
	defer cancel()
	entries, err := listSnapshots(rctx, s.dir, filepath.Base(path))
	if err != nil || len(entries) == 0 {
		return
	}
	// Only the newest readable snapshot tells whether rows are stranded:
	// an older one with an open period may have been merged since.
	newest := -1
	for i, e := range entries {
		if e.problem == "" {
			newest = i
			break
		}
	}
	if newest < 0 || !openStrandedPeriod(entries[newest].m.Stranded) {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		db.addReason(fmt.Sprintf("snapshot %s in %s holds rows written while the primary was not in use, but %s cannot be created to count them: %v", entries[newest].m.File, s.dir, filepath.Dir(path), unwrapPathError(err)))
		return
	}
	unlock, err := lockDir(rctx, filepath.Dir(path))
	if err != nil {
		return
	}
	defer unlock()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	m, skipped, err := restoreNewest(rctx, s.dir, path, entries[newest:], false, func(m *snapshotManifest) bool { return openStrandedPeriod(m.Stranded) }, 0)
	switch {
	case err != nil:
		db.addReason(fmt.Sprintf("snapshot %s in %s holds rows written while the primary was not in use, but restoring it to %s to count them did not finish: %v", entries[newest].m.File, s.dir, path, err))
	case m == nil && len(skipped) > 0:
		db.addReason(fmt.Sprintf("the snapshots in %s that hold rows written while the primary was not in use did not verify: %v", s.dir, skipped))
	case m != nil:
		db.logger.Warn("dbfallback: restored a snapshot holding rows written while the primary was not in use, to report them",
			"path", path, "snapshot", m.File, "taken", m.Taken.Format(time.RFC3339), "dir", s.dir)
	}
}

// openStrandedPeriod reports whether a snapshot's record holds a fallback
// period not yet marked merged.
func openStrandedPeriod(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	var rec strandedRecord
	return json.Unmarshal(raw, &rec) == nil && rec.open()
}
