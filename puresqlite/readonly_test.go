//go:build !cgo || dbfallback_puresqlite

package puresqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readonlyStatements are statements of every kind, with what
// sqlite3_stmt_readonly says of them (readonly_oracle_test.go checks the
// table against go-sqlite3, which calls it).
var readonlyStatements = []struct {
	query    string
	readonly bool
}{
	{"SELECT 1", true},
	{"SELECT * FROM t WHERE k = ?", true},
	{"SELECT * FROM t WHERE k = :k AND v = @v OR v = $v", true},
	{"WITH c AS (SELECT k FROM t) SELECT * FROM c", true},
	{"VALUES (1), (2)", true},
	{"EXPLAIN INSERT INTO t VALUES ('x', 1)", false},
	{"EXPLAIN QUERY PLAN INSERT INTO t VALUES ('x', 1)", false},
	{"EXPLAIN QUERY PLAN SELECT * FROM t", true},
	{"explain   select 1", true},
	{"PRAGMA table_info(t)", true},
	{"PRAGMA busy_timeout", true},
	{"PRAGMA schema_version", true},
	{"PRAGMA user_version = 5", false},
	{"PRAGMA journal_mode", false},
	{"PRAGMA wal_checkpoint(TRUNCATE)", false},
	{"BEGIN", true},
	{"BEGIN IMMEDIATE", false},
	{"COMMIT", true},
	{"SAVEPOINT s", true},
	{"INSERT INTO t VALUES (?, ?)", false},
	{"INSERT INTO t VALUES (:k, :v) RETURNING k", false},
	{"UPDATE t SET v = v + 1 WHERE k = ?", false},
	{"DELETE FROM t", false},
	{"REPLACE INTO t VALUES ('a', 1)", false},
	{"WITH c AS (SELECT 1) INSERT INTO t SELECT 'w', 1 FROM c", false},
	{"CREATE TABLE u (x)", false},
	{"CREATE TEMP TABLE tt (x)", false},
	{"CREATE INDEX t_v ON t (v)", false},
	{"DROP TABLE t", false},
	{"ALTER TABLE t ADD COLUMN w", false},
	{"ANALYZE", false},
	{"VACUUM", false},
	{"REINDEX", false},
}

func TestReadonly(t *testing.T) {
	ctx := context.Background()
	c, err := newEngine().Open("file:" + filepath.Join(t.TempDir(), "ro.db") + "?_journal_mode=WAL")
	require.NoError(t, err)
	defer c.Close()
	_, err = c.ExecContext(ctx, "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)", nil)
	require.NoError(t, err)
	for _, tt := range readonlyStatements {
		t.Run(tt.query, func(t *testing.T) {
			st, err := c.PrepareStmt(ctx, tt.query)
			require.NoError(t, err)
			defer st.Close()
			assert.Equal(t, tt.readonly, st.Readonly())
		})
	}
	t.Run("a statement that does not compile", func(t *testing.T) {
		_, err := c.PrepareStmt(ctx, "SELEC 1")
		assert.Error(t, err)
	})
}

func TestReadonlyCacheBounded(t *testing.T) {
	ctx := context.Background()
	c, err := newEngine().Open(":memory:")
	require.NoError(t, err)
	defer c.Close()
	cache := c.(*conn).ro
	for i := range maxCachedStatements + 10 {
		st, err := c.PrepareStmt(ctx, "SELECT "+string(rune('a'+i%26))+" FROM (SELECT 1 AS a, 2 AS b, 3 AS c, 4 AS d, 5 AS e, 6 AS f, 7 AS g, 8 AS h, 9 AS i, 10 AS j, 11 AS k, 12 AS l, 13 AS m, 14 AS n, 15 AS o, 16 AS p, 17 AS q, 18 AS r, 19 AS s, 20 AS t, 21 AS u, 22 AS v, 23 AS w, 24 AS x, 25 AS y, 26 AS z) LIMIT "+itoa(i))
		require.NoError(t, err)
		st.Close()
	}
	cache.mu.Lock()
	defer cache.mu.Unlock()
	assert.LessOrEqual(t, len(cache.m), maxCachedStatements)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
