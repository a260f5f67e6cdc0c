package dbfallback

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// snapshot.go writes snapshots of the SQLite file a DB uses to a durable
// directory (see WithSnapshotDir), in the background and once more at
// Close.
//
// Why VACUUM INTO: SQLite's online backup API copies page by page and
// starts over whenever another connection writes, so under a steady write
// load it may never finish. VACUUM INTO runs as one read transaction on
// a connection of its own, outside the write gate: in WAL mode writers go
// on while it reads, and it writes a compact, consistent copy to a local
// temporary file. That file is then copied out with its SHA-256 and
// verified (snapshot_format.go). It is plain SQL, so any SQLite engine
// runs it.
//
// When the data changed is told by PRAGMA data_version on the snapshot
// connection, which changes whenever any other connection, of this
// process or another, commits: unlike the file's change counter it moves
// in WAL mode before a checkpoint, and unlike a counter in the write gate
// it sees other processes.

// snapshotter keeps the snapshots of one DB. Its zero value is not used;
// a nil *snapshotter means snapshots are not configured.
type snapshotter struct {
	dir      string
	interval time.Duration
	writer   string
	logger   *slog.Logger
	kind     func(dir, dbDir string) string // filesystem check seam (nil: the real one)
	slowCopy time.Duration                  // test seam: a wait before each chunk a restore reads
	closeIn  time.Duration                  // bound of the final snapshot
	gate     *writeGate                     // the pool's write gate, shut before the final snapshot
	started  time.Time

	mu   sync.Mutex
	path string // the local database file; "" until started on one
	// off says why no snapshot is written ("" when they are).
	off string
	// dirState is the directory's check at start.
	dirState snapshotDirState
	lineage  []string
	// restored is the snapshot Open restored the database from, into
	// restoredPath.
	restored     *snapshotManifest
	restoredPath string
	// restoring counts restores under way, restoringPath the last begun:
	// one that Open gave up on may still run when the DB starts.
	restoring     int
	restoringPath string
	// notes are what Open says in the DB's reason: a bad setting, what
	// was restored and what was skipped.
	notes []string
	// others maps writers outside this lineage to their newest snapshot's
	// time, when they wrote while this DB ran (or, at restore, while the
	// restored writer ran).
	others map[string]time.Time
	seq    int64
	// version is the data_version of the last snapshot, -1 before one.
	version  int64
	last     *snapshotManifest
	lastTook time.Duration
	lastErr  string
	errAt    time.Time
	failures int

	conn *sql.DB // read-only, one connection: data_version is per connection
	stop context.CancelFunc
	done chan struct{}
}

