package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// snapshot_restore.go puts the newest verified snapshot in place of a
// missing or damaged local database, before SQLite opens it.
//
// The deadline: restoring runs inside the candidate's share of Open's ctx
// (open_deadline.go), like the rest of opening the file, so the reserve
// kept for the in-memory last resort is untouched. A restore cut short by
// ctx removes its temporary file and fails that location: Open goes on to
// the next location or memory, as for any file that does not open in
// time, and the reason says so. Snapshots are then off for the process,
// so that a database opened without its data never publishes a snapshot
// newer than the ones it failed to restore; the snapshots stay for the
// next start. Without a deadline the copy is bounded only by each chunk's
// fileProbeTimeout (a mount that stops answering).

// restoreFunc returns restoreBefore, or nil when snapshots are not
// configured.
func (s *snapshotter) restoreFunc() func(ctx context.Context, path string, emptyFile bool) (string, error) {
	if s == nil {
		return nil
	}
	return s.restoreBefore
}

// restoreBefore restores a snapshot into path, which holds no database
// (emptyFile: an empty file is there), and returns what Open should say
// about it. prepareSQLiteFile calls it under the directory lock. Nothing
// is restored when snapshots are off or the directory holds no verified
// snapshot: the error is then nil and the database starts empty.
func (s *snapshotter) restoreBefore(ctx context.Context, path string, emptyFile bool) (string, error) {
	if s == nil {
		return "", nil
	}
	s.mu.Lock()
	off := s.off
	s.mu.Unlock()
	if off != "" {
		return "", nil
	}
	if st := checkSnapshotDir(s.dir, path, func(string, string) string { return "" }); st.unusable != "" {
		s.turnOff(st.unusable)
		return "", nil
	}
	entries, err := listSnapshots(ctx, s.dir, filepath.Base(path))
	if err != nil {
		if ctx.Err() != nil {
			return "", s.cutShort(ctx, path, nil, err)
		}
		s.turnOff(fmt.Sprintf("snapshots of %s are off: the snapshot directory could not be read at Open (%v), and a snapshot of a database opened without its data could hide the ones there", path, err))
		return "", nil
	}
	all := entries // another writer is reported even when its snapshots are not ours
	entries, others := ownSnapshots(entries, absPath(path))
	s.mu.Lock()
	s.restoring++
	s.restoringPath = path
	s.mu.Unlock()
	m, skipped, err := restoreNewest(ctx, s.dir, path, entries, emptyFile, nil, s.slowCopy)
	s.mu.Lock()
	s.restoring--
	s.mu.Unlock()
	if err != nil {
		return "", s.cutShort(ctx, path, m, err)
	}
	var notes []string
	if m != nil {
		s.mu.Lock()
		s.restored, s.restoredPath = m, path
		s.lineage = append(append([]string(nil), m.Lineage...), m.Writer)
		writers := otherWritersAt(all, m)
		for w, at := range writers {
			s.others[w] = at
		}
		s.mu.Unlock()
		notes = append(notes, fmt.Sprintf("%s was missing or damaged; restored it from snapshot %s in %s, taken %s by writer %s (%d bytes, SHA-256 verified): writes made after %s were lost",
			path, m.File, s.dir, m.Taken.Format(time.RFC3339), m.Writer, m.Size, m.Taken.Format(time.RFC3339)))
		for _, w := range sortedWriters(writers) {
			notes = append(notes, fmt.Sprintf("WARNING: snapshots of another writer (%s, newest %s) interleave with the restored one: two processes used %s, and that one's rows are not in the restored database; run one replica, or use PrimaryOnly with a shared PostgreSQL",
				w, writers[w].Format(time.RFC3339), s.dir))
		}
	}
	for _, k := range skipped {
		notes = append(notes, "skipped "+k)
	}
	if others > 0 {
		notes = append(notes, fmt.Sprintf("left %d snapshot(s) in %s of another database file named %s alone", others, s.dir, filepath.Base(path)))
	}
	if m == nil && len(skipped) > 0 {
		notes = append(notes, fmt.Sprintf("no verified snapshot in %s: %s starts empty", s.dir, path))
	}
	return strings.Join(notes, "; "), nil
}

// ownSnapshots drops, when some verified-so-far manifest names path as
// its database's absolute path, the manifests that name another path:
// those are another database with the same base name sharing the
// directory. Manifests without a path (older ones) are kept. It returns
// the rest and how many it dropped.
func ownSnapshots(entries []snapshotEntry, path string) ([]snapshotEntry, int) {
	own := false
	for _, e := range entries {
		if e.problem == "" && e.m.Path == path {
			own = true
			break
		}
	}
	if !own {
		return entries, 0
	}
	out := entries[:0:0]
	for _, e := range entries {
		if e.problem == "" && e.m.Path != "" && e.m.Path != path {
			continue
		}
		out = append(out, e)
	}
	return out, len(entries) - len(out)
}

// absPath is path made absolute, or path itself when that fails.
func absPath(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}

