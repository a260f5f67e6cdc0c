//go:build cgo && dbfallback_puresqlite

package puresqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileMovesBetweenEngines: a SQLite file written by go-sqlite3 (a cgo
// build of the service) opens on the pure-Go engine with its rows and
// times as they were, and what the pure-Go engine writes reads back the
// same under go-sqlite3: times are stored in the same text format.
func TestFileMovesBetweenEngines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	at := time.Date(2026, 11, 26, 9, 41, 7, 123456789, time.FixedZone("CET", 3600))
	cgo, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	require.NoError(t, err)
	_, err = cgo.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, at DATETIME)")
	require.NoError(t, err)
	_, err = cgo.Exec("INSERT INTO notes (body, at) VALUES (?, ?)", "from cgo", at)
	require.NoError(t, err)
	require.NoError(t, cgo.Close())

	db, err := dbfallback.Open(context.Background(), dbfallback.WithSQLitePath(path), dbfallback.WithStrategy(dbfallback.SQLiteOnly),
		dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }))
	require.NoError(t, err)
	require.Equal(t, "modernc.org/sqlite", dbfallback.SQLiteEngine())
	var got time.Time
	require.NoError(t, db.QueryRow("SELECT at FROM notes WHERE body = 'from cgo'").Scan(&got))
	assert.True(t, at.Equal(got), "%v read as %v", at, got)
	_, err = db.Exec("INSERT INTO notes (body, at) VALUES (?, ?)", "from pure Go", at)
	require.NoError(t, err)
	var texts []string
	rows, err := db.Query("SELECT at FROM notes ORDER BY id")
	require.NoError(t, err)
	for rows.Next() {
		var s sql.RawBytes
		require.NoError(t, rows.Scan(&s))
		texts = append(texts, string(s))
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.Len(t, texts, 2)
	assert.Equal(t, texts[0], texts[1], "both engines store a time the same way")
	require.NoError(t, db.Close())

	cgo, err = sql.Open("sqlite3", "file:"+path)
	require.NoError(t, err)
	defer cgo.Close()
	require.NoError(t, cgo.QueryRow("SELECT at FROM notes WHERE body = 'from pure Go'").Scan(&got))
	assert.True(t, at.Equal(got), "%v read as %v", at, got)
	var mode string
	require.NoError(t, cgo.QueryRow("PRAGMA journal_mode").Scan(&mode))
	assert.Equal(t, "wal", mode)
}