// newSnapshotter returns the snapshotter of one Open, or nil when no
// snapshot directory is configured. Nothing is read or written yet.
func newSnapshotter(o *options) *snapshotter {
	set := snapshotSettingsOf(o)
	if set.dir == "" && set.problem == "" {
		return nil
	}
	var b [8]byte
	rand.Read(b[:])
	return &snapshotter{
		dir:      set.dir,
		interval: set.interval,
		writer:   hex.EncodeToString(b[:]),
		logger:   o.logger,
		kind:     o.snapshotFS,
		slowCopy: o.slowCopy,
		closeIn:  cmp.Or(o.closeSnap, snapshotCloseTimeout),
		started:  time.Now(),
		off:      set.problem,
		others:   map[string]time.Time{},
		version:  -1,
		notes:    nonEmpty(set.note),
	}
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// start begins snapshots of the SQLite file db uses, after Open chose
// it; on any other database it only reports why there are none. It adds
// to db's reason what the operator must know.
func (s *snapshotter) start(db *DB) {
	if s == nil {
		return
	}
	t := db.target
	s.mu.Lock()
	if s.restoring > 0 && s.off == "" {
		s.off = s.cutShortNote(s.restoringPath)
	}
	if s.restored != nil && s.restoredPath != t.Path && s.off == "" {
		// The snapshot went to a location Open did not end up using (it
		// gave up on it, or it failed after): this database lacks its data.
		s.off = fmt.Sprintf("snapshots of this process are off: snapshot %s was restored to %s, which Open did not use, and a snapshot of %s, which lacks its data, would hide it in %s (it is kept for the next start)",
			s.restored.File, s.restoredPath, t, s.dir)
	}
	s.mu.Unlock()
	if t.Dialect != SQLite || t.Memory {
		for _, n := range s.notes {
			db.addReason(n)
		}
		if s.off != "" {
			db.addReason(s.off)
		}
		return // nothing to snapshot: db.snap stays nil
	}
	db.snap = s
	s.gate = db.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	s.path = t.Path
	for _, n := range s.notes {
		db.addReason(n)
	}
	if s.restored != nil {
		db.logger.Warn("dbfallback: restored the SQLite database from a snapshot; writes made after it was taken were lost",
			"path", s.path, "snapshot", s.restored.File, "taken", s.restored.Taken.Format(time.RFC3339), "writer", s.restored.Writer, "dir", s.dir)
	}
	if s.off == "" {
		s.dirState = checkSnapshotDir(s.dir, s.path, s.kind)
		s.off = s.dirState.unusable
		if w := s.dirState.notDurable; w != "" {
			db.addReason(w + "; the data stays ephemeral")
		}
		if w := s.dirState.unwritable; w != "" {
			s.lastErr, s.errAt = w, time.Now()
			db.addReason(w + "; snapshots will fail until it is")
		}
	}
	if s.off != "" {
		db.addReason(s.off)
		db.logger.Warn("dbfallback: no snapshots of the SQLite database", "path", s.path, "why", s.off)
		return
	}
	for w, at := range s.others {
		db.logger.Warn("dbfallback: another writer's snapshots interleave with the restored one: two processes used this snapshot directory",
			"dir", s.dir, "writer", w, "newest", at.Format(time.RFC3339), "hint", "run one replica, or use PrimaryOnly with a shared PostgreSQL")
	}
	conn, err := openRawSQLite(readOnlyDSN(t, busyWithin(context.Background(), 5*time.Second)))
	if err != nil {
		s.off = fmt.Sprintf("snapshots of %s are off: %v", s.path, err)
		db.addReason(s.off)
		return
	}
	conn.SetMaxOpenConns(1)
	conn.SetMaxIdleConns(1)
	conn.SetConnMaxIdleTime(0)
	conn.SetConnMaxLifetime(0)
	s.conn = conn
	if s.restored != nil {
		// The file was the snapshot when restored, but the WithInit hooks
		// have run on it since (a seed row, a data migration), before this
		// connection could see a change: s.version stays -1, so the first
		// snapshot (or Close's) is taken even when no later write comes.
		s.last = s.restored
	}
	removeStaleTemps(filepath.Dir(s.path), filepath.Base(s.path))
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	db.logger.Info("dbfallback: writing snapshots of the SQLite database", "path", s.path, "dir", s.dir,
		"interval", s.interval.String(), "writer", s.writer)
	go s.loop(ctx, s.interval)
}

// loop snapshots when the data changed, at most once per interval and no
// sooner than snapshotDutyCycle times the last snapshot's duration.
func (s *snapshotter) loop(ctx context.Context, wait time.Duration) {
	defer close(s.done)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		took, _ := s.snapshotIfChanged(ctx)
		t.Reset(max(s.interval, snapshotDutyCycle*took))
	}
}

// snapshotIfChanged writes a snapshot when data_version moved since the
// last one, and returns how long that took (0 when nothing changed).
func (s *snapshotter) snapshotIfChanged(ctx context.Context) (time.Duration, error) {
	v, err := dataVersion(ctx, s.conn)
	if err != nil {
		s.versionUnknown()
		if ctx.Err() == nil {
			s.fail(fmt.Errorf("read data_version: %w", err))
		}
		return 0, err
	}
	s.mu.Lock()
	unchanged := v == s.version && s.lastErr == ""
	s.mu.Unlock()
	if unchanged {
		return 0, nil
	}
	start := time.Now()
	m, err := s.take(ctx, v)
	took := time.Since(start)
	if err != nil {
		s.versionUnknown()
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			s.fail(err)
		}
		return took, err
	}
	s.mu.Lock()
	s.version, s.last, s.lastTook, s.lastErr, s.failures = v, m, took, "", 0
	s.mu.Unlock()
	// Pruning finishes even when Close stops the loop now: a verified
	// snapshot must not leave one too many behind.
	s.prune(context.WithoutCancel(ctx), m)
	return took, nil
}

