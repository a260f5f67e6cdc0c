package dbfallback

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Attacks on the durable-fallback snapshots (issue 15) by an outside
// reviewer: each restart is a new Open (a new writer id), a new container
// is a wiped local directory.

// A process whose WithInit hook writes right after a restore (a seed row,
// a data migration) and is then given SIGTERM must not lose those writes:
// Close's final snapshot has to include them.
func TestAttackSnapshotInitWritesAfterRestoreReachCloseSnapshot(t *testing.T) {
	r := newSnapRig(t)
	db := r.open()
	snapSeed(t, db, "before")
	require.NoError(t, db.Close())

	r.wipeLocal()
	db = r.open(WithInit(func(ctx context.Context, db *DB) error {
		_, err := db.ExecContext(ctx, "INSERT INTO notes VALUES ('written by init')")
		return err
	}))
	require.NotEmpty(t, db.Health(context.Background()).Snapshot.Restored, "the first start after a wipe restores")
	require.NoError(t, db.Close())

	r.wipeLocal()
	db = r.open()
	defer db.Close()
	assert.Equal(t, []string{"before", "written by init"}, snapNotes(t, db),
		"a row acknowledged by the init hook after a restore, then SIGTERM and Close, was lost")
}

// Clock going backwards: snapshots in the bucket dated in the future (a
// writer whose clock was ahead). The process that restored from them
// must not delete its own newer snapshot as "older", and the next start
// must restore the newest data, not the future-dated ancestor.
func TestAttackSnapshotFutureDatedAncestorsDoNotWinOverNewerData(t *testing.T) {
	r := newSnapRig(t)
	db := r.open()
	snapSeed(t, db, "from the writer with a fast clock")
	require.NoError(t, db.Close())
	ms := r.manifests()
	require.Len(t, ms, 1)
	// That writer's clock ran an hour ahead: three snapshots, all future.
	for seq := int64(2); seq <= 4; seq++ {
		r.forge(ms[0], time.Hour+time.Duration(seq)*time.Second, seq)
	}
	r.remove(ms[0])

	r.wipeLocal()
	db = r.open()
	require.NotEmpty(t, db.Health(context.Background()).Snapshot.Restored)
	_, err := db.Exec("INSERT INTO notes VALUES ('acknowledged after the restore')")
	require.NoError(t, err)
	require.NoError(t, db.Close(), "Close's final snapshot")
	writer := ""
	for _, m := range r.manifests() {
		if len(m.Lineage) > 0 {
			writer = m.Writer
		}
	}
	assert.NotEmpty(t, writer, "the final snapshot of the restoring process was deleted right after it was published")

	r.wipeLocal()
	db = r.open()
	defer db.Close()
	assert.Equal(t, []string{"acknowledged after the restore", "from the writer with a fast clock"}, snapNotes(t, db),
		"SIGTERM lost an acknowledged write: restore took a future-dated ancestor over its descendant")
}

// Snapshots dated an hour ahead (their writer's clock was ahead, then
// stepped back) and a process that restored from them and snapshots
// often: it must keep its own newest snapshots, however their times sort
// against its ancestors', and a restore must take its newest.
func TestAttackSnapshotRestoredWriterKeepsItsOwnUnderFutureAncestors(t *testing.T) {
	r := newSnapRig(t)
	db := r.open()
	snapSeed(t, db, "old")
	require.NoError(t, db.Close())
	ms := r.manifests()
	require.Len(t, ms, 1)
	// Renumber the first snapshot as seq 1..3 an hour ahead: the writer's
	// clock was ahead, then stepped back.
	var ahead []snapshotManifest
	for seq := int64(1); seq <= 3; seq++ {
		ahead = append(ahead, r.forge(ms[0], time.Hour+time.Duration(seq)*time.Second, seq+10))
	}
	r.remove(ms[0])
	// Restart on the same local disk: a new writer, which has to restore
	// nothing; then a new container restores the "newest".
	r.wipeLocal()
	db = r.open(WithSnapshotInterval(time.Millisecond))
	_, err := db.Exec("INSERT INTO notes VALUES ('new')")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		h := db.Health(context.Background()).Snapshot
		return h.State == "ok" && h.File != ahead[2].File
	}, 5*time.Second, 5*time.Millisecond, "a snapshot of the new row")
	for i := 0; i < 4; i++ { // more snapshots of this writer than it keeps
		_, err := db.Exec("INSERT INTO notes VALUES (?)", "new"+string(rune('a'+i)))
		require.NoError(t, err)
		before := db.Health(context.Background()).Snapshot.File
		require.Eventually(t, func() bool {
			h := db.Health(context.Background()).Snapshot
			return h.State == "ok" && h.File != before
		}, 5*time.Second, 5*time.Millisecond)
	}
	require.NoError(t, db.Close())
	var own []snapshotManifest
	for _, m := range r.manifests() {
		if m.Writer != ahead[0].Writer {
			own = append(own, m)
		}
	}
	assert.Len(t, own, snapshotKeep, "the restoring writer keeps its newest %d snapshots", snapshotKeep)

	r.wipeLocal()
	db = r.open()
	defer db.Close()
	assert.Len(t, snapNotes(t, db), 6, "a restore took the future-dated ancestor: every row written after it was lost")
}

