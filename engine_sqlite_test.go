package dbfallback

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openSQLiteAt opens a DB on a SQLite file under a fresh directory.
func openSQLiteAt(t *testing.T, path string, opts ...Option) *DB {
	t.Helper()
	isolatedDirs(t)
	db, err := Open(context.Background(), append([]Option{env(), withDataDir(""), WithSQLitePath(path)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "nested")
	path := filepath.Join(dir, "app.db")
	db := openSQLiteAt(t, path)
	_, err := db.Exec("CREATE TABLE t(x)")
	require.NoError(t, err)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		require.NoError(t, err, p)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "%s is readable only by its owner", p)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		st, err := os.Stat(d)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "created directory %s", d)
	}
	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	assert.Equal(t, "wal", mode)
	var fk, sync int
	require.NoError(t, db.QueryRow("PRAGMA foreign_keys").Scan(&fk))
	require.NoError(t, db.QueryRow("PRAGMA synchronous").Scan(&sync))
	assert.Equal(t, 1, fk, "foreign keys are enforced")
	assert.Equal(t, 1, sync, "synchronous=NORMAL")
}

// TestSQLiteGarbageFileMovedAside: a damaged SQLite database (its header
// there, its pages or the rest of its header not) is moved aside, intact,
// and a new database takes its place. A file that is not SQLite at all is
// no longer moved (see TestSQLiteForeignFileLeftUntouched): an earlier
// version renamed any unreadable file, go.mod included.
func TestSQLiteGarbageFileMovedAside(t *testing.T) {
	for _, tt := range damagedDatabases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			content := tt.build(t)
			require.NoError(t, os.WriteFile(path, content, 0o600))
			now := time.Date(2026, 11, 26, 12, 30, 45, 0, time.UTC)
			db := openSQLiteAt(t, path, withNow(func() time.Time { return now }))
			aside := path + ".corrupt-20261126T123045Z"
			kept, err := os.ReadFile(aside)
			require.NoError(t, err, "the damaged file is moved aside, never deleted: %s", db.Reason())
			assert.True(t, bytes.Equal(content, kept), "its bytes are intact")
			assert.Contains(t, db.Reason(), aside)
			assert.Contains(t, db.Reason(), tt.why)
			_, err = db.Exec("CREATE TABLE fresh(x)")
			assert.NoError(t, err, "a new database took its place")
			assert.Equal(t, path, db.Target().Path)
			assert.False(t, db.Target().Memory)
		})
	}
	t.Run("through a symbolic link", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "real.db")
		content := damagedDatabases[0].build(t)
		require.NoError(t, os.WriteFile(target, content, 0o600))
		path := filepath.Join(dir, "app.db")
		require.NoError(t, os.Symlink(target, path))
		db := openSQLiteAt(t, path)
		assert.Contains(t, db.Reason(), "moved it aside")
		kept, err := os.ReadFile(target)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(content, kept), "the file the link pointed to is intact")
		_, err = db.Exec("CREATE TABLE fresh(x)")
		assert.NoError(t, err)
	})
	t.Run("not a database is left untouched", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.db")
		content := []byte("<html>this is not SQLite</html>\n")
		require.NoError(t, os.WriteFile(path, content, 0o600))
		db := openSQLiteAt(t, path)
		kept, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, content, kept)
		matches, _ := filepath.Glob(path + ".corrupt-*")
		assert.Empty(t, matches)
		assert.Contains(t, db.Reason(), "not a SQLite database")
		assert.NotEqual(t, path, db.Target().Path)
	})
}

func TestSQLiteMemoryKeepsRowsWhileIdle(t *testing.T) {
	isolatedDirs(t)
	db, err := Open(context.Background(), env(), withDataDir(""), WithURL("sqlite://"),
		WithPool(PoolConfig{ConnMaxIdleTime: 20 * time.Millisecond}))
	require.NoError(t, err)
	defer db.Close()
	require.True(t, db.Target().Memory)
	assert.True(t, db.Ephemeral())
	_, err = db.Exec("CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('kept')")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return db.Stats().OpenConnections == 0 }, 5*time.Second, 10*time.Millisecond,
		"the pool closes idle connections")
	var body string
	require.NoError(t, db.QueryRow("SELECT body FROM notes").Scan(&body))
	assert.Equal(t, "kept", body)

	other, err := Open(context.Background(), env(), withDataDir(""), WithURL("sqlite://"))
	require.NoError(t, err)
	defer other.Close()
	err = other.QueryRow("SELECT body FROM notes").Scan(&body)
	assert.ErrorContains(t, err, "no such table", "each in-memory DB is private")
}

