package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// podman runs the podman command; every method does I/O and honours ctx.
type podman struct {
	bin string
}

// cmd runs podman with args and returns its standard output, or an error
// holding its standard error.
func (p podman) cmd(ctx context.Context, args ...string) (string, error) {
	c := exec.CommandContext(ctx, p.bin, args...)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", p.bin, args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// container is one started container.
type container struct {
	p    podman
	name string
	// started is when `podman run` was called; figures count from it.
	started time.Time
	// runReturned is how long `podman run -d` took to return.
	runReturned time.Duration
}

// start runs image detached as a Space would: host networking, the image's
// own user and command, only the variables in env (NAME=value); extra are
// more podman run flags (a volume).
func (p podman) start(ctx context.Context, name, image string, env []string, extra ...string) (*container, error) {
	// podman's own default TERM=xterm is not something a Space sets.
	args := []string{"run", "--detach", "--name", name, "--network", "host", "--pull", "never", "--unsetenv", "TERM"}
	for _, e := range env {
		args = append(args, "--env", e)
	}
	args = append(append(args, extra...), image)
	c := &container{p: p, name: name, started: time.Now()}
	if _, err := p.cmd(ctx, args...); err != nil {
		p.remove(name)
		return nil, err
	}
	c.runReturned = time.Since(c.started)
	return c, nil
}

// inspect returns a podman inspect --format field of the container.
func (c *container) inspect(ctx context.Context, format string) (string, error) {
	return c.p.cmd(ctx, "inspect", "--format", format, c.name)
}

// pid returns the host process id of the container's command.
func (c *container) pid(ctx context.Context) (int, error) {
	s, err := c.inspect(ctx, "{{.State.Pid}}")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s is not running (pid %q)", c.name, s)
	}
	return pid, nil
}

// stop sends the image's stop signal (SIGTERM) through `podman stop`, which
// kills the container after grace; it returns how long stopping took and
// the command's exit code.
func (c *container) stop(ctx context.Context, grace time.Duration) (time.Duration, int, error) {
	start := time.Now()
	if _, err := c.p.cmd(ctx, "stop", "--time", strconv.Itoa(int(grace.Seconds())), c.name); err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	s, err := c.inspect(ctx, "{{.State.ExitCode}}")
	if err != nil {
		return took, 0, err
	}
	code, err := strconv.Atoi(s)
	if err != nil {
		return took, 0, fmt.Errorf("exit code %q: %v", s, err)
	}
	return took, code, nil
}

// logs returns what the container wrote to stdout and stderr.
func (c *container) logs(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, c.p.bin, "logs", c.name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s logs: %v: %s", c.p.bin, err, out)
	}
	return string(out), nil
}

// remove deletes a container, running or not; it ignores errors, since it
// runs on every path, and has its own short deadline so that it runs even
// when the caller's ctx has ended.
func (p podman) remove(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec.CommandContext(ctx, p.bin, "rm", "--force", "--time", "0", name).Run()
}
