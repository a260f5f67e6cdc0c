package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReportWithoutSQLiteEngine: a doctor built without cgo and without
// the puresqlite import must not list SQLite candidates as if Open could
// use them (found by the attack on issue 12).
func TestReportWithoutSQLiteEngine(t *testing.T) {
	tests := []struct {
		name    string
		engine  string
		want    []string
		notWant []string
	}{
		{name: "no engine", engine: "",
			want: []string{"(SQLite file, ephemeral, fails in this build)", "(SQLite in memory, last resort, ephemeral, fails in this build)", "Open fails with ErrNoSQLiteEngine"}},
		{name: "with an engine", engine: "modernc.org/sqlite",
			want: []string{"(SQLite in memory, last resort, ephemeral)"}, notWant: []string{"fails in this build", "ErrNoSQLiteEngine"}},
	}
	r, err := dbfallback.Resolve(context.Background(), dbfallback.WithLookupEnv(fakeEnv("TMPDIR", t.TempDir())))
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			report(&out, r, tt.engine)
			for _, w := range tt.want {
				assert.Contains(t, out.String(), w)
			}
			for _, w := range tt.notWant {
				assert.NotContains(t, out.String(), w)
			}
		})
	}
}