// cutShort reports a restore that ctx ended, and turns snapshots off.
func (s *snapshotter) cutShort(ctx context.Context, path string, m *snapshotManifest, err error) error {
	what := "the snapshot directory"
	if m != nil {
		what = "snapshot " + m.File
	}
	s.turnOff(s.cutShortNote(path))
	return fmt.Errorf("dbfallback: restore %s from %s: not finished within the time Open had for it (%v); Open went on without it", path, what, err)
}

func (s *snapshotter) cutShortNote(path string) string {
	return fmt.Sprintf("snapshots of this process are off: restoring %s was cut short, and a snapshot of a database opened without its data would hide the ones in %s (they are kept for the next start)", path, s.dir)
}

func (s *snapshotter) turnOff(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off == "" {
		s.off = why
	}
}

// otherWritersAt returns the writers outside m's lineage that wrote while
// m's writer did (their newest snapshot is newer than its oldest kept
// one): a second process, whose rows the restore does not have.
func otherWritersAt(entries []snapshotEntry, m *snapshotManifest) map[string]time.Time {
	ours := m.lineage()
	first := m.Taken
	for _, e := range entries {
		if e.problem == "" && e.m.Writer == m.Writer && e.m.Taken.Before(first) {
			first = e.m.Taken
		}
	}
	out := map[string]time.Time{}
	for _, e := range entries {
		if e.problem != "" || ours[e.m.Writer] || !e.m.Taken.After(first) {
			continue
		}
		if e.m.Taken.After(out[e.m.Writer]) {
			out[e.m.Writer] = e.m.Taken
		}
	}
	return out
}

// restoreNewest copies the newest snapshot of entries that verifies (and
// that accept allows, when not nil) to path, through a temporary file
// in path's directory, and returns its manifest, or nil when none
// verifies; skipped says why each newer one was passed over. The copy and
// the check are one read of the snapshot: a byte that does not match the
// manifest's SHA-256 never reaches path. An error means ctx ended or the
// local directory failed; m is then the snapshot being restored.
func restoreNewest(ctx context.Context, dir, path string, entries []snapshotEntry, emptyFile bool, accept func(*snapshotManifest) bool, slow time.Duration) (m *snapshotManifest, skipped []string, err error) {
	// A manifest that cannot be trusted has no trustworthy time: each is
	// reported, wherever it sorts.
	for _, e := range entries {
		if e.problem != "" {
			skipped = append(skipped, fmt.Sprintf("%s: %s", e.name, e.problem))
		}
	}
	for i := range entries {
		e := &entries[i]
		if e.problem != "" {
			continue
		}
		if accept != nil && !accept(&e.m) {
			continue
		}
		problem, err := restoreOne(ctx, dir, path, &e.m, emptyFile, slow)
		if err != nil {
			return &e.m, skipped, err
		}
		if problem != "" {
			skipped = append(skipped, fmt.Sprintf("%s: %s", e.m.File, problem))
			continue
		}
		return &e.m, skipped, nil
	}
	return nil, skipped, nil
}

// restoreOne copies and verifies one snapshot into path. It returns what
// is wrong with the snapshot, or an error when ctx ended or the local
// side failed.
func restoreOne(ctx context.Context, dir, path string, m *snapshotManifest, emptyFile bool, slow time.Duration) (string, error) {
	src, err := withinProbe(ctx, func() (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, m.File), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return fmt.Sprintf("the snapshot file cannot be read: %v", unwrapPathError(err)), nil
	}
	defer src.Close()
	tmpName := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.dbfallback-restore-%s", filepath.Base(path), randomHex(6)))
	tmp, err := os.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", tmpName, unwrapPathError(err))
	}
	defer os.Remove(tmpName) // gone after the rename; else never left behind
	var w io.Writer = tmp
	if slow > 0 {
		w = slowWriter{tmp, slow}
	}
	problem := checkAgainst(ctx, src, w, m)
	if err := ctx.Err(); err != nil {
		tmp.Close()
		return "", err
	}
	if problem == "" {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", tmpName, unwrapPathError(err))
	}
	if problem != "" {
		return problem, nil
	}
	if emptyFile {
		// Only an empty file is replaced: it holds no data.
		if st, err := os.Stat(path); err == nil && st.Size() == 0 && st.Mode().IsRegular() {
			os.Remove(path)
		}
	}
	if err := renameNoReplace(tmpName, path); err != nil {
		return "", fmt.Errorf("put the restored copy at %s: %w", path, err)
	}
	if len(m.Stranded) > 0 {
		restoreStrandedRecord(path, m.Stranded)
	}
	syncDir(ctx, filepath.Dir(path))
	return "", nil
}

// slowWriter waits before each write (a test seam: a mount slower than
// Open's deadline).
type slowWriter struct {
	w    io.Writer
	wait time.Duration
}

func (s slowWriter) Write(p []byte) (int, error) {
	time.Sleep(s.wait)
	return s.w.Write(p)
}

// restoreStrandedRecord puts the record of rows written while the
// primary was not in use back next to a restored database, unless one is
// there, so those rows are still reported when the primary returns.
func restoreStrandedRecord(path string, rec []byte) {
	name := path + strandedSuffix
	if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return
	}
	_, err = f.Write(append(append([]byte(nil), rec...), '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
}
