package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mountTmpfs mounts a tmpfs of size bytes at a new directory and returns
// it; it needs root (CI runs as root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	require.NoError(t, err, "mount: %s", out)
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput()
	require.NoError(t, err, "remount %s: %s", mode, out)
}

// waitSnapshot waits until the DB's snapshot state is past since: a new
// snapshot, or a new failure.
func waitSnapshot(t *testing.T, db *DB, since time.Time) SnapshotHealth {
	t.Helper()
	var h SnapshotHealth
	require.Eventually(t, func() bool {
		h = *db.Health(context.Background()).Snapshot
		return h.Last != nil && h.Last.After(since) || h.LastErrorAt != nil && h.LastErrorAt.After(since)
	}, 60*time.Second, 5*time.Millisecond)
	return h
}

// TestSnapshotDirFailsMidWrite: the snapshot directory fills up in the
// middle of a copy (a 512 KiB tmpfs), then turns read-only. Each failed
// snapshot is reported (Health), leaves no partial file, and
// the last good snapshot stays and is what a restore takes. Close's
// final snapshot fails too and says what is lost.
func TestSnapshotDirFailsMidWrite(t *testing.T) {
	bucket := mountTmpfs(t, "512k")
	e := snapEnv{dbPath: filepath.Join(t.TempDir(), "local", "notes.db"), snaps: bucket}
	// The background snapshots wait an hour: the test takes them.
	db := e.open(t, WithSnapshotInterval(time.Hour), withSnapshotCloseTimeout(snapshotCloseTimeout))
	snap := func() SnapshotHealth {
		db.snap.snapshotIfChanged(context.Background())
		return *db.Health(context.Background()).Snapshot
	}
	insertNotes(t, db, 1, 20)
	h := snap()
	require.Equal(t, "ok", h.State, h.LastError)
	good, goodManifests := e.snapshotFiles(t)
	require.Len(t, good, 1)

	// Grow the database past what is left in the directory.
	_, err := db.Exec("CREATE TABLE blobs (b BLOB)")
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO blobs VALUES (randomblob(600 * 1024))")
	require.NoError(t, err)
	h = snap()
	assert.Equal(t, "failing", h.State)
	assert.Contains(t, h.LastError, "no space left on device")
	snaps, manifests := e.snapshotFiles(t)
	assert.Equal(t, good, snaps, "the partial copy is removed, the good one kept")
	assert.Equal(t, goodManifests, manifests)

	// Now read-only.
	_, err = db.Exec("DELETE FROM blobs")
	require.NoError(t, err)
	remount(t, bucket, "ro")
	h = snap()
	assert.Equal(t, "failing", h.State)
	assert.Contains(t, h.LastError, "read-only file system")
	err = db.Close()
	require.Error(t, err, "the final snapshot could not be written")
	assert.Contains(t, err.Error(), "the final snapshot of "+e.dbPath+" was not saved")
	assert.Contains(t, err.Error(), "writes made since "+h.Last.Format(time.RFC3339))

	// A new container restores the last good snapshot.
	e.wipeLocal(t)
	db = e.open(t)
	defer db.Close()
	assert.Equal(t, 20, countNotes(t, db))
	assert.Contains(t, db.Reason(), "restored it from snapshot "+good[0])
}

