package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// copyBinary copies the executable of a running process (the server inside
// the container, through /proc) to dir, so that the same binary can run
// outside the container as a baseline.
func copyBinary(pid int, dir string) (string, error) {
	in, err := os.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", err
	}
	defer in.Close()
	path := filepath.Join(dir, "hfspace")
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return path, out.Close()
}

// runNative runs bin as a plain process on port, the baseline for the
// container's figures: the same binary, the same Space variables and user
// (when run as root), no container. Its working directory is a fresh
// directory in dir that the process owns, so SQLite lands in ./data as in
// the image.
func runNative(ctx context.Context, bin, dir string, port int) (figures, error) {
	var fig figures
	if err := portFree(port); err != nil {
		return fig, err
	}
	work, err := os.MkdirTemp(dir, "native-")
	if err != nil {
		return fig, err
	}
	cmd := exec.Command(bin)
	cmd.Dir = work
	cmd.Env = append(spaceEnv(), "HOME="+work, "PATH=/usr/local/bin:/usr/bin:/bin", fmt.Sprintf("PORT=%d", port))
	if os.Geteuid() == 0 {
		if err := os.Chown(work, spaceUID, spaceUID); err != nil {
			return fig, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: spaceUID, Gid: spaceUID}}
	}
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fig, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	err = measureNative(ctx, p, newServer(fmt.Sprintf("http://127.0.0.1:%d", port)), start, &fig)
	select {
	case <-p.done:
	default:
		cmd.Process.Kill()
		<-p.done
	}
	if err != nil {
		return fig, fmt.Errorf("%w\nlogs:\n%s", err, tail(logs.String(), 20))
	}
	return fig, nil
}

// process is a started command; err is valid once done is closed.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// gone reports an error once the process has exited.
func (p *process) gone() error {
	select {
	case <-p.done:
		return fmt.Errorf("exited: %v", p.err)
	default:
		return nil
	}
}

func measureNative(ctx context.Context, p *process, srv server, start time.Time, fig *figures) error {
	defer srv.close()
	var err error
	if fig.healthz, _, err = srv.waitFor(ctx, "/healthz", 200, start, 10*time.Second, p.gone); err != nil {
		return err
	}
	if fig.readyz, _, err = srv.waitFor(ctx, "/readyz", 200, start, 15*time.Second, p.gone); err != nil {
		return err
	}
	time.Sleep(time.Second)
	st, err := readStatus(p.cmd.Process.Pid)
	if err != nil {
		return err
	}
	fig.rss = st.rss
	stopAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		fig.stop = time.Since(stopAt)
		if p.err != nil {
			return fmt.Errorf("SIGTERM: %v, want exit 0", p.err)
		}
		return nil
	case <-time.After(stopGrace):
		return errors.New("SIGTERM: still running after " + stopGrace.String())
	}
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
