package integration

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind: every DB
// and pool must stop on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
