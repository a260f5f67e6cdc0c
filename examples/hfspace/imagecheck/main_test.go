package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		out  string
	}{
		{"no flags", nil, "usage: imagecheck"},
		{"no database", []string{"-image", "x"}, "usage: imagecheck"},
		{"no image", []string{"-postgres", "postgres://h/db"}, "usage: imagecheck"},
		{"an argument", []string{"-image", "x", "-postgres", "postgres://h/db", "extra"}, "usage: imagecheck"},
		{"an unknown flag", []string{"-imgae", "x"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, run(context.Background(), tt.args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.out)
			assert.Empty(t, stdout.String())
		})
	}
}

// TestPodmanMissing: without podman, starting fails with an error that
// says so, and nothing is left to remove.
func TestPodmanMissing(t *testing.T) {
	c, err := podman{bin: "/nonexistent/podman"}.start(context.Background(), "imagecheck-test", "image", nil)
	assert.Nil(t, c)
	assert.ErrorContains(t, err, "/nonexistent/podman run")
}

func TestSilentServer(t *testing.T) {
	s, err := listenSilent()
	require.NoError(t, err)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port()))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f")) // an SSLRequest
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.accepted.Load() == 1 }, 5*time.Second, time.Millisecond)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "no answer, ever")
	s.close()
	s.close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err, "closing the server closes what it holds")
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestCopyBinary(t *testing.T) {
	path, err := copyBinary(os.Getpid(), t.TempDir())
	require.NoError(t, err)
	self, err := os.Executable()
	require.NoError(t, err)
	want, err := os.ReadFile(self)
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "the copy is the running executable")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
}

// TestRunNative runs the real server as the baseline does, on a free port.
func TestRunNative(t *testing.T) {
	fig, err := runNative(context.Background(), serverBinary(t), userDir(t), freePort(t))
	require.NoError(t, err)
	assert.Positive(t, fig.healthz)
	assert.GreaterOrEqual(t, fig.readyz, fig.healthz)
	assert.Greater(t, fig.rss, int64(1<<20))
	assert.Positive(t, fig.stop)
	assert.Zero(t, fig.runReturned)
	assert.NotContains(t, fig.String(), "podman")
}
