package dbfallback

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deepDamage returns a database whose first and last rows read fine but
// one leaf page in the middle of its table is junk: Open's cheap probe
// passes, a full scan fails.
func deepDamage(t *testing.T) []byte {
	t.Helper()
	data, pageSize := sqliteBytes(t, 5000)
	pages := len(data) / pageSize
	require.Greater(t, pages, 40)
	mid := pages / 2
	copy(data[mid*pageSize:(mid+1)*pageSize], junk(pageSize, 11))
	return data
}

// waitIntegrity waits for the background check to end and returns Health.
func waitIntegrity(t *testing.T, db *DB) Health {
	t.Helper()
	var h Health
	require.Eventually(t, func() bool {
		h = db.Health(context.Background())
		return h.Integrity != integrityChecking
	}, 10*time.Second, 5*time.Millisecond, "the background check ends")
	return h
}

// TestSQLiteCorruptPagesReported: damage under a valid header is found at
// Open when a table's first or last pages are hit (then the file is moved
// aside), and otherwise reported by Health once the background check ends:
// Status "down", Integrity "damaged: …", and one error log line.
func TestSQLiteCorruptPagesReported(t *testing.T) {
	t.Run("damage deep in a table", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.db")
		content := deepDamage(t)
		require.NoError(t, os.WriteFile(path, content, 0o600))
		var logs bytes.Buffer
		db := openSQLiteAt(t, path, WithLogger(slogJSON(&logs)))
		assert.Equal(t, path, db.Target().Path, "the cheap probe does not see it: the file is used")
		var n int
		require.NoError(t, db.QueryRow("SELECT id FROM notes ORDER BY id DESC LIMIT 1").Scan(&n), "the last page reads")
		_, err := db.Exec("INSERT INTO notes(body) VALUES ('new')")
		require.NoError(t, err, "inserts succeed")
		err = db.QueryRow("SELECT count(*) FROM notes WHERE body LIKE '%x%'").Scan(&n)
		require.ErrorContains(t, err, "malformed", "a full scan fails")
		h := waitIntegrity(t, db)
		assert.Equal(t, "down", h.Status)
		assert.True(t, strings.HasPrefix(h.Integrity, "damaged: "), h.Integrity)
		assert.Contains(t, h.Error, "damaged")
		assert.Contains(t, logs.String(), "the SQLite database file is damaged")
		assert.Equal(t, 1, strings.Count(logs.String(), "the SQLite database file is damaged"))
	})
	t.Run("every read fails: moved aside at Open", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.db")
		data, pageSize := sqliteBytes(t, 2000)
		content := append(data[:pageSize:pageSize], junk(len(data)-pageSize, 12)...)
		require.NoError(t, os.WriteFile(path, content, 0o600))
		db := openSQLiteAt(t, path)
		assert.Contains(t, db.Reason(), "malformed")
		assert.Contains(t, db.Reason(), "moved it aside")
		h := waitIntegrity(t, db)
		assert.Equal(t, "up", h.Status)
		assert.Equal(t, integrityOK, h.Integrity, "the new database is whole")
	})
	t.Run("healthy file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.db")
		data, _ := sqliteBytes(t, 2000)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		db := openSQLiteAt(t, path)
		assert.Empty(t, db.Reason()[len("no database URL configured"):])
		h := waitIntegrity(t, db)
		assert.Equal(t, "up", h.Status)
		assert.Equal(t, integrityOK, h.Integrity)
	})
	t.Run("memory has no check", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env(), withDataDir(""), WithURL("sqlite://"))
		require.NoError(t, err)
		defer db.Close()
		assert.Empty(t, db.Health(context.Background()).Integrity)
	})
}

// TestSQLiteCheckStopsOnClose: Close interrupts a check in progress on a
// larger file and waits for it (goleak in TestMain checks the goroutine
// ended).
func TestSQLiteCheckStopsOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.db")
	data, _ := sqliteBytes(t, 200_000) // about 25 MB
	require.NoError(t, os.WriteFile(path, data, 0o600))
	isolatedDirs(t)
	db, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(path))
	require.NoError(t, err)
	state, _ := db.integrity.get()
	require.Equal(t, integrityChecking, state, "the check still runs when Close is called")
	start := time.Now()
	require.NoError(t, db.Close())
	assert.Less(t, time.Since(start), time.Second)
	state, _ = db.integrity.get()
	assert.Equal(t, integrityChecking, state, "an interrupted check reports nothing")
}

// TestSQLiteOpenWritesNothingToADamagedFile: the read-only probe runs
// before the pool switches the file to WAL mode, so the file moved aside
// is byte for byte the one found.
func TestSQLiteOpenWritesNothingToADamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	data, pageSize := sqliteBytes(t, 2000)
	data[18], data[19] = 1, 1 // rollback journal: opening in WAL mode would write 2, 2 here
	content := append(data[:pageSize:pageSize], junk(len(data)-pageSize, 13)...)
	require.NoError(t, os.WriteFile(path, content, 0o600))
	openSQLiteAt(t, path, withNow(func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }))
	kept, err := os.ReadFile(path + ".corrupt-20260102T030405Z")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(content, kept))
}
