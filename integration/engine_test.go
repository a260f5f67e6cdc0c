package integration

import (
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
)

// TestEngine: the tools ran on the SQLite engine this build should have
// (go-sqlite3 with cgo; the pure-Go engine in .ci/run's CGO_ENABLED=0 run).
func TestEngine(t *testing.T) {
	assert.Equal(t, wantEngine, dbfallback.SQLiteEngine())
}
