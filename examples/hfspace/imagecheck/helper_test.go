package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// TestMain removes the built server and fails the run if a goroutine is
// left behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// serverBinary builds the real hfspace server (the parent package) once,
// into a directory every user can read: the checks run against it.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "imagecheck-bin-")
		if buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "hfspace"), "..").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return filepath.Join(binDir, "hfspace")
}

// userDir makes a directory the server may use as its home and working
// directory: owned by the Space's user when the test runs as root.
func userDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "imagecheck-dir-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(dir, spaceUID, spaceUID))
	}
	return dir
}

// startServer runs the real server with the Space's variables and extra,
// on a free port, and returns a client for it; it is stopped with SIGTERM
// (and must exit 0) when the test ends.
func startServer(t *testing.T, extra ...string) server {
	t.Helper()
	bin := serverBinary(t)
	dir := userDir(t)
	port := freePort(t)
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(append(spaceEnv(), "HOME="+dir, "PATH=/usr/bin:/bin", fmt.Sprintf("PORT=%d", port)), extra...)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: spaceUID, Gid: spaceUID}}
	}
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	srv := newServer(fmt.Sprintf("http://127.0.0.1:%d", port))
	t.Cleanup(func() {
		srv.close()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the server's exit after SIGTERM: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("the server ignored SIGTERM")
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	return srv
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