// Close from two goroutines, and every use after Close: one final
// snapshot, one error value, no panic, nothing left running.
func TestAttackSnapshotCloseConcurrentAndUseAfterClose(t *testing.T) {
	r := newSnapRig(t)
	db := r.open()
	snapSeed(t, db, "a")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = db.Close() }()
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Len(t, r.manifests(), 1, "one final snapshot")
	_, err := db.Exec("INSERT INTO notes VALUES ('after close')")
	assert.Error(t, err)
	h := db.Health(context.Background())
	assert.Equal(t, "down", h.Status)
	assert.Equal(t, "ok", h.Snapshot.State)
	assert.NoError(t, db.Close())
	assert.Len(t, r.manifests(), 1, "a second Close writes nothing")
}

// The snapshot directory is deleted while the service runs (the bucket
// unmounted): Health says failing, Ephemeral turns true, Close says which
// writes are only local, and nothing is created in its place.
func TestAttackSnapshotDirDeletedWhileRunning(t *testing.T) {
	r := newAutoSnapRig(t)
	db := r.open(WithSnapshotInterval(time.Millisecond))
	abs, err := filepath.Abs(db.Target().Path)
	require.NoError(t, err)
	require.Equal(t, r.local, abs)
	snapSeed(t, db, "a")
	require.Eventually(t, func() bool { return db.Health(context.Background()).Snapshot.State == "ok" }, 5*time.Second, 5*time.Millisecond)
	assert.False(t, db.Ephemeral())
	require.NoError(t, os.RemoveAll(r.bucket))
	snapSeed(t, db, "b")
	require.Eventually(t, func() bool { return db.Health(context.Background()).Snapshot.State == "failing" }, 5*time.Second, 5*time.Millisecond)
	assert.True(t, db.Ephemeral(), "no snapshot holds the newest write")
	err = db.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "only in the local file")
	_, statErr := os.Stat(r.bucket)
	assert.ErrorIs(t, statErr, os.ErrNotExist, "the directory was recreated on the local disk")
}

