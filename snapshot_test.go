package dbfallback

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// snapEnv is a database location and a snapshot directory for a test.
type snapEnv struct {
	dbPath string
	snaps  string
}

func newSnapEnv(t *testing.T) snapEnv {
	t.Helper()
	root := t.TempDir()
	e := snapEnv{dbPath: filepath.Join(root, "local", "notes.db"), snaps: filepath.Join(root, "bucket")}
	require.NoError(t, os.MkdirAll(e.snaps, 0o700))
	return e
}

// open opens the SQLite file with snapshots into the env's directory.
func (e snapEnv) open(t *testing.T, extra ...Option) *DB {
	t.Helper()
	opts := append([]Option{
		env(), WithSQLitePath(e.dbPath), WithStrategy(SQLiteOnly),
		WithSnapshotDir(e.snaps), durableSnapshots, withSnapshotCloseTimeout(time.Minute),
	}, extra...)
	db, err := Open(context.Background(), opts...)
	require.NoError(t, err)
	return db
}

// wipeLocal deletes the local database directory: a new container.
func (e snapEnv) wipeLocal(t *testing.T) {
	t.Helper()
	require.NoError(t, os.RemoveAll(filepath.Dir(e.dbPath)))
}

// snapshotFiles lists the snapshot directory's .snap and manifest files.
func (e snapEnv) snapshotFiles(t *testing.T) (snaps, manifests []string) {
	t.Helper()
	des, err := os.ReadDir(e.snaps)
	require.NoError(t, err)
	for _, de := range des {
		switch {
		case strings.HasSuffix(de.Name(), snapshotSuffix):
			snaps = append(snaps, de.Name())
		case strings.HasSuffix(de.Name(), manifestSuffix):
			manifests = append(manifests, de.Name())
		}
	}
	sort.Strings(snaps)
	sort.Strings(manifests)
	return snaps, manifests
}

func insertNotes(t *testing.T, db *DB, from, n int) {
	t.Helper()
	_, err := db.Exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
	require.NoError(t, err)
	for i := from; i < from+n; i++ {
		_, err := db.Exec("INSERT INTO notes (id, title) VALUES (?, ?)", i, "note")
		require.NoError(t, err)
	}
}

func countNotes(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	err := db.QueryRow("SELECT count(*) FROM notes").Scan(&n)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		return 0
	}
	require.NoError(t, err)
	return n
}

// TestSnapshotRestartRestores: rows written, Close (the final snapshot),
// the local disk wiped, Open again: every row is back, and Reason and
// Health say from which snapshot.
func TestSnapshotRestartRestores(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t)
	insertNotes(t, db, 1, 50)
	require.NoError(t, db.Close())
	snaps, manifests := e.snapshotFiles(t)
	require.Len(t, snaps, 1, "Close writes the final snapshot")
	require.Len(t, manifests, 1)

	e.wipeLocal(t)
	db = e.open(t)
	defer db.Close()
	assert.Equal(t, 50, countNotes(t, db))
	assert.Contains(t, db.Reason(), "restored it from snapshot "+snaps[0])
	assert.Contains(t, db.Reason(), "writes made after")
	h := db.Health(context.Background())
	require.NotNil(t, h.Snapshot)
	assert.Equal(t, "ok", h.Snapshot.State)
	assert.Contains(t, h.Snapshot.Restored, snaps[0])
	assert.False(t, h.Ephemeral, "a restored database whose snapshot is current is not ephemeral")
	assert.False(t, db.Ephemeral())
	var check string
	require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&check))
	assert.Equal(t, "ok", check)
	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	assert.Equal(t, "wal", mode, "the restored copy runs in WAL mode like any fallback file")
}