// versionUnknown forgets the data_version of the last snapshot after a
// failed statement on the snapshot connection: data_version counts per
// connection, and the pool may have replaced one that an interrupted
// statement (Close stopping the loop) left broken, whose successor starts
// counting again and can read the old value. The next check then takes a
// snapshot whatever it reads.
func (s *snapshotter) versionUnknown() {
	s.mu.Lock()
	s.version = -1
	s.mu.Unlock()
}

func (s *snapshotter) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.errAt = err.Error(), time.Now()
	s.failures++
	if s.failures == 1 || s.failures%100 == 0 {
		s.logger.Warn("dbfallback: snapshot failed; the last good snapshot is kept", "path", s.path, "dir", s.dir, "error", s.lastErr, "failures", s.failures)
	}
}

// dataVersion reads PRAGMA data_version on the snapshot connection.
func dataVersion(ctx context.Context, conn *sql.DB) (int64, error) {
	var v int64
	err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
	return v, err
}

// take writes one snapshot: VACUUM INTO a local temporary file, copy it
// to the directory under a new name with its SHA-256, fsync, read it
// back, then write, fsync and read back the manifest. On failure it
// removes what it created; nothing published is touched.
func (s *snapshotter) take(ctx context.Context, version int64) (m *snapshotManifest, err error) {
	s.mu.Lock()
	s.seq++
	m = &snapshotManifest{
		Format: snapshotFormat, Database: filepath.Base(s.path), Path: absPath(s.path), Writer: s.writer,
		Lineage: append([]string(nil), s.lineage...), Seq: s.seq, Taken: time.Now().UTC(),
		DataVersion: version, Library: libraryVersion(),
	}
	s.mu.Unlock()
	m.File = m.prefix() + snapshotSuffix
	if rec, err := readLimited(s.path+strandedSuffix, maxRecordSize); err == nil && json.Valid(rec) {
		m.Stranded = json.RawMessage(bytes.TrimSpace(rec))
	}
	tmp := filepath.Join(filepath.Dir(s.path), fmt.Sprintf(".%s.dbfallback-snapshot-%s", m.Database, randomHex(6)))
	defer os.Remove(tmp)
	if _, err := s.conn.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return nil, fmt.Errorf("dbfallback: snapshot %s: VACUUM INTO a local temporary file: %w", s.path, err)
	}
	snapPath := filepath.Join(s.dir, m.File)
	manPath := filepath.Join(s.dir, m.prefix()+manifestSuffix)
	var created []string
	defer func() {
		if err != nil {
			for i := len(created) - 1; i >= 0; i-- { // the manifest first
				os.Remove(created[i])
			}
			err = fmt.Errorf("dbfallback: snapshot %s to %s: %w", s.path, s.dir, err)
		}
	}()
	src, err := os.Open(tmp)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	out, err := createExclusive(ctx, snapPath)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", m.File, unwrapPathError(err))
	}
	created = append(created, snapPath)
	m.Size, m.SHA256, err = copyVerified(ctx, out, src)
	if err == nil {
		_, err = withinProbe(ctx, func() (struct{}, error) { return struct{}{}, out.Sync() })
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", m.File, unwrapPathError(err))
	}
	if p := verifySnapshot(ctx, s.dir, m); p != "" {
		return nil, fmt.Errorf("read back %s: %s", m.File, p)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	mf, err := createExclusive(ctx, manPath)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Base(manPath), unwrapPathError(err))
	}
	created = append(created, manPath)
	_, err = withinProbe(ctx, func() (int, error) { return mf.Write(data) })
	if err == nil {
		_, err = withinProbe(ctx, func() (struct{}, error) { return struct{}{}, mf.Sync() })
	}
	if cerr := mf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", filepath.Base(manPath), unwrapPathError(err))
	}
	back, err := withinProbe(ctx, func() ([]byte, error) { return readLimited(manPath, maxManifestSize) })
	if err != nil || !bytes.Equal(back, data) {
		return nil, fmt.Errorf("read back %s: it differs from what was written (%v)", filepath.Base(manPath), err)
	}
	syncDir(ctx, s.dir)
	return m, nil
}