// Hostile contents of the snapshot directory at restore: each is skipped
// with its reason, the verified snapshot is restored, and nothing there
// is touched.
func TestAttackSnapshotHostileDirectoryContents(t *testing.T) {
	tests := []struct {
		name string
		// plant adds hostile files next to the good snapshot good and
		// returns the text the reason must hold.
		plant func(t *testing.T, r *snapRig, good snapshotManifest) string
	}{
		{"manifest with path traversal in the writer", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			m := good
			m.Writer, m.Seq, m.Taken = "../../local", 99, good.Taken.Add(time.Minute)
			m.File = m.prefix() + snapshotSuffix
			data := `{"format":1,"database":"notes.db","writer":"../../local","seq":99,"taken":"` + m.Taken.Format(time.RFC3339Nano) + `","file":"` + m.File + `","size":` + itoa(good.Size) + `,"sha256":"` + good.SHA256 + `"}`
			// The name cannot hold a slash: the manifest is named as the
			// writer would be without it, and so disagrees with its name.
			name := strings.ReplaceAll(m.prefix(), "/", "_") + manifestSuffix
			require.NoError(t, os.WriteFile(filepath.Join(r.bucket, name), []byte(data), 0o600))
			return name
		}},
		{"newer manifest whose snapshot is a FIFO", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			m := good
			m.Seq, m.Taken = 50, good.Taken.Add(time.Minute)
			m.File = m.prefix() + snapshotSuffix
			require.NoError(t, syscall.Mkfifo(filepath.Join(r.bucket, m.File), 0o600))
			writeManifest(t, r, m)
			return "named pipe"
		}},
		{"manifest that is a FIFO", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			name := "notes.db.20990101T000000Z.ffff.000001" + manifestSuffix
			require.NoError(t, syscall.Mkfifo(filepath.Join(r.bucket, name), 0o600))
			return name
		}},
		{"newer manifest whose snapshot links to the live database", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			m := good
			m.Seq, m.Taken = 51, good.Taken.Add(time.Minute)
			m.File = m.prefix() + snapshotSuffix
			require.NoError(t, os.Symlink(r.local, filepath.Join(r.bucket, m.File)))
			writeManifest(t, r, m)
			return m.File
		}},
		{"newer manifest whose snapshot links to /dev/zero", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			m := good
			m.Seq, m.Taken = 52, good.Taken.Add(time.Minute)
			m.File = m.prefix() + snapshotSuffix
			require.NoError(t, os.Symlink("/dev/zero", filepath.Join(r.bucket, m.File)))
			writeManifest(t, r, m)
			return "device"
		}},
		{"huge manifest", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			name := "notes.db.20990101T000000Z.eeee.000001" + manifestSuffix
			f, err := os.Create(filepath.Join(r.bucket, name))
			require.NoError(t, err)
			require.NoError(t, f.Truncate(64<<20)) // sparse: 64 MiB of zeros
			require.NoError(t, f.Close())
			return "larger than"
		}},
		{"newer truncated snapshot", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			m := r.forge(good, time.Minute, 53)
			require.NoError(t, os.Truncate(filepath.Join(r.bucket, m.File), good.Size/2))
			return "truncated"
		}},
		{"newer snapshot with one byte changed", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			m := r.forge(good, time.Minute, 54)
			f, err := os.OpenFile(filepath.Join(r.bucket, m.File), os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{0x5a}, good.Size-1)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			return "SHA-256 differs"
		}},
		{"junk files and directories", func(t *testing.T, r *snapRig, good snapshotManifest) string {
			for _, n := range []string{"notes.db.junk" + manifestSuffix, "notes.db." + snapshotSuffix, "README", ".DS_Store"} {
				require.NoError(t, os.WriteFile(filepath.Join(r.bucket, n), []byte("junk"), 0o600))
			}
			require.NoError(t, os.Mkdir(filepath.Join(r.bucket, "notes.db.dir"+manifestSuffix), 0o700))
			return "notes.db.junk" + manifestSuffix
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSnapRig(t)
			db := r.open()
			snapSeed(t, db, "good")
			require.NoError(t, db.Close())
			ms := r.manifests()
			require.Len(t, ms, 1)
			r.wipeLocal()
			want := tt.plant(t, r, ms[0])
			before := treeDigest(t, r.bucket)

			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			db, err := Open(ctx, r.opts()...)
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, []string{"good"}, snapNotes(t, db))
			h := db.Health(ctx).Snapshot
			assert.Contains(t, h.Restored, ms[0].File)
			assert.Contains(t, db.Reason(), want)
			assert.Equal(t, before, treeDigest(t, r.bucket), "the restore changed the snapshot directory")
		})
	}
}

func writeManifest(t *testing.T, r *snapRig, m snapshotManifest) {
	t.Helper()
	r.t = t
	data := mustJSON(t, m)
	require.NoError(t, os.WriteFile(filepath.Join(r.bucket, m.prefix()+manifestSuffix), data, 0o600))
}

// DBFALLBACK_SNAPSHOT_INTERVAL values an operator may type: a bad one is
// reported and the default used; 1ms works and writers never see BUSY.
func TestAttackSnapshotIntervalEnv(t *testing.T) {
	tests := []struct {
		value string
		want  time.Duration
		note  bool
	}{
		{"0", defaultSnapshotInterval, true},
		{"-5s", defaultSnapshotInterval, true},
		{"10", defaultSnapshotInterval, true}, // no unit
		{"1ms", time.Millisecond, false},
		{" 30s ", 30 * time.Second, false},
		{"postgres://u:hunter2secret@h/db", defaultSnapshotInterval, true},
	}
	for i, tt := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			r := newSnapRig(t)
			o := r.opts(WithSnapshotInterval(0))
			o = append(o, WithLookupEnv(func(k string) (string, bool) {
				if k == snapshotIntervalEnv {
					return tt.value, true
				}
				return "", false
			}))
			db, err := Open(context.Background(), o...)
			require.NoError(t, err)
			defer db.Close()
			h := db.Health(context.Background())
			assert.Equal(t, tt.want.Seconds(), h.Snapshot.IntervalSeconds)
			assert.Equal(t, tt.note, strings.Contains(db.Reason(), snapshotIntervalEnv), db.Reason())
			assert.NotContains(t, db.Reason()+r.logs.String(), "hunter2secret")
		})
	}
}

