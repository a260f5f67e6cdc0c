package integration

import (
	"context"
	"database/sql"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type sqlxNote struct {
	ID    int64  `db:"id"`
	Title string `db:"title"`
}

// TestSqlx: sqlx over the DB's pool, with the bind type from DriverName
// ("?" on SQLite, "$1" on PostgreSQL; sqlx does not know the pure-Go
// engine's driver name "sqlite"), named queries, and the same queries
// inside db.Tx.
func TestSqlx(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			ctx := context.Background()
			x := sqlx.NewDb(db.DB, db.Dialect().DriverName())
			x.MustExecContext(ctx, "DROP TABLE IF EXISTS sqlx_notes")
			x.MustExecContext(ctx, "CREATE TABLE sqlx_notes (id BIGINT PRIMARY KEY, title TEXT NOT NULL)")
			_, err := x.NamedExecContext(ctx, "INSERT INTO sqlx_notes (id, title) VALUES (:id, :title)",
				[]sqlxNote{{1, "one"}, {2, "two"}})
			require.NoError(t, err)
			var n sqlxNote
			require.NoError(t, x.GetContext(ctx, &n, x.Rebind("SELECT id, title FROM sqlx_notes WHERE id = ?"), 2))
			assert.Equal(t, sqlxNote{2, "two"}, n)
			if dialect == "postgres" {
				assert.Equal(t, "SELECT $1", x.Rebind("SELECT ?"))
			} else {
				assert.Equal(t, "SELECT ?", x.Rebind("SELECT ?"))
			}

			// Inside db.Tx: sqlx has no constructor for a *sql.Tx begun
			// elsewhere, and a sqlx.Tx literal does not know the bind type,
			// so rebind through the sqlx.DB.
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				stx := &sqlx.Tx{Tx: tx, Mapper: x.Mapper}
				var notes []sqlxNote
				if err := stx.SelectContext(ctx, &notes, "SELECT id, title FROM sqlx_notes ORDER BY id"); err != nil {
					return err
				}
				q, args, err := x.BindNamed("INSERT INTO sqlx_notes (id, title) VALUES (:id, :title)", sqlxNote{int64(len(notes) + 1), "in db.Tx"})
				if err != nil {
					return err
				}
				_, err = stx.ExecContext(ctx, q, args...)
				return err
			})
			require.NoError(t, err)
			var notes []sqlxNote
			require.NoError(t, x.SelectContext(ctx, &notes, "SELECT id, title FROM sqlx_notes ORDER BY id"))
			assert.Equal(t, []sqlxNote{{1, "one"}, {2, "two"}, {3, "in db.Tx"}}, notes)
		})
	}
	assert.Equal(t, sqlx.QUESTION, sqlx.BindType(dbfallback.SQLite.DriverName()))
	assert.Equal(t, sqlx.DOLLAR, sqlx.BindType(dbfallback.Postgres.DriverName()))
	assert.Equal(t, sqlx.UNKNOWN, sqlx.BindType(string(dbfallback.SQLite)), "hence DriverName")
}