// TestSQLiteConcurrentWriters: 64 goroutines write at once, through plain
// read-then-write BeginTx transactions and autocommit statements on the
// embedded *sql.DB. None may see "database is locked"; every row lands.
func TestSQLiteConcurrentWriters(t *testing.T) {
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory=%v", memory), func(t *testing.T) {
			var db *DB
			if memory {
				isolatedDirs(t)
				var err error
				db, err = Open(context.Background(), env(), withDataDir(""), WithURL("sqlite://"))
				require.NoError(t, err)
				t.Cleanup(func() { db.Close() })
			} else {
				db = openSQLiteAt(t, filepath.Join(t.TempDir(), "app.db"))
			}
			_, err := db.Exec("CREATE TABLE counter(n INTEGER NOT NULL); INSERT INTO counter VALUES (0); CREATE TABLE rows(g INTEGER, i INTEGER, PRIMARY KEY (g, i))")
			require.NoError(t, err)
			const writers, each = 64, 25
			var failures atomic.Int64
			var firstErr firstError
			var wg sync.WaitGroup
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						err := func() error {
							if i%2 == 0 {
								_, err := db.Exec("INSERT INTO rows VALUES (?, ?)", g, i)
								return err
							}
							tx, err := db.BeginTx(context.Background(), nil)
							if err != nil {
								return err
							}
							defer tx.Rollback()
							var n int
							if err := tx.QueryRow("SELECT n FROM counter").Scan(&n); err != nil {
								return err
							}
							if _, err := tx.Exec("UPDATE counter SET n = ?", n+1); err != nil {
								return err
							}
							if _, err := tx.Exec("INSERT INTO rows VALUES (?, ?)", g, i); err != nil {
								return err
							}
							return tx.Commit()
						}()
						if err != nil {
							failures.Add(1)
							firstErr.set(err)
						}
					}
				}()
			}
			wg.Wait()
			if v := firstErr.get(); v != nil {
				t.Errorf("first error: %v", v)
			}
			assert.Zero(t, failures.Load(), "no writer sees an error")
			var rows, counter int
			require.NoError(t, db.QueryRow("SELECT count(*) FROM rows").Scan(&rows))
			require.NoError(t, db.QueryRow("SELECT n FROM counter").Scan(&counter))
			assert.Equal(t, writers*each, rows, "every row lands")
			assert.Equal(t, writers*(each/2), counter, "no read-then-write update is lost")
		})
	}
}

func TestSQLiteReadOnlyTxDoesNotTakeTheWriteLock(t *testing.T) {
	db := openSQLiteAt(t, filepath.Join(t.TempDir(), "app.db"))
	_, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	w, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	defer w.Rollback()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err, "a reader does not wait for the writer")
	var x int
	require.NoError(t, r.QueryRow("SELECT x FROM t").Scan(&x))
	require.NoError(t, r.Commit())
	_, err = r.Exec("SELECT 1")
	assert.True(t, errors.Is(err, sql.ErrTxDone))
}

// TestSQLiteShortFileWithWALIsNotCorrupt: a crash during a checkpoint can
// leave the main file shorter than its header says while the WAL holds the
// pages; such a file must be opened (SQLite recovers it), not moved aside.
func TestSQLiteShortFileWithWALIsNotCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := rawSQLite(t, path)
	_, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[28], data[29], data[30], data[31] = 0, 0, 1, 0 // claim 256 pages
	require.NoError(t, os.WriteFile(path, data, 0o600))
	s, err := inspectSQLiteFile(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, fileDamaged, s.kind, "without a WAL the file lost pages")
	assert.Equal(t, "a truncated SQLite database", s.why)
	require.NoError(t, os.WriteFile(path+"-wal", []byte("wal frames"), 0o600))
	s, err = inspectSQLiteFile(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, fileSQLite, s.kind, "with a WAL, SQLite recovers the pages")
}
