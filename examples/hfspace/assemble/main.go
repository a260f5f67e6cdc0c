// Command assemble writes a folder ready to push to a Hugging Face Space:
// the hfspace server, its Dockerfile and README (the Space configuration),
// the dbfallback library source next to it, and vendor/ with every
// dependency, so that the image builds without a module proxy.
//
// Run it from the dbfallback repository:
//
//	go run ./examples/hfspace/assemble -o ../my-space
//
// It needs the go command and the dependencies in the module cache (or a
// reachable proxy) once, to vendor them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
			if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/dbfallback/dbfallback\n") {
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
	if err := os.MkdirAll(filepath.Join(out, "dbfallback"), 0o755); err != nil {
		return err
	}
	// The server: its Go files (no tests), Dockerfile, README, ignore file.
	if err := copyFiles(example, out, func(name string) bool {
		return isSource(name) || name == "Dockerfile" || name == "README.md" || name == ".dockerignore"
	}); err != nil {
		return err
	}
	// The library: its Go files (no tests, no examples) and license.
	if err := copyFiles(root, filepath.Join(out, "dbfallback"), func(name string) bool {
		return isSource(name) || name == "LICENSE" || name == "go.mod"
	}); err != nil {
		return err
	}
	gomod := "module hfspace\n\ngo 1.25.0\n\nrequire github.com/dbfallback/dbfallback v0.0.0\n\nreplace github.com/dbfallback/dbfallback => ./dbfallback\n"
	if err := os.WriteFile(filepath.Join(out, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	for _, dir := range []string{filepath.Join(out, "dbfallback"), out} {
		if err := goCmd(dir, "mod", "tidy"); err != nil {
			return err
		}
	}
	return goCmd(out, "mod", "vendor")
}

// isSource reports a Go file that is built, not a test or an example.
func isSource(name string) bool {
	return strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
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

// goCmd runs the go command in dir, outside any workspace.
func goCmd(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}
