package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAssembledFolderBuildsOffline assembles the Space folder and builds
// it the way its Dockerfile does: vendor mode (the module cache is not
// consulted) with no module proxy.
func TestAssembledFolderBuildsOffline(t *testing.T) {
	out := filepath.Join(t.TempDir(), "space")
	require.NoError(t, assemble(findRepo(), out))
	for _, f := range []string{"Dockerfile", "README.md", ".dockerignore", "main.go", "go.mod", "go.sum",
		"dbfallback/validator.go", "dbfallback/go.mod", "vendor/modules.txt",
		"vendor/github.com/mattn/go-sqlite3/sqlite3-binding.c", "vendor/github.com/jackc/pgx/v5/stdlib/sql.go"} {
		assert.FileExists(t, filepath.Join(out, f))
	}
	matches, _ := filepath.Glob(filepath.Join(out, "*_test.go"))
	assert.Empty(t, matches, "tests stay out of the Space")
	mod, err := os.ReadFile(filepath.Join(out, "go.mod"))
	require.NoError(t, err)
	for _, heavy := range []string{"chromedp", "testify", "dburl"} {
		assert.NotContains(t, string(mod), heavy, "test-only dependencies stay out of the Space")
	}

	build := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		cmd.Dir = out
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=vendor -trimpath", "GOPROXY=off", "CGO_ENABLED=1")
		b, err := cmd.CombinedOutput()
		require.NoErrorf(t, err, "go build %s: %s", strings.Join(args, " "), b)
	}
	build("-v", "github.com/mattn/go-sqlite3", "github.com/jackc/pgx/v5/stdlib")
	build("-ldflags=-s -w", "-o", filepath.Join(out, "hfspace.bin"), ".")
	assert.FileExists(t, filepath.Join(out, "hfspace.bin"))
	assert.Error(t, assemble(findRepo(), out), "assemble refuses a non-empty folder")
}
