package dbfallback

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Helpers of attack_snapshot_test.go: a service with a local disk and a
// snapshot directory, restarted as a new process (a new Open: a new
// writer id) with or without its local disk.

// snapRig is one service: its local database file and its bucket.
type snapRig struct {
	t      *testing.T
	local  string // the local database file
	bucket string // the snapshot directory
	logs   *syncBuffer
	// auto: the local file is an automatic location (./data/notes.db,
	// which nobody vouched for), not WithSQLitePath.
	auto bool
}

func newSnapRig(t *testing.T) *snapRig {
	t.Helper()
	base := t.TempDir()
	r := &snapRig{t: t, local: filepath.Join(base, "local", "notes.db"), bucket: filepath.Join(base, "bucket"), logs: &syncBuffer{}}
	require.NoError(t, os.MkdirAll(r.bucket, 0o700))
	t.Chdir(base) // ./data/app.db, a later location, lands in the test's directory
	return r
}

// newAutoSnapRig is a rig whose database is in the automatic location
// ./data/notes.db of a new working directory: not persistent, so
// Ephemeral depends on the snapshots alone.
func newAutoSnapRig(t *testing.T) *snapRig {
	r := newSnapRig(t)
	base := filepath.Dir(r.bucket)
	r.local, r.auto = filepath.Join(base, "data", "notes.db"), true
	return r
}

// open starts a "process" on the rig: SQLite only, a durable bucket, an
// interval of an hour unless more says otherwise (only Close snapshots).
func (r *snapRig) open(more ...Option) *DB {
	r.t.Helper()
	db, err := Open(context.Background(), r.opts(more...)...)
	require.NoError(r.t, err)
	return db
}

func (r *snapRig) opts(more ...Option) []Option {
	base := []Option{
		WithLookupEnv(func(k string) (string, bool) {
			if k == "TMPDIR" {
				return filepath.Dir(r.local), true
			}
			return "", false
		}),
		withDataDir(filepath.Join(filepath.Dir(r.bucket), "no-data-mount")),
		WithStrategy(SQLiteOnly),
		WithSnapshotDir(r.bucket), WithSnapshotInterval(time.Hour), durableSnapshots,
		WithLogger(slog.New(slog.NewTextHandler(r.logs, nil))),
	}
	if r.auto {
		base = append(base, WithSQLiteName(filepath.Base(r.local)))
	} else {
		base = append(base, WithSQLitePath(r.local))
	}
	return append(base, more...)
}

// wipeLocal is a new container: the local disk is gone.
func (r *snapRig) wipeLocal() {
	r.t.Helper()
	require.NoError(r.t, os.RemoveAll(filepath.Dir(r.local)))
}

// manifests returns the manifests in the bucket, oldest name first.
func (r *snapRig) manifests() []snapshotManifest {
	r.t.Helper()
	entries, err := os.ReadDir(r.bucket)
	require.NoError(r.t, err)
	var out []snapshotManifest
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), manifestSuffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.bucket, e.Name()))
		require.NoError(r.t, err)
		var m snapshotManifest
		require.NoError(r.t, json.Unmarshal(data, &m))
		out = append(out, m)
	}
	return out
}

// forge publishes a copy of snapshot m as writer m.Writer would have with
// its clock shifted by shift and sequence seq: a manifest that agrees with
// its name and a .snap with the same bytes (a snapshot written by a
// process whose clock was wrong).
func (r *snapRig) forge(m snapshotManifest, shift time.Duration, seq int64) snapshotManifest {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(r.bucket, m.File))
	require.NoError(r.t, err)
	m.Taken = m.Taken.Add(shift)
	m.Seq = seq
	m.File = m.prefix() + snapshotSuffix
	require.NoError(r.t, os.WriteFile(filepath.Join(r.bucket, m.File), data, 0o600))
	man, err := json.MarshalIndent(m, "", "  ")
	require.NoError(r.t, err)
	require.NoError(r.t, os.WriteFile(filepath.Join(r.bucket, m.prefix()+manifestSuffix), append(man, '\n'), 0o600))
	return m
}

// remove deletes both files of m.
func (r *snapRig) remove(m snapshotManifest) {
	r.t.Helper()
	require.NoError(r.t, os.Remove(filepath.Join(r.bucket, m.File)))
	require.NoError(r.t, os.Remove(filepath.Join(r.bucket, m.prefix()+manifestSuffix)))
}

// notes reads every note title, sorted.
func snapNotes(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT title FROM notes ORDER BY title")
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// snapSeed creates the notes table with the titles given.
func snapSeed(t *testing.T, db *DB, titles ...string) {
	t.Helper()
	_, err := db.Exec("CREATE TABLE IF NOT EXISTS notes (title TEXT)")
	require.NoError(t, err)
	for _, s := range titles {
		_, err := db.Exec("INSERT INTO notes VALUES (?)", s)
		require.NoError(t, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	return append(data, '\n')
}
