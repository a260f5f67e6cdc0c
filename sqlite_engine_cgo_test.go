//go:build cgo && !dbfallback_puresqlite

package dbfallback

import (
	"testing"

	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
)

// TestGoSQLite3ErrorsClassified: go-sqlite3's errors as the driver builds
// them, including the codes that are hard to make SQLite return for real
// (an I/O error) and errors whose extended code is not set.
func TestGoSQLite3ErrorsClassified(t *testing.T) {
	tests := []struct {
		name                   string
		err                    sqlite3.Error
		unavailable, retryable bool
	}{
		{"busy", sqlite3.Error{Code: sqlite3.ErrBusy, ExtendedCode: sqlite3.ErrNoExtended(sqlite3.ErrBusy)}, true, true},
		{"busy, no extended code", sqlite3.Error{Code: sqlite3.ErrBusy}, true, true},
		{"busy snapshot", sqlite3.Error{Code: sqlite3.ErrBusy, ExtendedCode: sqlite3.ErrBusySnapshot}, true, true},
		{"locked", sqlite3.Error{Code: sqlite3.ErrLocked}, true, true},
		{"I/O", sqlite3.Error{Code: sqlite3.ErrIoErr}, true, false},
		{"I/O, short read", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrShortRead}, true, false},
		{"out of memory", sqlite3.Error{Code: sqlite3.ErrNomem}, true, false},
		{"locking protocol", sqlite3.Error{Code: sqlite3.ErrProtocol}, true, false},
		{"full", sqlite3.Error{Code: sqlite3.ErrFull}, true, false},
		{"syntax", sqlite3.Error{Code: sqlite3.ErrError}, false, false},
		{"constraint", sqlite3.Error{Code: sqlite3.ErrConstraint, ExtendedCode: sqlite3.ErrConstraintUnique}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.unavailable, IsUnavailable(tt.err))
			assert.Equal(t, tt.retryable, IsRetryable(tt.err))
			assert.False(t, commitOutcomeUnknown(tt.err))
		})
	}
}
