package dbfallback

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// snapshot_config.go reads where snapshots go and checks that the place
// survives a restart. The snapshot machinery itself is in snapshot.go
// (writing), snapshot_format.go (files and manifests) and
// snapshot_restore.go (restoring at Open).

// Environment variables of the snapshot feature, read through WithLookupEnv.
const (
	snapshotDirEnv      = "DBFALLBACK_SNAPSHOT_DIR"
	snapshotIntervalEnv = "DBFALLBACK_SNAPSHOT_INTERVAL"
)

// Snapshot defaults. See WithSnapshotInterval for why 10 s.
const (
	defaultSnapshotInterval = 10 * time.Second
	// snapshotDutyCycle: the next snapshot starts no sooner than this many
	// times the last one's duration after it ended, so a large database
	// spends at most a tenth of the time being copied out.
	snapshotDutyCycle = 10
	// snapshotKeep is how many verified snapshots of its own lineage a
	// writer keeps.
	snapshotKeep = 3
	// snapshotCloseTimeout bounds the final snapshot of Close: a Space
	// gets SIGTERM and must exit within 5 s.
	snapshotCloseTimeout = 3 * time.Second
)

// WithSnapshotDir makes Open keep snapshots of the SQLite file database it
// uses in dir, a directory on durable storage (a mounted bucket, a network
// volume), and restore the newest verified one when the local file is
// missing or damaged. DBFALLBACK_SNAPSHOT_DIR does the same; this option
// wins. An empty dir keeps the variable's value; there is no default, so
// without either nothing is snapshotted.
//
// While the DB is open, a snapshot is written when the data changed, at
// most once per [WithSnapshotInterval], and once more by Close (bounded by
// 3 s). Close first waits up to 1 s for a write transaction another
// goroutine holds open; after that no write starts and such a
// transaction's Commit fails (it is rolled back), so no write is
// acknowledged that the final snapshot lacks. A snapshot is VACUUM INTO a local temporary file, copied to dir
// under a new name with its SHA-256, read back and verified, and published
// by a small JSON manifest written last; files in dir are never
// overwritten, renamed or locked, so a FUSE bucket without locks or
// atomic rename serves. Each DB keeps its last 3 verified snapshots and
// deletes older ones of its own lineage only after a newer one verified.
//
// SQLite itself never runs in dir. A dir that is missing, cannot be read,
// or reads like a connection string disables snapshots (reported in
// Reason, [DB.Health] and the log; Open still succeeds); one that is not
// writable, or that is on the same device as the database, an overlay or
// a tmpfs (and so vanishes with it), is reported and keeps
// [DB.Ephemeral] true. In-memory databases are never snapshotted.
func WithSnapshotDir(dir string) Option {
	return func(o *options) { o.snapshotDir = dir }
}

// WithSnapshotInterval sets the least time between two snapshots (see
// [WithSnapshotDir]); DBFALLBACK_SNAPSHOT_INTERVAL (a Go duration such as
// "30s") does the same, and this option wins. Zero or less keeps the
// default, 10 s. A snapshot is taken only when the data changed, and no
// sooner than 10 times the previous snapshot's duration after it, so a
// database that takes 2 s to copy out is snapshotted at most every 20 s.
//
// Under SIGKILL (or a lost machine) the writes of at most one interval
// plus one snapshot's duration are lost; SIGTERM followed by Close loses
// none when the final snapshot finishes within its 3 s. 10 s keeps that
// bound short while a busy small database (10 MB: about 0.1 s per
// snapshot, see BENCHMARKS.md) spends about 1% of its time copying out.
func WithSnapshotInterval(d time.Duration) Option {
	return func(o *options) { o.snapshotInterval = d }
}

// snapshotSettings is the snapshot configuration of one Open.
type snapshotSettings struct {
	dir      string        // "" when snapshots are off
	interval time.Duration // least time between two snapshots
	problem  string        // set when the configuration itself is unusable: snapshots are off
	note     string        // something the operator should know (a bad interval)
}

