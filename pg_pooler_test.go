package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// poolerURL is the shared test server's URL with extra parameters.
func poolerURL(t *testing.T, extra string) string {
	t.Helper()
	return strings.Replace(testPostgresURL(t), "?", "?"+extra+"&", 1)
}

// TestPoolerModePreparedStatements checks, on the shared server directly,
// what pooler mode's prepared statements do: nothing is left on the
// server (so nothing is missing on the next server connection a pooler
// hands out), and they behave as database/sql's statements do otherwise.
func TestPoolerModePreparedStatements(t *testing.T) {
	ctx := context.Background()
	serverStatements := func(t *testing.T, c *sql.Conn) int {
		t.Helper()
		var n int
		require.NoError(t, c.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n))
		return n
	}

	t.Run("nothing is left on the server", func(t *testing.T) {
		tests := []struct {
			name  string
			extra string
			opts  []Option
			named bool // statements named on the server
		}{
			{name: "pgbouncer=true", extra: "pgbouncer=true"},
			{name: "default_query_exec_mode=simple_protocol", extra: "default_query_exec_mode=simple_protocol"},
			{name: "pgbouncer=true, pgx stdlib alone", extra: "pgbouncer=true", opts: []Option{withPGPlain()}, named: true},
			{name: "no pooler: pgx's named statements", extra: "application_name=direct", named: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				db, _ := openWith(t, poolerURL(t, tt.extra), append([]Option{WithStrategy(PrimaryOnly)}, tt.opts...)...)
				c, err := db.Conn(ctx)
				require.NoError(t, err)
				defer c.Close()
				st, err := c.PrepareContext(ctx, "SELECT $1::int * 3")
				require.NoError(t, err)
				defer st.Close()
				var n int
				require.NoError(t, st.QueryRowContext(ctx, 14).Scan(&n))
				assert.Equal(t, 42, n)
				assert.Equal(t, tt.named, serverStatements(t, c) > 0)
			})
		}
	})

	db, _ := openWith(t, poolerURL(t, "pgbouncer=true"), WithStrategy(PrimaryOnly))
	table := fmt.Sprintf("pooler_stmt_%d", 1+len(t.Name()))
	_, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, name text)")
	require.NoError(t, err)
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+table) })

	t.Run("a bad statement fails at Prepare", func(t *testing.T) {
		_, err := db.PrepareContext(ctx, "SELEC 1")
		var pg *pgconn.PgError
		require.ErrorAs(t, err, &pg)
		assert.Equal(t, "42601", pg.Code)
		_, err = db.PrepareContext(ctx, "SELECT * FROM no_such_table_here")
		require.ErrorAs(t, err, &pg)
		assert.Equal(t, "42P01", pg.Code)
	})

	t.Run("the argument count is checked", func(t *testing.T) {
		st, err := db.PrepareContext(ctx, "SELECT $1::int + $2::int")
		require.NoError(t, err)
		defer st.Close()
		_, err = st.ExecContext(ctx, 1)
		assert.ErrorContains(t, err, "expected 2 arguments, got 1")
	})

	t.Run("exec, query, NULL, and a text argument for an integer parameter", func(t *testing.T) {
		ins, err := db.PrepareContext(ctx, "INSERT INTO "+table+" (id, name) VALUES ($1, $2)")
		require.NoError(t, err)
		defer ins.Close()
		res, err := ins.ExecContext(ctx, 1, "one")
		require.NoError(t, err)
		affected, _ := res.RowsAffected()
		assert.Equal(t, int64(1), affected)
		_, err = ins.ExecContext(ctx, "2", nil) // the server parses the text as an int
		require.NoError(t, err)
		q, err := db.PrepareContext(ctx, "SELECT id, name FROM "+table+" ORDER BY id")
		require.NoError(t, err)
		defer q.Close()
		rows, err := q.QueryContext(ctx)
		require.NoError(t, err)
		defer rows.Close()
		var got []string
		for rows.Next() {
			var id int
			var name sql.NullString
			require.NoError(t, rows.Scan(&id, &name))
			got = append(got, fmt.Sprintf("%d:%s:%v", id, name.String, name.Valid))
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, []string{"1:one:true", "2::false"}, got)
	})

	t.Run("in a transaction through tx.StmtContext", func(t *testing.T) {
		count, err := db.PrepareContext(ctx, "SELECT count(*) FROM "+table)
		require.NoError(t, err)
		defer count.Close()
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES (3)"); err != nil {
				return err
			}
			var n int
			if err := tx.StmtContext(ctx, count).QueryRowContext(ctx).Scan(&n); err != nil {
				return err
			}
			assert.Equal(t, 3, n, "the statement sees the transaction's own row")
			return nil
		})
		require.NoError(t, err)
	})

	t.Run("Raw reaches pgx through interface{ Conn() *pgx.Conn }", func(t *testing.T) {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
		err = c.Raw(func(dc any) error {
			pc, ok := dc.(interface{ Conn() *pgx.Conn })
			require.True(t, ok, "%T", dc)
			_, err := pc.Conn().CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "name"}, pgx.CopyFromRows([][]any{{10, "ten"}, {11, "eleven"}}))
			return err
		})
		require.NoError(t, err)
		var n int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE id >= 10").Scan(&n))
		assert.Equal(t, 2, n)
	})

	t.Run("a session's statements", func(t *testing.T) {
		s := &Session{db: db}
		defer s.end()
		st, err := s.PrepareContext(ctx, "SELECT name FROM "+table+" WHERE id = $1")
		require.NoError(t, err)
		var name string
		require.NoError(t, st.QueryRowContext(ctx, 10).Scan(&name))
		assert.Equal(t, "ten", name)
		_, err = s.Conn(ctx)
		require.NoError(t, err)
		pinned, err := s.PrepareContext(ctx, "SELECT count(*) FROM pg_prepared_statements")
		require.NoError(t, err)
		var n int
		require.NoError(t, pinned.QueryRowContext(ctx).Scan(&n))
		assert.Zero(t, n, "nothing named on the pinned connection either")
	})
}
