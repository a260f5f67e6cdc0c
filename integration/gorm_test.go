package integration

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// GORM over dbfallback: gorm.Open with the DB's *sql.DB as Conn, on either
// dialect. GORM's Transaction begins at the driver's default isolation,
// READ COMMITTED on PostgreSQL, where a read-modify-write loses updates
// that SQLite (always serializable) never loses. These tests show the two
// ways to get dbfallback's guarantee, and the hazard without them.

// gormOpen opens GORM on db's pool.
func gormOpen(t *testing.T, db *dbfallback.DB) *gorm.DB {
	t.Helper()
	var d gorm.Dialector
	switch db.Dialect() {
	case dbfallback.Postgres:
		d = postgres.New(postgres.Config{Conn: db.DB})
	default:
		d = sqlite.New(sqlite.Config{Conn: db.DB})
	}
	g, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	return g
}

// gormTx binds g to a transaction of db.Tx, the way GORM's own Begin binds
// the transaction it starts.
func gormTx(ctx context.Context, g *gorm.DB, tx *sql.Tx) *gorm.DB {
	s := g.WithContext(ctx).Session(&gorm.Session{NewDB: true})
	s.Statement.ConnPool = tx
	return s
}

type gormCounter struct {
	ID int
	N  int
}

func (gormCounter) TableName() string { return "gorm_counters" }

// increment reads the counter and writes it back plus one.
func increment(tx *gorm.DB) error {
	var c gormCounter
	if err := tx.First(&c, 1).Error; err != nil {
		return err
	}
	return tx.Model(&c).Update("n", c.N+1).Error
}

func TestGORMCounter(t *testing.T) {
	const goroutines, each = 16, 25
	tests := []struct {
		name string
		// inc performs one increment the way the case says.
		inc func(ctx context.Context, db *dbfallback.DB, g *gorm.DB) error
		// exact says whether no update may be lost on this dialect.
		exact func(d dbfallback.Dialect) bool
	}{
		{
			name: "inside db.Tx",
			inc: func(ctx context.Context, db *dbfallback.DB, g *gorm.DB) error {
				return db.Tx(ctx, func(tx *sql.Tx) error { return increment(gormTx(ctx, g, tx)) })
			},
			exact: func(dbfallback.Dialect) bool { return true },
		},
		{
			name: "Transaction at SERIALIZABLE, retried while IsRetryable",
			inc: func(ctx context.Context, _ *dbfallback.DB, g *gorm.DB) error {
				for {
					err := g.WithContext(ctx).Transaction(increment, &sql.TxOptions{Isolation: sql.LevelSerializable})
					if !dbfallback.IsRetryable(err) {
						return err
					}
				}
			},
			exact: func(dbfallback.Dialect) bool { return true },
		},
		{
			name: "Transaction at the driver's default",
			inc: func(ctx context.Context, _ *dbfallback.DB, g *gorm.DB) error {
				return g.WithContext(ctx).Transaction(increment)
			},
			exact: func(d dbfallback.Dialect) bool { return d == dbfallback.SQLite },
		},
	}
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			g := gormOpen(t, db)
			require.NoError(t, g.Migrator().DropTable(&gormCounter{}))
			require.NoError(t, g.AutoMigrate(&gormCounter{}))
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					require.NoError(t, g.Save(&gormCounter{ID: 1, N: 0}).Error)
					ctx := context.Background()
					var ok atomic.Int64
					var mu sync.Mutex
					var errs []error
					var wg sync.WaitGroup
					for range goroutines {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for range each {
								if err := tt.inc(ctx, db, g); err != nil {
									mu.Lock()
									errs = append(errs, err)
									mu.Unlock()
									continue
								}
								ok.Add(1)
							}
						}()
					}
					wg.Wait()
					require.NoError(t, errors.Join(errs...))
					var c gormCounter
					require.NoError(t, g.First(&c, 1).Error)
					assert.Equal(t, int64(goroutines*each), ok.Load(), "every call returned nil")
					if tt.exact(db.Dialect()) {
						assert.Equal(t, goroutines*each, c.N, "no update lost")
					} else {
						assert.Less(t, c.N, goroutines*each, "READ COMMITTED loses updates on PostgreSQL, without an error")
						t.Logf("%d calls returned nil, the counter reads %d", ok.Load(), c.N)
					}
					assert.Zero(t, db.Stats().InUse)
				})
			}
		})
	}
}

// TestGORMCloseReleases: GORM's way to close, sqlDB.Close() on the
// *sql.DB it was given, releases what DB.Close releases (issue 12: the
// recovery probe kept running, and an in-memory database's keeper
// connection stayed open).
func TestGORMCloseReleases(t *testing.T) {
	before := goleak.IgnoreCurrent()
	db, err := dbfallback.Open(t.Context(), dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }),
		dbfallback.WithURL("postgres://app@127.0.0.1:1/app?sslmode=disable"),
		dbfallback.WithSQLitePath(t.TempDir()+"/app.db"),
		dbfallback.WithRecoveryProbe(5*time.Millisecond, func(dbfallback.Target) {}))
	require.NoError(t, err)
	require.True(t, db.Fallback())
	g := gormOpen(t, db)
	require.NoError(t, g.AutoMigrate(&gormCounter{}))
	sqlDB, err := g.DB()
	require.NoError(t, err)
	require.NoError(t, sqlDB.Close())
	assert.NoError(t, goleak.Find(before), "nothing of the DB is left running")
	assert.NoError(t, db.Close(), "DB.Close after GORM's is harmless")
}
