package integration

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sqlc generates, per query file, a Queries type over this interface; the
// code below is what it writes for two queries (hand-copied, so that the
// test needs no generator). *dbfallback.DB, *sql.Tx and *dbfallback.Session
// all satisfy DBTX.
type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...interface{}) *sql.Row
}

func New(db DBTX) *Queries { return &Queries{db: db} }

type Queries struct{ db DBTX }

func (q *Queries) WithTx(tx *sql.Tx) *Queries { return &Queries{db: tx} }

const createNote = `INSERT INTO sqlc_notes (id, title) VALUES ($1, $2) RETURNING id, title`

type SqlcNote struct {
	ID    int64
	Title string
}

func (q *Queries) CreateNote(ctx context.Context, id int64, title string) (SqlcNote, error) {
	row := q.db.QueryRowContext(ctx, createNote, id, title)
	var i SqlcNote
	err := row.Scan(&i.ID, &i.Title)
	return i, err
}

const countNotes = `SELECT count(*) FROM sqlc_notes`

func (q *Queries) CountNotes(ctx context.Context) (int64, error) {
	row := q.db.QueryRowContext(ctx, countNotes)
	var count int64
	err := row.Scan(&count)
	return count, err
}

var (
	_ DBTX = (*dbfallback.DB)(nil)
	_ DBTX = (*sql.Tx)(nil)
	_ DBTX = (*dbfallback.Session)(nil)
)

// TestSqlcDBTX: sqlc's generated code runs on *DB, inside db.Tx through
// WithTx, and on the request's *Session behind Middleware; a failed
// statement rolls the whole transaction back on both dialects.
func TestSqlcDBTX(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			ctx := context.Background()
			_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS sqlc_notes")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, "CREATE TABLE sqlc_notes (id BIGINT PRIMARY KEY, title TEXT NOT NULL)")
			require.NoError(t, err)

			q := New(db)
			n, err := q.CreateNote(ctx, 1, "on *DB")
			require.NoError(t, err)
			assert.Equal(t, SqlcNote{1, "on *DB"}, n)

			err = db.Tx(ctx, func(tx *sql.Tx) error {
				_, err := q.WithTx(tx).CreateNote(ctx, 2, "in db.Tx")
				return err
			})
			require.NoError(t, err)
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				if _, err := q.WithTx(tx).CreateNote(ctx, 3, "rolled back"); err != nil {
					return err
				}
				_, err := q.WithTx(tx).CreateNote(ctx, 1, "duplicate")
				return err
			})
			require.Error(t, err, "a duplicate id")

			h := dbfallback.Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s, err := dbfallback.SessionFrom(r.Context())
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				if _, err := New(s).CreateNote(r.Context(), 4, "on the session"); err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/notes", nil))
			require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())

			count, err := q.CountNotes(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(3), count, "ids 1, 2 and 4; 3 rolled back with the duplicate")
			assert.Zero(t, db.Stats().InUse)
		})
	}
}