// TestSnapshotTwoWriters: two processes' DBs (two replicas) on one
// snapshot directory never delete or overwrite each other's snapshots,
// and both Health and a later restore report the other writer loudly.
func TestSnapshotTwoWriters(t *testing.T) {
	bucket := filepath.Join(t.TempDir(), "bucket")
	require.NoError(t, os.MkdirAll(bucket, 0o700))
	a := snapEnv{dbPath: filepath.Join(t.TempDir(), "a", "notes.db"), snaps: bucket}
	b := snapEnv{dbPath: filepath.Join(t.TempDir(), "b", "notes.db"), snaps: bucket}
	dbA := a.open(t, WithSnapshotInterval(5*time.Millisecond))
	dbB := b.open(t, WithSnapshotInterval(5*time.Millisecond))
	for i := range 6 {
		now := time.Now()
		insertNotes(t, dbA, 100+i, 1)
		insertNotes(t, dbB, 200+i, 1)
		waitSnapshot(t, dbA, now)
		waitSnapshot(t, dbB, now)
	}
	hA, hB := dbA.Health(context.Background()).Snapshot, dbB.Health(context.Background()).Snapshot
	assert.Equal(t, []string{hB.Writer}, hA.OtherWriters)
	assert.Equal(t, []string{hA.Writer}, hB.OtherWriters)
	assert.Contains(t, hA.Warning, "use PrimaryOnly")
	require.NoError(t, dbA.Close())
	require.NoError(t, dbB.Close())
	entries, err := listSnapshots(context.Background(), bucket, "notes.db")
	require.NoError(t, err)
	per := map[string]int{}
	for _, e := range entries {
		assert.Empty(t, e.problem)
		assert.Empty(t, verifySnapshot(context.Background(), bucket, &e.m), "every kept snapshot verifies")
		per[e.m.Writer]++
	}
	assert.Equal(t, map[string]int{hA.Writer: snapshotKeep, hB.Writer: snapshotKeep}, per, "each keeps its own three")

	// A new container for replica A restores the newest snapshot and says
	// that another writer's rows are not in it.
	a.wipeLocal(t)
	db := a.open(t)
	defer db.Close()
	assert.Equal(t, 6, countNotes(t, db))
	assert.Contains(t, db.Reason(), "WARNING: snapshots of another writer")
	assert.Contains(t, db.Reason(), "use PrimaryOnly")
}

// TestSnapshotWritersKeepGoing: writers through the pool (plain
// statements and Tx) never fail, nor wait long, while snapshots run back
// to back on a database of a few MB.
func TestSnapshotWritersKeepGoing(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t, WithSnapshotInterval(time.Millisecond))
	defer db.Close()
	_, err := db.Exec("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
	require.NoError(t, err)
	for range 4 {
		_, err = db.Exec("INSERT INTO blobs (b) VALUES (randomblob(1 << 20))")
		require.NoError(t, err)
	}
	start := time.Now()
	var mu sync.Mutex
	var lat []time.Duration
	var first firstError
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least 700 ms, and until a snapshot ran during the load
			// (on a loaded machine one may take long).
			for time.Since(start) < 700*time.Millisecond || !snappedSince(db, start) && time.Since(start) < 20*time.Second {
				t0 := time.Now()
				var err error
				if w%2 == 0 {
					_, err = db.Exec("INSERT INTO blobs (b) VALUES (randomblob(512))")
				} else {
					err = db.Tx(context.Background(), func(tx *sql.Tx) error {
						_, err := tx.Exec("INSERT INTO blobs (b) VALUES (randomblob(512))")
						return err
					})
				}
				if err != nil {
					first.set(err)
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, first.get(), "no writer fails (no BUSY) while snapshots run")
	h := db.Health(context.Background()).Snapshot
	require.NotNil(t, h.Last, "snapshots ran: %s", h.LastError)
	assert.True(t, h.Last.After(start), "a snapshot was taken during the load")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := lat[len(lat)*99/100]
	assert.Less(t, p99, 500*time.Millisecond, "a generous bound; BENCHMARKS.md has the figures")
	t.Logf("%d writes, p99 %s, max %s", len(lat), p99, lat[len(lat)-1])
}

// TestSnapshotCloseBounded: Close returns within the final snapshot's
// bound even when the copy is slow, and says what was not saved.
func TestSnapshotCloseBounded(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t)
	insertNotes(t, db, 1, 5)
	// A directory that does not take the copy: the final snapshot fails
	// at once, and Close still ends in time.
	require.NoError(t, os.RemoveAll(e.snaps))
	start := time.Now()
	err := db.Close()
	assert.Less(t, time.Since(start), snapshotCloseTimeout+time.Second)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "writes made since it was opened"), err.Error())
	assert.False(t, errors.Is(err, context.DeadlineExceeded))
}

func snappedSince(db *DB, t time.Time) bool {
	h := db.Health(context.Background()).Snapshot
	return h != nil && h.Last != nil && h.Last.After(t)
}
