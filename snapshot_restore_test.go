package dbfallback

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// twoSnapshots writes snapshot A (10 notes) then, from a second process
// life on the same local file, B (20 notes), and returns their manifests'
// names, older first.
func twoSnapshots(t *testing.T, e snapEnv) (a, b snapshotManifest) {
	t.Helper()
	db := e.open(t)
	insertNotes(t, db, 1, 10)
	require.NoError(t, db.Close())
	db = e.open(t)
	insertNotes(t, db, 11, 10)
	require.NoError(t, db.Close())
	entries, err := listSnapshots(context.Background(), e.snaps, "notes.db")
	require.NoError(t, err)
	require.Len(t, entries, 2)
	return entries[1].m, entries[0].m
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bucket-copy")
	require.NoError(t, os.MkdirAll(dst, 0o700))
	des, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(src, de.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, de.Name()), data, 0o600))
	}
	return dst
}

// TestSnapshotRestoreSkipsBadSnapshots: a truncated, tampered or
// replaced snapshot, or a damaged or forged manifest, is never restored:
// Open takes the newest snapshot that verifies, or none, and says why it
// skipped the others.
func TestSnapshotRestoreSkipsBadSnapshots(t *testing.T) {
	base := newSnapEnv(t)
	a, b := twoSnapshots(t, base)
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		notes  int
		reason string
	}{
		{"intact: the newest", func(*testing.T, string) {}, 20, "restored it from snapshot " + b.File},
		{"truncated snapshot", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, b.File), b.Size/2))
		}, 10, "(truncated, or replaced by another copy)"},
		{"one byte changed", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, b.File), os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{0x5a}, b.Size-100)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, 10, "SHA-256 differs from its manifest"},
		{"replaced by the older snapshot", func(t *testing.T, dir string) {
			data, err := os.ReadFile(filepath.Join(dir, a.File))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, b.File), data, 0o600))
		}, 10, "skipped " + b.File},
		{"not SQLite", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, b.File), make([]byte, b.Size), 0o600))
		}, 10, "not a SQLite database"},
		{"manifest truncated", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, b.prefix()+manifestSuffix), 20))
		}, 10, "not valid JSON"},
		{"manifest forged to a newer name", func(t *testing.T, dir string) {
			// An older manifest copied under a newer name must not pass
			// for the newer snapshot.
			data, err := os.ReadFile(filepath.Join(dir, a.prefix()+manifestSuffix))
			require.NoError(t, err)
			forged := b
			forged.Seq = 99
			require.NoError(t, os.WriteFile(filepath.Join(dir, forged.prefix()+manifestSuffix), data, 0o600))
		}, 20, "does not match its own file name"},
		{"manifest points at another file", func(t *testing.T, dir string) {
			m := b
			m.File = a.File
			data, err := json.Marshal(m)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, b.prefix()+manifestSuffix), data, 0o600))
		}, 10, "names another snapshot file"},
		{"snapshot without manifest (a writer died copying)", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, b.prefix()+manifestSuffix)))
		}, 10, "restored it from snapshot " + a.File},
		{"both bad: none restored", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, a.File), 100))
			require.NoError(t, os.Truncate(filepath.Join(dir, b.File), 100))
		}, 0, "no verified snapshot in"},
		{"directory replaced by an older copy", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, b.File)))
			require.NoError(t, os.Remove(filepath.Join(dir, b.prefix()+manifestSuffix)))
		}, 10, "restored it from snapshot " + a.File},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := snapEnv{dbPath: filepath.Join(t.TempDir(), "local", "notes.db"), snaps: copyDir(t, base.snaps)}
			tt.damage(t, e.snaps)
			before := dirDigests(t, e.snaps)
			db := e.open(t)
			assert.Equal(t, tt.notes, countNotes(t, db), db.Reason())
			assert.Contains(t, db.Reason(), tt.reason)
			require.NoError(t, db.Close())
			after := dirDigests(t, e.snaps)
			for name, sum := range before {
				if _, ok := after[name]; ok {
					assert.Equal(t, sum, after[name], "%s was changed", name)
				}
			}
		})
	}
}