// With a 1 ms interval the snapshotter copies out almost all the time:
// writers (plain and inside a long transaction) never fail, and every
// committed row is in Close's final snapshot.
func TestAttackSnapshotBusyIntervalWritersKeepGoing(t *testing.T) {
	r := newSnapRig(t)
	db := r.open(WithSnapshotInterval(time.Millisecond))
	snapSeed(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A long transaction spans several snapshots.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.Exec("INSERT INTO notes VALUES ('tx-1')")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var firstErr firstError
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				if _, err := db.ExecContext(ctx, "INSERT INTO notes VALUES (?)", "w"); err != nil {
					firstErr.set(err)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // snapshots run; the writers queue behind the transaction
	_, err = tx.Exec("INSERT INTO notes VALUES ('tx-2')")
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	wg.Wait()
	require.NoError(t, firstErr.get(), "a writer failed while snapshots ran")
	require.NoError(t, db.Close())

	r.wipeLocal()
	db = r.open()
	defer db.Close()
	assert.Len(t, snapNotes(t, db), 122, "every committed row is in the final snapshot")
}

// SQLITE_PATH=:memory: with a snapshot directory: it is not a file to
// snapshot, so Open says so and uses the next location, whose snapshots
// are taken; the in-memory last resort is never snapshotted.
func TestAttackSnapshotMemorySQLitePath(t *testing.T) {
	r := newAutoSnapRig(t)
	o := append(r.opts(), WithLookupEnv(func(k string) (string, bool) {
		if k == "SQLITE_PATH" {
			return ":memory:", true
		}
		return "", false
	}))
	db, err := Open(context.Background(), o...)
	require.NoError(t, err)
	snapSeed(t, db, "a")
	t.Log(db.Reason())
	assert.False(t, db.Target().Memory)
	require.NoError(t, db.Close())
	assert.Len(t, r.manifests(), 1)
}

// The snapshot directory given as a relative path, and the directory
// equal to the database's own directory: both work, the second is
// reported as not durable (Ephemeral stays true), and restore from it
// works after the database file alone is lost.
func TestAttackSnapshotDirPlacement(t *testing.T) {
	t.Run("relative", func(t *testing.T) {
		r := newSnapRig(t)
		t.Chdir(filepath.Dir(r.bucket))
		db := r.open(WithSnapshotDir("./" + filepath.Base(r.bucket)))
		snapSeed(t, db, "a")
		assert.Equal(t, r.bucket, db.Health(context.Background()).Snapshot.Dir)
		require.NoError(t, db.Close())
		assert.Len(t, r.manifests(), 1)
	})
	t.Run("same as the data directory", func(t *testing.T) {
		r := newAutoSnapRig(t)
		r.bucket = filepath.Dir(r.local)
		require.NoError(t, os.MkdirAll(r.bucket, 0o700))
		o := append(r.opts(), withSnapshotFS(nil)) // the real device check
		db, err := Open(context.Background(), o...)
		require.NoError(t, err)
		snapSeed(t, db, "a")
		h := db.Health(context.Background())
		assert.Equal(t, "not durable", h.Snapshot.State)
		assert.True(t, db.Ephemeral())
		require.NoError(t, db.Close())
		require.Len(t, r.manifests(), 1)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(r.local + suffix)
		}
		db, err = Open(context.Background(), o...)
		require.NoError(t, err)
		defer db.Close()
		assert.Equal(t, []string{"a"}, snapNotes(t, db))
	})
}

// Two processes start at once on one empty local directory with one
// snapshot in the bucket: exactly one restores, both see the data, and
// neither moves the other's file aside.
func TestAttackSnapshotTwoStartsAtOnce(t *testing.T) {
	r := newSnapRig(t)
	db := r.open()
	snapSeed(t, db, "a")
	require.NoError(t, db.Close())
	r.wipeLocal()

	dbs := make([]*DB, 2)
	var wg sync.WaitGroup
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := Open(context.Background(), r.opts()...)
			if assert.NoError(t, err) {
				dbs[i] = d
			}
		}()
	}
	wg.Wait()
	restored := 0
	for _, d := range dbs {
		require.NotNil(t, d)
		defer d.Close()
		assert.Equal(t, []string{"a"}, snapNotes(t, d))
		if d.Health(context.Background()).Snapshot.Restored != "" {
			restored++
		}
		assert.NotContains(t, d.Reason(), "moved it aside")
	}
	assert.Equal(t, 1, restored)
}

