// Command imagecheck runs the Space image with podman the way Hugging Face
// runs a Space, and checks it from the outside: as the image's user (uid
// 1000), on host networking at port 7860, with no environment but the
// variables a Space sets (see spaceEnv). It runs the scenarios of the
// scenarios table in order: no configuration (SQLite, ephemeral),
// DATABASE_URL at a real PostgreSQL, a primary that accepts connections
// and never answers, SIGTERM while that primary is still being tried, and
// persistent storage at /data across a restart. Then it runs the image's
// own binary outside the container, as the baseline of its figures.
//
// examples/hfspace/imagetest.sh builds the image and runs this command;
// run by hand it needs root (it reads the container's /proc entries), an
// image built from the Dockerfile and a free port 7860:
//
//	imagecheck -image localhost/hfspace:imagetest -postgres "$DBFALLBACK_TEST_DATABASE_URL"
//
// It prints one line of figures per scenario and exits 1 when a check
// fails, 2 on bad flags. Containers it starts are removed on every path.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs every scenario and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("imagecheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	image := fs.String("image", "", "image to run (required)")
	pg := fs.String("postgres", "", "PostgreSQL URL the image must reach from host networking (required)")
	podmanBin := fs.String("podman", "podman", "podman command")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up on the whole run after this")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *image == "" || *pg == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: imagecheck -image NAME -postgres URL [-podman CMD] [-timeout D]")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// The baseline binary runs as the Space's user: its directory must be
	// traversable.
	dir, err := os.MkdirTemp("", "imagecheck-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(stderr, "imagecheck:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	p := podman{bin: *podmanBin}
	failed := 0
	var base figures
	for _, sc := range scenarios(*pg) {
		fig, err := runScenario(ctx, p, *image, dir, sc)
		if err != nil {
			fmt.Fprintf(stderr, "imagecheck: %s: FAIL: %v\n", sc.name, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "imagecheck: %s: ok: %s\n", sc.name, fig)
		if sc.baseline {
			base = fig
		}
	}
	if base.binary != "" {
		native, err := runNative(ctx, base.binary, dir, spacePort)
		if err != nil {
			fmt.Fprintf(stderr, "imagecheck: native baseline: FAIL: %v\n", err)
			failed++
		} else {
			fmt.Fprintf(stdout, "imagecheck: native baseline (the image's binary, no container): %s\n", native)
			fmt.Fprintf(stdout, "imagecheck: container/native: /healthz %.2fx, /readyz %.2fx, idle RSS %.2fx\n",
				ratio(base.healthz, native.healthz), ratio(base.readyz, native.readyz), float64(base.rss)/float64(native.rss))
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "imagecheck: %d checks failed\n", failed)
		return 1
	}
	return 0
}

func ratio(a, b time.Duration) float64 { return a.Seconds() / b.Seconds() }
