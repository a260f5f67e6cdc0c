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

// buildSpace builds in the assembled folder the way its Dockerfile does:
// the folder's own go.work, vendor mode (the module cache is not
// consulted) and no module proxy.
func buildSpace(t *testing.T, dir string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=", "GOFLAGS=-mod=vendor -trimpath", "GOPROXY=off", "CGO_ENABLED=1")
	return cmd.CombinedOutput()
}

// TestAssembledFolder assembles the Space folder once (building it
// compiles go-sqlite3, about two minutes cold, and the build cache does not
// carry over between folders) and checks it in order.
func TestAssembledFolder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "space")
	require.NoError(t, assemble(findRepo(), out))

	t.Run("has the server, the library and vendor/, and no tests", func(t *testing.T) {
		for _, f := range []string{"Dockerfile", "README.md", ".dockerignore", "main.go", "go.mod", "go.work",
			"dbfallback/validator.go", "dbfallback/go.mod", "dbfallback/go.sum", "vendor/modules.txt",
			"dbfallback/internal/sqlengine/sqlengine.go",
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
		assert.NoDirExists(t, filepath.Join(out, "vendor", "modernc.org"), "the pure-Go SQLite engine stays out of a cgo build's vendor/")
		assert.NoDirExists(t, filepath.Join(out, "dbfallback", "puresqlite"))
	})

	t.Run("builds offline as the Dockerfile does", func(t *testing.T) {
		for _, args := range [][]string{
			{"-v", "github.com/mattn/go-sqlite3", "github.com/jackc/pgx/v5/stdlib"},
			{"-ldflags=-s -w", "-o", filepath.Join(out, "hfspace.bin"), "."},
		} {
			b, err := buildSpace(t, out, args...)
			require.NoErrorf(t, err, "go build %s: %s", strings.Join(args, " "), b)
		}
		assert.FileExists(t, filepath.Join(out, "hfspace.bin"))
	})

	// The library's source exists once, in dbfallback/, and the build
	// compiles that copy: an edit there takes effect.
	t.Run("compiles the one copy of the library in dbfallback/", func(t *testing.T) {
		assert.NoDirExists(t, filepath.Join(out, "vendor", "github.com", "dbfallback"), "no second copy in vendor/")
		modules, err := os.ReadFile(filepath.Join(out, "vendor", "modules.txt"))
		require.NoError(t, err)
		assert.NotContains(t, string(modules), "# github.com/dbfallback/dbfallback", "the library is a workspace module, not a vendored one")
		mod, err := os.ReadFile(filepath.Join(out, "go.mod"))
		require.NoError(t, err)
		assert.NotContains(t, string(mod), "dbfallback", "the server's go.mod neither requires nor replaces the library")
		assert.NotContains(t, string(mod), "pgx", "the library's dependencies are set in dbfallback/go.mod alone")

		edit := filepath.Join(out, "dbfallback", "zz_edit.go")
		require.NoError(t, os.WriteFile(edit, []byte("package dbfallback\n\nvar _ = editedInTheSpaceFolder\n"), 0o644))
		defer os.Remove(edit)
		b, err := buildSpace(t, out, "-o", os.DevNull, ".")
		require.Error(t, err, "a broken edit in dbfallback/ must break the build")
		assert.Contains(t, string(b), "dbfallback/zz_edit.go")
		assert.Contains(t, string(b), "editedInTheSpaceFolder")
	})

	t.Run("refuses a non-empty folder", func(t *testing.T) {
		assert.ErrorContains(t, assemble(findRepo(), out), "is not empty")
	})
}

func TestGoDirective(t *testing.T) {
	tests := []struct {
		name, gomod, want string
	}{
		{"plain", "module m\n\ngo 1.25.0\n", "1.25.0"},
		{"with toolchain", "module m\n\ngo 1.26\n\ntoolchain go1.26.8\n", "1.26"},
		{"none", "module m\n", ""},
		{"a require of a module named go is not it", "module m\n\nrequire (\n\tgo v1.0.0\n)\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, goDirective([]byte(tt.gomod)))
		})
	}
}