// prune deletes the snapshots of this lineage beyond the newest
// snapshotKeep, now that m is verified, and notes other writers. Another
// lineage's files are never deleted: they may be a replica's only copy.
func (s *snapshotter) prune(ctx context.Context, m *snapshotManifest) {
	entries, err := listSnapshots(ctx, s.dir, m.Database)
	if err != nil {
		return
	}
	ours := m.lineage()
	// Clocks are not trusted within a lineage (a clock stepped back, an
	// ancestor whose clock ran ahead): this writer's own snapshots come
	// first, by sequence, then its ancestors' (sortSnapshots). m itself is
	// never deleted.
	sortSnapshots(entries)
	kept := 0
	var fresh []string
	for _, e := range entries {
		if e.name == m.prefix()+manifestSuffix {
			kept++
			continue
		}
		if !ours[e.m.Writer] || e.problem != "" {
			if e.problem == "" && e.m.Taken.After(s.started) {
				s.mu.Lock()
				if _, seen := s.others[e.m.Writer]; !seen {
					fresh = append(fresh, e.m.Writer)
				}
				if e.m.Taken.After(s.others[e.m.Writer]) {
					s.others[e.m.Writer] = e.m.Taken
				}
				s.mu.Unlock()
			}
			continue
		}
		kept++
		if kept <= snapshotKeep {
			continue
		}
		withinProbe(ctx, func() (struct{}, error) {
			if err := os.Remove(filepath.Join(s.dir, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return struct{}{}, err
			}
			return struct{}{}, os.Remove(filepath.Join(s.dir, e.m.File))
		})
	}
	for _, w := range fresh {
		s.logger.Warn("dbfallback: another process writes snapshots to the same directory; each keeps its own, and a restore takes only the newest writer's rows",
			"dir", s.dir, "writer", w, "this_writer", s.writer, "hint", "run one replica, or use PrimaryOnly with a shared PostgreSQL")
	}
}

// stopLoop ends the background snapshots (Close calls it before closing
// the pool).
func (s *snapshotter) stopLoop() {
	if s == nil || s.stop == nil {
		return
	}
	s.stop()
	<-s.done
}

// finish writes the final snapshot, when the data changed, within
// snapshotCloseTimeout, and closes the snapshot connection. Close calls
// it after the pool closed; closing a *sql.DB does not wait for a
// transaction another goroutine holds open, so finish first shuts the
// write gate: it waits up to a third of the bound for the writer that
// holds it, and after that no write starts and a transaction still open
// cannot commit (it is rolled back and its Commit fails), so that no
// write is acknowledged that the snapshot lacks. It returns what was not
// saved.
func (s *snapshotter) finish() error {
	if s == nil || s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.closeIn)
	defer cancel()
	if s.gate != nil {
		wait, stop := context.WithTimeout(ctx, s.closeIn/3)
		s.gate.shutWrites(wait)
		stop()
	}
	result := make(chan error, 1)
	go func() {
		_, err := s.snapshotIfChanged(ctx)
		s.conn.Close()
		result <- err
	}()
	var err error
	select {
	case err = <-result:
	case <-time.After(s.closeIn + 250*time.Millisecond):
		// A mount stuck in a system call: the copy ends on its own.
		err = fmt.Errorf("did not finish within %s", s.closeIn)
	}
	if err == nil {
		return nil
	}
	s.mu.Lock()
	since := "it was opened"
	if s.last != nil {
		since = s.last.Taken.Format(time.RFC3339)
	}
	s.mu.Unlock()
	err = fmt.Errorf("dbfallback: close: the final snapshot of %s was not saved (%w); writes made since %s are only in the local file, which a restart on a fresh disk loses", s.path, err, since)
	s.logger.Error(err.Error())
	return err
}

// durable reports whether the data is safe from a restart: the last
// snapshot succeeded, into a directory that survives one.
func (s *snapshotter) durable() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off == "" && s.dirState.notDurable == "" && s.last != nil && s.lastErr == ""
}

// removeStaleTemps removes temporary VACUUM INTO files of base left in
// dir by a process killed while snapshotting (older than a minute, so
// that another process's copy in progress is left alone).
func removeStaleTemps(dir, base string) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := "." + base + ".dbfallback-snapshot-"
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), prefix) || !de.Type().IsRegular() {
			continue
		}
		if info, err := de.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
			os.Remove(filepath.Join(dir, de.Name()))
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sortedWriters lists the keys of m by newest time first.
func sortedWriters(m map[string]time.Time) []string {
	out := make([]string, 0, len(m))
	for w := range m {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return m[out[i]].After(m[out[j]]) })
	return out
}
