package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDoctorStrandedRowidReused: a note written after deleting the newest
// one takes its rowid again; the doctor says the table changed at and
// below that rowid instead of reporting nothing.
func TestDoctorStrandedRowidReused(t *testing.T) {
	t.Chdir(t.TempDir())
	path := filepath.Join(t.TempDir(), "notes.db")
	down := fakeEnv("SQLITE_PATH", path, "TMPDIR", t.TempDir())
	open := func() *dbfallback.DB {
		db, err := dbfallback.Open(context.Background(), dbfallback.WithLookupEnv(down))
		require.NoError(t, err)
		return db
	}
	db := open()
	_, err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT)")
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO notes (title) VALUES ('a'), ('b')")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	// The fallback period begins (the record marks rowid 2): delete the
	// newest note, write another one, which gets rowid 2 again.
	require.NoError(t, dbfallback.MarkMerged(context.Background(), path))
	db = open()
	_, err = db.Exec("DELETE FROM notes WHERE id = 2")
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO notes (title) VALUES ('written during the outage')")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	up := fakeEnv("SQLITE_PATH", path, "TMPDIR", t.TempDir(), "DATABASE_URL", "postgres://app:Hunter2@db.internal/app")
	var out, errOut bytes.Buffer
	assert.Equal(t, 0, run(nil, up, &out, &errOut))
	assert.Contains(t, out.String(), "notes: 0 rows (rowid > 2)")
	assert.Contains(t, out.String(), "notes: the row with rowid 2, its last before the fallback, was deleted or changed")
	assert.NotContains(t, out.String(), "Hunter2")
}