// A restore slower than Open's deadline: Open returns a usable database
// before the deadline, says the restore was cut short, writes no
// snapshot, and the next start (with time) restores.
func TestAttackSnapshotRestoreDeadline(t *testing.T) {
	r := newSnapRig(t)
	db := r.open()
	snapSeed(t, db, "a")
	_, err := db.Exec("CREATE TABLE pad (b BLOB)")
	require.NoError(t, err)
	for i := 0; i < 8; i++ { // ~8 MiB: 8 chunks
		_, err := db.Exec("INSERT INTO pad VALUES (randomblob(1048576))")
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	r.wipeLocal()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	db, err = Open(ctx, r.opts(withSlowRestore(400*time.Millisecond))...)
	took := time.Since(start)
	require.NoError(t, err)
	assert.Less(t, took, 1500*time.Millisecond)
	snapSeed(t, db, "written without the snapshot")
	assert.Contains(t, db.Reason(), "cut short")
	assert.Equal(t, "off", db.Health(context.Background()).Snapshot.State)
	require.NoError(t, db.Close())
	assert.Len(t, r.manifests(), 1, "a database opened without its data published a snapshot")

	// The next start has time: the snapshot is still there.
	require.NotEqual(t, r.local, db.Target().Path, "the location whose restore was cut short was passed over")
	r.wipeLocal()
	db = r.open()
	defer db.Close()
	assert.Equal(t, []string{"a"}, snapNotes(t, db))
}

// A DATABASE_URL with a password that does not answer (so the service
// runs on the fallback with snapshots): no password fragment reaches the
// bucket's files, Health, Reason, the log or Close's error.
func TestAttackSnapshotNoSecretWhileOnFallback(t *testing.T) {
	const secret = "Sup3rS3cretPw-9x7q"
	r := newSnapRig(t)
	o := append(r.opts(WithSnapshotInterval(time.Millisecond)), WithStrategy(PreferPrimary), WithLookupEnv(func(k string) (string, bool) {
		if k == "DATABASE_URL" {
			return "postgres://app:" + secret + "@127.0.0.1:1/app?connect_timeout=1", true
		}
		return "", false
	}))
	db, err := Open(context.Background(), o...)
	require.NoError(t, err)
	require.True(t, db.Fallback())
	snapSeed(t, db, "a")
	require.Eventually(t, func() bool { return db.Health(context.Background()).Snapshot.State == "ok" }, 5*time.Second, 5*time.Millisecond)
	h, err := json.Marshal(db.Health(context.Background()))
	require.NoError(t, err)
	closeErr := fmt.Sprint(db.Close())
	var files strings.Builder
	entries, err := os.ReadDir(r.bucket)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(r.bucket, e.Name()))
		require.NoError(t, err)
		files.Write(data)
	}
	local, _ := os.ReadFile(r.local + strandedSuffix)
	for what, text := range map[string]string{
		"bucket": files.String(), "health": string(h), "reason": db.Reason(), "log": r.logs.String(),
		"close": closeErr, "stranded record": string(local),
	} {
		assertNoFragment(t, text, secret, what)
	}
}

// A snapshot directory whose path reads like it holds a password (a URL
// pasted by mistake): snapshots are off, Open succeeds, and the password
// is not repeated anywhere.
func TestAttackSnapshotDirWithPasswordLookingPath(t *testing.T) {
	const secret = "Sup3rS3cretPw-4k2m"
	r := newSnapRig(t)
	dir := filepath.Join(filepath.Dir(r.bucket), "s3:", "app:"+secret+"@bucket")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	db, err := Open(context.Background(), r.opts(WithSnapshotDir(dir))...)
	require.NoError(t, err)
	snapSeed(t, db, "a")
	h := db.Health(context.Background())
	assert.Equal(t, "off", h.Snapshot.State)
	hj, err := json.Marshal(h)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	for what, text := range map[string]string{"health": string(hj), "reason": db.Reason(), "log": r.logs.String()} {
		assertNoFragment(t, text, secret, what)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}