// snapshotSettingsOf reads the option and the variables.
func snapshotSettingsOf(o *options) snapshotSettings {
	s := snapshotSettings{dir: strings.TrimSpace(o.snapshotDir), interval: o.snapshotInterval}
	origin := "WithSnapshotDir"
	if s.dir == "" {
		v, _ := o.lookupEnv(snapshotDirEnv)
		s.dir, origin = strings.TrimSpace(v), snapshotDirEnv
	}
	if s.dir == "" {
		return snapshotSettings{}
	}
	if shown := maskSecrets(s.dir); shown != s.dir {
		return snapshotSettings{problem: fmt.Sprintf("%s %q reads like a connection string with a secret, not a directory; snapshots are off", origin, shorten(shown))}
	}
	if !filepath.IsAbs(s.dir) {
		if abs, err := filepath.Abs(s.dir); err == nil {
			s.dir = abs
		}
	}
	if s.interval <= 0 {
		s.interval = defaultSnapshotInterval
		if v, ok := o.lookupEnv(snapshotIntervalEnv); ok && strings.TrimSpace(v) != "" {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d <= 0 {
				s.note = fmt.Sprintf("%s=%q is not a positive duration such as \"30s\"; snapshots use the default interval, %s", snapshotIntervalEnv, shorten(redactInput(v)), defaultSnapshotInterval)
			} else {
				s.interval = d
			}
		}
	}
	return s
}

// snapshotDirState is what the checks of a snapshot directory found.
type snapshotDirState struct {
	// unusable says why no snapshot can be read or written there
	// (missing, not a directory, unreadable): snapshots are off.
	unusable string
	// notDurable says why snapshots there do not survive what the
	// database does not survive: the data stays ephemeral.
	notDurable string
	// unwritable is the error of a test write, "" when it worked.
	unwritable string
}

// Filesystems that a container restart wipes (statfs magic numbers).
var volatileFilesystems = map[int64]string{
	0x794c7630: "overlay",
	0x01021994: "tmpfs",
	0x858458f6: "ramfs",
}

// checkSnapshotDir checks dir for snapshots of the database at dbPath:
// it exists and lists, a file can be created there, and it is not on the
// database's device or on a filesystem that a restart wipes. kind
// replaces the filesystem and device check in tests (nil: the real one).
func checkSnapshotDir(dir, dbPath string, kind func(dir, dbDir string) string) snapshotDirState {
	var s snapshotDirState
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.unusable = fmt.Sprintf("snapshot directory %s does not exist (is the bucket or volume mounted?); snapshots are off, and it was not created, so that nothing lands on the local disk by mistake", dir)
		return s
	case err != nil:
		s.unusable = fmt.Sprintf("snapshot directory %s cannot be read: %v; snapshots are off", dir, unwrapPathError(err))
		return s
	case !st.IsDir():
		s.unusable = fmt.Sprintf("snapshot directory %s is not a directory; snapshots are off", dir)
		return s
	}
	if _, err := os.ReadDir(dir); err != nil {
		s.unusable = fmt.Sprintf("snapshot directory %s cannot be listed: %v; snapshots are off", dir, unwrapPathError(err))
		return s
	}
	if kind == nil {
		kind = volatileDir
	}
	s.notDurable = kind(dir, nearestDir(filepath.Dir(dbPath)))
	f, err := os.CreateTemp(dir, ".dbfallback-probe-*")
	if err != nil {
		s.unwritable = fmt.Sprintf("snapshot directory %s is not writable: %v", dir, unwrapPathError(err))
		return s
	}
	name := f.Name()
	_, err = f.Write([]byte("dbfallback"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	os.Remove(name)
	if err != nil {
		s.unwritable = fmt.Sprintf("snapshot directory %s is not writable: %v", dir, unwrapPathError(err))
	}
	return s
}

// volatileDir says why snapshots in dir would vanish with the database in
// dbDir: the same device, or an overlay, tmpfs or ramfs. "" when neither.
func volatileDir(dir, dbDir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		if name, ok := volatileFilesystems[int64(st.Type)]; ok {
			return fmt.Sprintf("snapshot directory %s is on %s, which a container restart wipes: snapshots there do not survive one; mount durable storage (a bucket or volume) there", dir, name)
		}
	}
	a, errA := os.Stat(dir)
	b, errB := os.Stat(dbDir)
	if errA == nil && errB == nil && sameDevice(a, b) {
		return fmt.Sprintf("snapshot directory %s is on the same device as the database (%s): snapshots there vanish with it; mount durable storage (a bucket or volume) there", dir, dbDir)
	}
	return ""
}

func sameDevice(a, b os.FileInfo) bool {
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return okA && okB && sa.Dev == sb.Dev
}

// nearestDir returns dir or its nearest existing parent.
func nearestDir(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
