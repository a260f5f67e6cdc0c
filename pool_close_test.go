package dbfallback

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestClosingEmbeddedPoolReleases: closing db.DB, as GORM's sqlDB.Close
// and golang-migrate's Close do, releases what DB.Close releases: the
// recovery probe and the integrity check stop, and an in-memory
// database's keeper connection closes, so the database is gone. Before
// issue 12 both stayed behind. DB.Close afterwards is harmless.
func TestClosingEmbeddedPoolReleases(t *testing.T) {
	tests := []struct {
		name string
		// open returns a DB with something to release, and how to tell it
		// was released.
		open func(t *testing.T) (*DB, func(t *testing.T))
	}{
		{"recovery probe and integrity check", func(t *testing.T) (*DB, func(t *testing.T)) {
			_, tmp := isolatedDirs(t)
			db, err := Open(context.Background(), env("TMPDIR", tmp), withDataDir(""),
				WithURL("postgres://app@127.0.0.1:1/app?sslmode=disable"),
				WithRecoveryProbe(5*time.Millisecond, func(Target) {}))
			require.NoError(t, err)
			require.True(t, db.Fallback())
			require.Equal(t, SQLite, db.Dialect())
			return db, func(t *testing.T) {}
		}},
		{"in-memory keeper", func(t *testing.T) (*DB, func(t *testing.T)) {
			isolatedDirs(t)
			db, err := Open(context.Background(), env(), withDataDir(""), WithURL("file:/dbfallback-h12-keeper?mode=memory"))
			require.NoError(t, err)
			require.True(t, db.Target().Memory)
			_, err = db.Exec("CREATE TABLE kept (x)")
			require.NoError(t, err)
			// Another connection to the same memdb database, closed at once
			// (while open, it would keep the database alive itself).
			tables := func(t *testing.T) int {
				raw, err := openRawSQLite("file:/dbfallback-h12-keeper?vfs=memdb")
				require.NoError(t, err)
				defer raw.Close()
				var n int
				require.NoError(t, raw.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'kept'").Scan(&n))
				return n
			}
			require.Equal(t, 1, tables(t), "the memdb database is shared while the DB is open")
			return db, func(t *testing.T) {
				assert.Zero(t, tables(t), "the keeper connection closed with the pool, so the database is gone")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			db, released := tt.open(t)
			require.NoError(t, db.DB.Close(), "the tool closes the embedded pool")
			assert.NoError(t, goleak.Find(before), "no goroutine of the DB is left")
			released(t)
			assert.NoError(t, db.Close(), "DB.Close after the pool's Close")
			assert.NoError(t, db.Close(), "and again")
		})
	}
}
