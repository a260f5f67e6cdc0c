package integration

import (
	"embed"
	"errors"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	sqlitemigrate "github.com/golang-migrate/migrate/v4/database/sqlite3"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

//go:embed testdata/migrate
var migrateFiles embed.FS

// newMigrate is what a service writes for golang-migrate on the DB's pool.
func newMigrate(t *testing.T, db *dbfallback.DB) *migrate.Migrate {
	t.Helper()
	var driver database.Driver
	var err error
	switch db.Dialect() {
	case dbfallback.Postgres:
		driver, err = pgxmigrate.WithInstance(db.DB, &pgxmigrate.Config{MigrationsTable: "h12_migrate_versions"})
	default:
		driver, err = sqlitemigrate.WithInstance(db.DB, &sqlitemigrate.Config{})
	}
	require.NoError(t, err)
	src, err := iofs.New(migrateFiles, "testdata/migrate")
	require.NoError(t, err)
	m, err := migrate.NewWithInstance("iofs", src, db.Dialect().DriverName(), driver)
	require.NoError(t, err)
	return m
}

// TestMigrate: golang-migrate on both dialects, and its Close, which
// closes the embedded *sql.DB, releases what DB.Close releases (issue 12:
// the recovery probe kept running).
func TestMigrate(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			if dialect == "postgres" {
				db := open(t, dialect)
				_, err := db.Exec("DROP TABLE IF EXISTS migrate_notes, h12_migrate_versions")
				require.NoError(t, err)
				require.NoError(t, db.Close())
			}
			db := open(t, dialect)
			m := newMigrate(t, db)
			require.NoError(t, m.Up())
			var title string
			require.NoError(t, db.QueryRow("SELECT title FROM migrate_notes WHERE id = 1").Scan(&title))
			assert.Equal(t, "seeded", title)
			assert.True(t, errors.Is(m.Up(), migrate.ErrNoChange))
			srcErr, dbErr := m.Close()
			require.NoError(t, srcErr)
			require.NoError(t, dbErr)
			assert.Error(t, db.Ping(), "migrate closed the pool")
			assert.NoError(t, db.Close())
		})
	}
	t.Run("Close releases the recovery probe", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		db, err := dbfallback.Open(t.Context(), dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }),
			dbfallback.WithURL("postgres://app@127.0.0.1:1/app?sslmode=disable"),
			dbfallback.WithSQLitePath(t.TempDir()+"/app.db"),
			dbfallback.WithRecoveryProbe(5*time.Millisecond, func(dbfallback.Target) {}))
		require.NoError(t, err)
		require.True(t, db.Fallback())
		m := newMigrate(t, db)
		require.NoError(t, m.Up())
		srcErr, dbErr := m.Close()
		require.NoError(t, srcErr)
		require.NoError(t, dbErr)
		assert.NoError(t, goleak.Find(before), "nothing of the DB is left running")
	})
}