// dirDigests maps each file of dir to its content.
func dirDigests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		require.NoError(t, err)
		out[de.Name()] = string(data)
	}
	return out
}

// TestSnapshotRestoreDamagedLocal: a damaged local database is moved
// aside (never deleted) and the snapshot takes its place.
func TestSnapshotRestoreDamagedLocal(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t)
	insertNotes(t, db, 1, 30)
	require.NoError(t, db.Close())
	// Damage the header's page size.
	f, err := os.OpenFile(e.dbPath, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0x03, 0x00}, 16)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	db = e.open(t)
	defer db.Close()
	assert.Equal(t, 30, countNotes(t, db))
	assert.Contains(t, db.Reason(), "moved it aside to")
	assert.Contains(t, db.Reason(), "restored it from snapshot")
	aside, err := filepath.Glob(e.dbPath + ".corrupt-*")
	require.NoError(t, err)
	assert.NotEmpty(t, aside, "the damaged file is kept")
}

// TestSnapshotRestoreDeadline: a restore that does not fit Open's
// deadline leaves the snapshots as they are; Open still returns a
// database (memory, the never-fail rule), says why, and this process
// writes no snapshot that could hide them. The next Open restores.
func TestSnapshotRestoreDeadline(t *testing.T) {
	e := newSnapEnv(t)
	db := e.open(t)
	_, err := db.Exec("CREATE TABLE blobs (b BLOB)")
	require.NoError(t, err)
	for range 6 {
		_, err = db.Exec("INSERT INTO blobs VALUES (randomblob(1 << 20))")
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	e.wipeLocal(t)
	before := dirDigests(t, e.snaps)

	isolatedDirs(t)
	// The file location gets 300 ms of the 400 (open_deadline.go); the
	// restore needs 6 chunks of 100 ms.
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	db, err = Open(ctx, env(), withDataDir(""), WithSQLitePath(e.dbPath), WithStrategy(SQLiteOnly), WithSnapshotDir(e.snaps), durableSnapshots,
		withSlowRestore(100*time.Millisecond))
	require.NoError(t, err)
	assert.NotEqual(t, e.dbPath, db.Target().Path, "the location whose restore ran out of time is passed over")
	// Open gives up on the location, or the restore stops first.
	assert.Regexp(t, regexp.QuoteMeta(e.dbPath)+`( did not open in time|: gave up after .*: dbfallback: restore .* not finished within the time Open had for it)`, db.Reason())
	assert.Contains(t, db.Reason(), "snapshots of this process are off: restoring "+e.dbPath+" was cut short")
	assert.True(t, db.Ephemeral())
	if h := db.Health(context.Background()); h.Snapshot != nil {
		assert.Equal(t, "off", h.Snapshot.State)
	}
	require.NoError(t, db.Close())
	assert.Equal(t, before, dirDigests(t, e.snaps), "the snapshots are untouched")
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(e.dbPath), ".notes.db.dbfallback-restore-*"))
	assert.Empty(t, leftovers, "no temporary copy is left behind")

	db = e.open(t)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM blobs").Scan(&n))
	assert.Equal(t, 6, n)
}

