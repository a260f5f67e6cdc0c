package dbfallback

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the helper processes some tests start (a crash-test writer,
// an unprivileged Open), and otherwise the tests, then fails the run if
// any goroutine is left behind: every DB, probe and pool must stop on
// Close.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(crashChildEnv) != "":
		crashChild(os.Getenv(crashChildEnv))
		return
	case os.Getenv(openChildEnv) != "":
		openChild()
		return
	case os.Getenv(atkLockHolderEnv) != "":
		atkLockHolder(os.Getenv(atkLockHolderEnv))
		return
	case os.Getenv(attackChildEnv) != "":
		attackChild()
		return
	}
	code := m.Run()
	if childPath != "" {
		os.RemoveAll(filepath.Dir(childPath))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}
