//go:build !cgo || dbfallback_puresqlite

package puresqlite

// Hostile cases from an outside attack on issue 12, written from the
// documentation: the pure-Go engine as a cgo-free service meets it.

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noEnv keeps the process environment out of a test.
var noEnv = dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false })

func TestAttackPureFileWALAndTxCounter(t *testing.T) {
	require.Equal(t, "modernc.org/sqlite", dbfallback.SQLiteEngine())
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := dbfallback.Open(ctx, noEnv, dbfallback.WithSQLitePath(path))
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, dbfallback.SQLite, db.Dialect())
	assert.True(t, db.Fallback())

	var mode string
	require.NoError(t, db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
	assert.Equal(t, "wal", mode)
	_, err = db.ExecContext(ctx, "CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)")
	require.NoError(t, err)

	const goroutines, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			for range each {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, "SELECT n FROM counter").Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE counter SET n = $1", n+1)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT n FROM counter").Scan(&n))
	assert.Equal(t, goroutines*each, n, "no read-then-write lost an update")
	assert.Equal(t, "up", db.Health(ctx).Status)
}

func TestAttackPureDamagedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	db, err := dbfallback.Open(ctx, noEnv, dbfallback.WithSQLitePath(path))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')")
	require.NoError(t, err)
	// Into the main file: the damage below must hit the table, not a page
	// the write-ahead log would replay over it.
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	// Overwrite the middle of the file with garbage past the header.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	st, err := f.Stat()
	require.NoError(t, err)
	garbage := make([]byte, st.Size()-100)
	for i := range garbage {
		garbage[i] = 0xA5
	}
	_, err = f.WriteAt(garbage, 100)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	db, err = dbfallback.Open(ctx, noEnv, dbfallback.WithSQLitePath(path))
	require.NoError(t, err, "a damaged file never fails Open")
	defer db.Close()
	assert.Contains(t, db.Reason(), "moved", "the damaged file is moved aside and said so: %s", db.Reason())
	_, err = db.ExecContext(ctx, "CREATE TABLE t (v TEXT)")
	require.NoError(t, err, "the database in use is a fresh one")
	moved, err := filepath.Glob(filepath.Join(dir, "app.db*corrupt*"))
	require.NoError(t, err)
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.NotEmpty(t, moved, "the damaged bytes are kept aside: %v", names)
}

func TestAttackPureMemoryFallback(t *testing.T) {
	ctx := context.Background()
	// Every file location (WithSQLitePath, ./data, TMPDIR) lies under a
	// regular file: no file can be made there, even by root.
	dir := t.TempDir()
	t.Chdir(dir)
	notDir := filepath.Join(dir, "data")
	require.NoError(t, os.WriteFile(notDir, []byte("x"), 0o600))
	env := dbfallback.WithLookupEnv(func(k string) (string, bool) { return notDir, k == "TMPDIR" })
	db, err := dbfallback.Open(ctx, env, dbfallback.WithSQLitePath(filepath.Join(notDir, "app.db")),
		dbfallback.WithPool(dbfallback.PoolConfig{ConnMaxIdleTime: 1}))
	require.NoError(t, err)
	defer db.Close()
	require.True(t, db.Target().Memory, "landed on %v: %s", db.Target(), db.Reason())
	assert.True(t, db.Ephemeral())
	_, err = db.ExecContext(ctx, "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	db.SetMaxIdleConns(0) // every pool connection closes after use
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n), "the memory database outlives the pool's connections")
	assert.Equal(t, 1, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = db.Tx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				return err
			})
		})
	}
	wg.Wait()
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n))
	assert.Equal(t, 9, n)
}

func TestAttackPureCloseThroughPool(t *testing.T) {
	ctx := context.Background()
	db, err := dbfallback.Open(ctx, noEnv, dbfallback.WithSQLiteName("mem.db"), dbfallback.WithStrategy(dbfallback.SQLiteOnly),
		dbfallback.WithSQLitePath(filepath.Join(t.TempDir(), "app.db")))
	require.NoError(t, err)
	require.NoError(t, db.DB.Close(), "closed the way GORM and golang-migrate do")
	assert.NoError(t, db.Close())
	assert.Equal(t, "down", db.Health(ctx).Status)
	err = db.Tx(ctx, func(*sql.Tx) error { return nil })
	assert.Error(t, err, "a closed DB runs no transaction")
}