// TestSnapshotDirProblems: a snapshot directory that is missing, not a
// directory, reads like a secret, or vanishes with the database is
// reported, and Open still succeeds.
func TestSnapshotDirProblems(t *testing.T) {
	shm := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm = "/dev/shm"
	}
	tests := []struct {
		name      string
		dir       func(t *testing.T, e snapEnv) string
		real      bool // use the real durability check
		state     string
		reason    string
		ephemeral bool
	}{
		{"missing", func(t *testing.T, e snapEnv) string { return filepath.Join(e.snaps, "not-mounted") }, false, "off", "does not exist (is the bucket or volume mounted?)", true},
		{"a file", func(t *testing.T, e snapEnv) string {
			p := filepath.Join(e.snaps, "file")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			return p
		}, false, "off", "is not a directory", true},
		{"same device as the database", func(t *testing.T, e snapEnv) string { return e.snaps }, true, "not durable", "is on the same device as the database", true},
		{"tmpfs", func(t *testing.T, e snapEnv) string {
			if shm == "" {
				t.Skip("no /dev/shm tmpfs here")
			}
			d, err := os.MkdirTemp(shm, "dbfallback-snaps-")
			require.NoError(t, err)
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}, true, "not durable", "which a container restart wipes", true},
		{"durable", func(t *testing.T, e snapEnv) string { return e.snaps }, false, "ok", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newSnapEnv(t)
			dir := tt.dir(t, e)
			isolatedDirs(t) // ./data: an unvouched location, so that snapshots decide Ephemeral
			opts := []Option{env(), withDataDir(""), WithStrategy(SQLiteOnly), WithSnapshotDir(dir)}
			if !tt.real {
				opts = append(opts, durableSnapshots)
			}
			db, err := Open(context.Background(), opts...)
			require.NoError(t, err)
			defer db.Close()
			insertNotes(t, db, 1, 2)
			require.NoError(t, db.Close())
			h := db.Health(context.Background())
			require.NotNil(t, h.Snapshot)
			assert.Equal(t, tt.state, h.Snapshot.State, "%+v", h.Snapshot)
			assert.Contains(t, db.Reason(), tt.reason)
			assert.Equal(t, tt.ephemeral, db.Ephemeral())
		})
	}
}

// TestSnapshotSettings: the option wins over the variable, a bad
// interval is reported, and a directory that reads like a connection
// string is refused without being echoed.
func TestSnapshotSettings(t *testing.T) {
	tests := []struct {
		name     string
		opt      string
		env      []string
		dir      string
		interval time.Duration
		problem  string
		note     string
	}{
		{"variable", "", []string{snapshotDirEnv, "/mnt/bucket"}, "/mnt/bucket", defaultSnapshotInterval, "", ""},
		{"option wins", "/mnt/a", []string{snapshotDirEnv, "/mnt/b"}, "/mnt/a", defaultSnapshotInterval, "", ""},
		{"interval", "", []string{snapshotDirEnv, "/mnt/b", snapshotIntervalEnv, "30s"}, "/mnt/b", 30 * time.Second, "", ""},
		{"bad interval", "", []string{snapshotDirEnv, "/mnt/b", snapshotIntervalEnv, "soon"}, "/mnt/b", defaultSnapshotInterval, "", "is not a positive duration"},
		{"a secret", "", []string{snapshotDirEnv, "postgres://u:hunter2secret@db/x"}, "", 0, "reads like a connection string", ""},
		{"unset", "", nil, "", 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := buildOptions([]Option{env(tt.env...), WithSnapshotDir(tt.opt)})
			s := snapshotSettingsOf(&o)
			assert.Equal(t, tt.dir, s.dir)
			if tt.dir != "" {
				assert.Equal(t, tt.interval, s.interval)
			}
			if tt.problem == "" {
				assert.Empty(t, s.problem)
			} else {
				assert.Contains(t, s.problem, tt.problem)
				assert.NotContains(t, s.problem, "hunter2secret")
			}
			if tt.note != "" {
				assert.Contains(t, s.note, tt.note)
			}
		})
	}
}

// TestSnapshotSecretDirOpens: Open with a secret-looking directory
// still opens, says why snapshots are off, and never echoes it.
func TestSnapshotSecretDirOpens(t *testing.T) {
	e := newSnapEnv(t)
	db, err := Open(context.Background(), env(snapshotDirEnv, "postgres://u:hunter2secret@db/x"), WithSQLitePath(e.dbPath), WithStrategy(SQLiteOnly))
	require.NoError(t, err)
	defer db.Close()
	assert.Contains(t, db.Reason(), "reads like a connection string")
	js, err := json.Marshal(db.Health(context.Background()))
	require.NoError(t, err)
	assert.False(t, strings.Contains(db.Reason()+string(js)+db.String(), "hunter2secret"))
}
