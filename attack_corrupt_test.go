package dbfallback

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_corrupt_test.go attacks "damage under a valid header is found at
// Open or reported by Health at the latest after the first failing read".

// corruptPageHolding overwrites the b-tree page header of the page of path
// that holds marker, leaving SQLite's file header valid, and returns the
// damaged file's bytes.
func corruptPageHolding(t *testing.T, path, marker string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	pageSize := int(binary.BigEndian.Uint16(data[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	at := bytes.Index(data, []byte(marker))
	require.Positive(t, at, "marker not found")
	page := at / pageSize
	require.Positive(t, page, "the marker must not be on page 1")
	for i := range 12 {
		data[page*pageSize+i] = 0xff
	}
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return data
}

// makeNotes creates a rollback-journal database of n notes of size bytes,
// the note with id marked carrying tag "NEEDLE-ATTACK".
func makeNotes(t *testing.T, path string, n, size, marked int) {
	t.Helper()
	makeSQLite(t, path, "DELETE",
		"CREATE TABLE notes (id INTEGER PRIMARY KEY, tag TEXT, body BLOB)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < "+strconv.Itoa(n)+") INSERT INTO notes (id, tag, body) SELECT x, 'note', randomblob("+strconv.Itoa(size)+") FROM c",
		"UPDATE notes SET tag = 'NEEDLE-ATTACK' WHERE id = "+strconv.Itoa(marked),
	)
}

// TestAttackCorruptFirstPageFoundAtOpen: the first page of a table,
// which every read and insert goes through, damaged under a valid header:
// Open finds it, moves the file aside byte for byte and serves a new one.
func TestAttackCorruptFirstPageFoundAtOpen(t *testing.T) {
	dirs := isolateAttack(t)
	path := filepath.Join(t.TempDir(), "notes.db")
	makeNotes(t, path, 50, 3000, 1)
	damaged := corruptPageHolding(t, path, "NEEDLE-ATTACK")

	db, err := Open(context.Background(), dirs.opts(map[string]string{"SQLITE_PATH": path})...)
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, path, db.Target().Path)
	assert.Contains(t, db.Reason(), "moved it aside")
	aside := globAside(t, filepath.Dir(path))
	require.Len(t, aside, 1)
	data, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	assert.True(t, bytes.Equal(damaged, data), "the damaged file is kept byte for byte")
	requireUsable(t, db)
}

// TestAttackCorruptMiddlePageReportedAfterFirstRead: a page in the middle
// of a large table (Open's probe reads only the first and last rows)
// damaged under a valid header. The first read of it fails; Health must
// say so from then on, even while the background check is still reading
// the rest of the file.
func TestAttackCorruptMiddlePageReportedAfterFirstRead(t *testing.T) {
	dirs := isolateAttack(t)
	path := filepath.Join(t.TempDir(), "notes.db")
	makeNotes(t, path, 16000, 3500, 8000) // about 64 MB
	corruptPageHolding(t, path, "NEEDLE-ATTACK")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := Open(ctx, dirs.opts(map[string]string{"SQLITE_PATH": path})...)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, path, db.Target().Path, "the probe cannot see a middle page: the file is used")

	var tag string
	err = db.QueryRowContext(ctx, "SELECT tag FROM notes WHERE id = 8000").Scan(&tag)
	require.Error(t, err, "the damaged page cannot be read")
	require.True(t, isDamage(err), "%v", err)

	h := db.Health(ctx)
	assert.Equal(t, "down", h.Status, "after a read failed on damage, Health must report it: %+v", h)
	assert.True(t, strings.HasPrefix(h.Integrity, "damaged"), h.Integrity)
	assert.Contains(t, h.Error, "damaged")

	// And the check, once done, agrees.
	require.Eventually(t, func() bool {
		state, _ := db.integrity.get()
		return state != integrityChecking
	}, 10*time.Second, 20*time.Millisecond)
	assert.True(t, strings.HasPrefix(db.Health(ctx).Integrity, "damaged"))
}

// TestAttackAttachedFileIsNotTheDatabase: a statement that attaches a file
// that is not a database fails, but the database in use is not damaged
// and Health must not say it is.
func TestAttackAttachedFileIsNotTheDatabase(t *testing.T) {
	dirs := isolateAttack(t)
	path := filepath.Join(t.TempDir(), "notes.db")
	other := filepath.Join(t.TempDir(), "notes.txt")
	require.NoError(t, os.WriteFile(other, []byte(strings.Repeat("not a database\n", 100)), 0o600))
	db, err := Open(context.Background(), dirs.opts(map[string]string{"SQLITE_PATH": path})...)
	require.NoError(t, err)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "ATTACH DATABASE ? AS other", other)
	if err == nil {
		var n int
		err = conn.QueryRowContext(context.Background(), "SELECT count(*) FROM other.sqlite_schema").Scan(&n)
	}
	require.Error(t, err)
	require.Eventually(t, func() bool {
		state, _ := db.integrity.get()
		return state != integrityChecking
	}, 10*time.Second, 10*time.Millisecond)
	h := db.Health(context.Background())
	assert.Equal(t, "up", h.Status, "%+v", h)
	assert.Equal(t, integrityOK, h.Integrity)
}