// TestSnapshotManifest: the manifest names its snapshot, its size and
// SHA-256, the writer and sequence, and agrees with its own name.
func TestSnapshotManifest(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t)
	insertNotes(t, db, 1, 10)
	writer := db.Health(context.Background()).Snapshot.Writer
	require.NoError(t, db.Close())
	snaps, manifests := e.snapshotFiles(t)
	require.Len(t, manifests, 1)
	data, err := os.ReadFile(filepath.Join(e.snaps, manifests[0]))
	require.NoError(t, err)
	var m snapshotManifest
	require.NoError(t, json.Unmarshal(data, &m))
	assert.Equal(t, snaps[0], m.File)
	assert.Equal(t, "notes.db", m.Database)
	assert.Equal(t, writer, m.Writer)
	assert.Equal(t, "", m.disagrees(manifests[0], "notes.db"))
	st, err := os.Stat(filepath.Join(e.snaps, m.File))
	require.NoError(t, err)
	assert.Equal(t, st.Size(), m.Size)
	assert.Equal(t, "", verifySnapshot(context.Background(), e.snaps, &m))
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "snapshots are readable by their owner only")
}

// TestSnapshotEphemeralFollowsSnapshots: a DB on an unvouched location
// is ephemeral until its first snapshot succeeds, then not.
func TestSnapshotEphemeralFollowsSnapshots(t *testing.T) {
	isolatedDirs(t)
	snaps := filepath.Join(t.TempDir(), "bucket")
	require.NoError(t, os.MkdirAll(snaps, 0o700))
	db, err := Open(context.Background(), env(), withDataDir(""),
		WithStrategy(SQLiteOnly), WithSnapshotDir(snaps), WithSnapshotInterval(20*time.Millisecond), durableSnapshots)
	require.NoError(t, err)
	defer db.Close()
	require.False(t, db.Target().Memory)
	assert.True(t, db.Ephemeral(), "no snapshot yet")
	insertNotes(t, db, 1, 3)
	require.Eventually(t, func() bool { return !db.Ephemeral() }, 30*time.Second, 10*time.Millisecond)
	h := db.Health(context.Background())
	assert.Equal(t, "ok", h.Snapshot.State)
	assert.NotNil(t, h.Snapshot.Last)
	assert.Less(t, h.Snapshot.AgeSeconds, 5.0)
	assert.Positive(t, h.Snapshot.Size)

	// The directory goes away: the next snapshot fails, and the data is
	// ephemeral again.
	require.NoError(t, os.RemoveAll(snaps))
	failed := time.Now()
	insertNotes(t, db, 10, 1)
	require.Eventually(t, db.Ephemeral, 5*time.Second, 10*time.Millisecond)
	h = db.Health(context.Background())
	assert.Equal(t, "failing", h.Snapshot.State)
	assert.True(t, h.Snapshot.LastErrorAt.After(failed))
	assert.True(t, h.Ephemeral)
}

// TestSnapshotOnlyWhenChanged: no new snapshot while nothing is written.
func TestSnapshotOnlyWhenChanged(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t, WithSnapshotInterval(20*time.Millisecond))
	insertNotes(t, db, 1, 3)
	written := time.Now()
	require.Eventually(t, func() bool {
		h := db.Health(context.Background()).Snapshot
		return h.State == "ok" && h.Last.After(written)
	}, 30*time.Second, 10*time.Millisecond)
	first := *db.Health(context.Background()).Snapshot.Last
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, first, *db.Health(context.Background()).Snapshot.Last, "no write, no snapshot")
	insertNotes(t, db, 10, 1)
	require.Eventually(t, func() bool { return db.Health(context.Background()).Snapshot.Last.After(first) }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, db.Close())
	snaps, _ := e.snapshotFiles(t)
	assert.Len(t, snaps, 2, "one per change, none at Close without a change")
}

// TestSnapshotKeepsThree: the writer keeps its newest three snapshots.
func TestSnapshotKeepsThree(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t)
	for i := range 6 {
		insertNotes(t, db, i*10, 1)
		_, err := db.snap.snapshotIfChanged(context.Background())
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	snaps, manifests := e.snapshotFiles(t)
	assert.Len(t, snaps, snapshotKeep)
	assert.Len(t, manifests, snapshotKeep)
}
