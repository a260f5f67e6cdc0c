//go:build cgo && dbfallback_puresqlite

package puresqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadonlyOracle checks readonlyStatements against go-sqlite3's
// Readonly, which calls sqlite3_stmt_readonly: the EXPLAIN reading gives
// SQLite's own answer. It needs both drivers, so it runs in a cgo build
// with the tag dbfallback_puresqlite (.ci/run does).
func TestReadonlyOracle(t *testing.T) {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "oracle.db")+"?_journal_mode=WAL")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
	require.NoError(t, err)
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	for _, tt := range readonlyStatements {
		t.Run(tt.query, func(t *testing.T) {
			require.NoError(t, conn.Raw(func(dc any) error {
				st, err := dc.(*sqlite3.SQLiteConn).Prepare(tt.query)
				if err != nil {
					return err
				}
				defer st.Close()
				assert.Equal(t, st.(*sqlite3.SQLiteStmt).Readonly(), tt.readonly, "sqlite3_stmt_readonly")
				return nil
			}))
		})
	}
}
