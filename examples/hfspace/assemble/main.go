// Command assemble writes a folder ready to push to a Hugging Face Space:
// the hfspace server, its Dockerfile and README (the Space configuration),
// the dbfallback library's source in dbfallback/, a go.work that makes both
// one workspace, and vendor/ with every other dependency, so that the image
// builds without a module proxy. The build compiles dbfallback/ itself (a
// workspace module is never copied into vendor/), so an edit there takes
// effect: there is one copy of the library in the folder.
//
// Run it from the dbfallback repository:
//
//	go run ./examples/hfspace/assemble -o ../my-space
//
// It needs the go command and the dependencies in the module cache (or a
// reachable proxy) once, to vendor them.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

func main() {
	out := flag.String("o", "", "output folder (must not exist or be empty)")
	repo := flag.String("repo", "", "dbfallback repository root (default: found from this source file or the working directory)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: assemble -o DIR")
		os.Exit(2)
	}
	root := *repo
	if root == "" {
		root = findRepo()
	}
	if err := assemble(root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "assemble:", err)
		os.Exit(1)
	}
	fmt.Printf("assembled %s; push it to a Space of type Docker (see its README.md)\n", *out)
}

// findRepo locates the repository root: the working directory or a parent
// holding dbfallback's go.mod.
func findRepo() string {
	dirs := []string{}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		dirs = append(dirs, filepath.Dir(file))
	}
	for _, d := range dirs {
		for {
			if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(data), "module "+libraryModule+"\n") {
				return d
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "."
}

// assemble builds the Space folder at out from the repository at root.
func assemble(root, out string) error {
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty", out)
	}
	example := filepath.Join(root, "examples", "hfspace")
	lib := filepath.Join(out, "dbfallback")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		return err
	}
	// The server: its Go files (no tests), Dockerfile, README, ignore file.
	if err := copyFiles(example, out, func(name string) bool {
		return isSource(name) || name == "Dockerfile" || name == "README.md" || name == ".dockerignore"
	}); err != nil {
		return err
	}
	// The library: its Go files (no tests, no examples) and license.
	if err := copyFiles(root, lib, func(name string) bool {
		return isSource(name) || name == "LICENSE" || name == "go.mod"
	}); err != nil {
		return err
	}
	if err := copyInternal(root, lib); err != nil {
		return err
	}
	libMod, err := os.ReadFile(filepath.Join(lib, "go.mod"))
	if err != nil {
		return err
	}
	goVersion := goDirective(libMod)
	if goVersion == "" {
		return errors.New("the library's go.mod has no go line")
	}
	if _, err := goCmd(lib, "off", "mod", "tidy"); err != nil {
		return err
	}
	if err := serverModule(out, goVersion); err != nil {
		return err
	}
	gowork := "go " + goVersion + "\n\nuse (\n\t.\n\t./dbfallback\n)\n"
	if err := os.WriteFile(filepath.Join(out, "go.work"), []byte(gowork), 0o644); err != nil {
		return err
	}
	_, err = goCmd(out, filepath.Join(out, "go.work"), "work", "vendor")
	return err
}

// serverModule writes the server's go.mod in out: the modules the server
// imports itself, found by tidying it against the library in dbfallback/.
// The library and the modules it needs come from the workspace and are not
// listed, so that dbfallback/go.mod is the one place their versions are set.
func serverModule(out, goVersion string) error {
	gomod := "module hfspace\n\ngo " + goVersion + "\n\nrequire " + libraryModule + " v0.0.0\n\nreplace " + libraryModule + " => ./dbfallback\n"
	if err := os.WriteFile(filepath.Join(out, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if _, err := goCmd(out, "off", "mod", "tidy"); err != nil {
		return err
	}
	data, err := goCmd(out, "off", "mod", "edit", "-json")
	if err != nil {
		return err
	}
	var mod struct {
		Require []struct {
			Path     string
			Indirect bool
		}
	}
	if err := json.Unmarshal(data, &mod); err != nil {
		return fmt.Errorf("go mod edit -json: %w", err)
	}
	edit := []string{"mod", "edit", "-droprequire=" + libraryModule, "-dropreplace=" + libraryModule}
	direct := 0
	for _, r := range mod.Require {
		switch {
		case r.Path == libraryModule:
		case r.Indirect:
			edit = append(edit, "-droprequire="+r.Path)
		default:
			direct++
		}
	}
	if _, err := goCmd(out, "off", edit...); err != nil {
		return err
	}
	if direct == 0 {
		// Nothing left for go.sum to check.
		return os.Remove(filepath.Join(out, "go.sum"))
	}
	return nil
}

// libraryModule is dbfallback's module path.
const libraryModule = "github.com/dbfallback/dbfallback"

// goDirective returns the version of a go.mod's go line, "" without one.
func goDirective(gomod []byte) string {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// isSource reports a Go file that is built, not a test or an example.
func isSource(name string) bool {
	return strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
}

// copyInternal copies into lib the library's internal packages that its
// source imports (internal/sqlengine, the SQLite engine seam), and those
// they import: their Go files, no tests.
func copyInternal(root, lib string) error {
	const prefix = libraryModule + "/internal/"
	queue := []string{lib}
	seen := map[string]bool{}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !isSource(e.Name()) {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, e.Name()), nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				path, err := strconv.Unquote(imp.Path.Value)
				if err != nil || !strings.HasPrefix(path, prefix) || seen[path] {
					continue
				}
				seen[path] = true
				rel := filepath.FromSlash(strings.TrimPrefix(path, libraryModule+"/"))
				if err := os.MkdirAll(filepath.Join(lib, rel), 0o755); err != nil {
					return err
				}
				if err := copyFiles(filepath.Join(root, rel), filepath.Join(lib, rel), isSource); err != nil {
					return err
				}
				queue = append(queue, filepath.Join(lib, rel))
			}
		}
	}
	return nil
}

// copyFiles copies the regular files of src that keep accepts into dst.
func copyFiles(src, dst string, keep func(name string) bool) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !keep(e.Name()) {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("nothing to copy from " + src)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// goCmd runs the go command in dir with GOWORK set to gowork ("off", or
// the go.work file to use) and no GOFLAGS from the caller, and returns its
// standard output.
func goCmd(dir, gowork string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK="+gowork, "GOFLAGS=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return out, nil
}
