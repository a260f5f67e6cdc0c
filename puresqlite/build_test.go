//go:build !cgo || dbfallback_puresqlite

package puresqlite_test

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildWithoutCgo: a program that imports the library and this
// package, built with CGO_ENABLED=0 as for a scratch or distroless image,
// is a static binary without go-sqlite3, and it does what a cgo build
// does: PostgreSQL when the primary answers, a SQLite file on the pure-Go
// engine when it does not. (The library's own TestBuildWithoutCgo builds
// the same program without this import.)
func TestBuildWithoutCgo(t *testing.T) {
	pgURL := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if pgURL == "" {
		t.Skip("needs PostgreSQL: set DBFALLBACK_TEST_DATABASE_URL (.ci/run starts a server and sets it)")
	}
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command builds the program")
	bin := filepath.Join(t.TempDir(), "sizeprog")
	build := exec.Command(goTool, "build", "-o", bin, "./testdata/sizeprog")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "CGO_ENABLED=0 go build: %s", out)
	deps := exec.Command(goTool, "list", "-deps", "./testdata/sizeprog")
	deps.Env = build.Env
	out, err = deps.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "github.com/mattn/go-sqlite3")
	assert.Contains(t, string(out), "modernc.org/sqlite")

	f, err := elf.Open(bin)
	require.NoError(t, err)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary needs no dynamic loader")
	}
	require.NoError(t, f.Close())

	run := func(databaseURL string) (out string, code int, files []string) {
		work := t.TempDir()
		cmd := exec.Command(bin)
		cmd.Dir = work
		cmd.Env = []string{"DATABASE_URL=" + databaseURL, "TMPDIR=" + work, "HOME=" + work}
		b, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else {
			require.NoError(t, err)
		}
		require.NoError(t, filepath.WalkDir(work, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, filepath.Base(path))
			}
			return err
		}))
		return string(b), code, files
	}
	out2, code, files := run(pgURL)
	assert.Equal(t, 0, code, "%s", out2)
	assert.Contains(t, out2, `engine="modernc.org/sqlite"`)
	assert.Contains(t, out2, "dialect=postgres fallback=false select=1")
	assert.Empty(t, files, "no SQLite file while the primary answers")

	out2, code, files = run("postgres://app@127.0.0.1:1/app?sslmode=disable")
	assert.Equal(t, 0, code, "%s", out2)
	assert.Contains(t, out2, "dialect=sqlite fallback=true select=1")
	assert.NotEmpty(t, files, "the fallback is a file on the pure-Go engine")
}
