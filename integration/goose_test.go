package integration

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

//go:embed testdata/goose testdata/goose_broken
var gooseFiles embed.FS

// gooseUp is the WithInit hook a service writes: the migrations of dir,
// with goose's Provider, on whichever database Open chose.
func gooseUp(dir string) func(ctx context.Context, db *dbfallback.DB) error {
	return func(ctx context.Context, db *dbfallback.DB) error {
		migrations, err := fs.Sub(gooseFiles, dir)
		if err != nil {
			return err
		}
		// goose's Provider wants "sqlite3" or "postgres", not dbfallback's
		// dialect "sqlite": DriverName gives its name.
		p, err := goose.NewProvider(goose.Dialect(db.Dialect().DriverName()), db.DB, migrations)
		if err != nil {
			return err
		}
		_, err = p.Up(ctx)
		return err
	}
}

// resetGoose drops what the migrations made on PostgreSQL, which outlives
// a test.
func resetGoose(t *testing.T, dialect string) {
	if dialect != "postgres" {
		return
	}
	db := open(t, dialect)
	_, err := db.Exec("DROP TABLE IF EXISTS goose_tags, goose_notes, goose_db_version")
	require.NoError(t, err)
	require.NoError(t, db.Close())
}

// TestGooseThroughWithInit: goose migrations run as Open's init hook on
// both dialects; a broken migration fails Open with goose's error rather
// than moving the service to another database.
func TestGooseThroughWithInit(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			resetGoose(t, dialect)
			db := open(t, dialect, dbfallback.WithInit(gooseUp("testdata/goose")))
			var title string
			require.NoError(t, db.QueryRow("SELECT title FROM goose_notes WHERE id = 1").Scan(&title))
			assert.Equal(t, "seeded by a migration", title)
			var version int
			require.NoError(t, db.QueryRow("SELECT max(version_id) FROM goose_db_version").Scan(&version))
			assert.Equal(t, 2, version)
			require.NoError(t, db.Close())

			again := open(t, dialect, dbfallback.WithInit(gooseUp("testdata/goose")))
			require.NoError(t, again.QueryRow("SELECT max(version_id) FROM goose_db_version").Scan(&version))
			assert.Equal(t, 2, version, "a second Open applies nothing new")
		})
	}
	t.Run("goose rejects dbfallback's own dialect name", func(t *testing.T) {
		db := open(t, "sqlite")
		_, err := goose.NewProvider(goose.Dialect(db.Dialect()), db.DB, gooseFiles)
		assert.Error(t, err, "hence Dialect.DriverName")
	})
	for _, dialect := range dialects {
		t.Run(dialect+"/broken migration", func(t *testing.T) {
			resetGoose(t, dialect)
			opts := append(openOptions(t, dialect), dbfallback.WithStrategy(dbfallback.PreferPrimary), dbfallback.WithInit(gooseUp("testdata/goose_broken")))
			db, err := dbfallback.Open(context.Background(), opts...)
			require.Error(t, err)
			assert.Nil(t, db)
			var partial *goose.PartialError
			assert.True(t, errors.As(err, &partial), "goose's error is reachable: %v", err)
			assert.False(t, errors.Is(err, dbfallback.ErrNoDatabase), "a bug, not an outage")
		})
	}
}
