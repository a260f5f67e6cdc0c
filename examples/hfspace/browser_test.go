package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumPath finds Debian's chromium (installed by .ci/run).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("DBFALLBACK_TEST_DATABASE_URL") != "" {
		t.Fatal("chromium not found (.ci/run installs Debian's chromium)")
	}
	t.Skip("needs Debian's chromium (apt-get install chromium; .ci/run does)")
	return ""
}

// TestStatusPageInBrowser loads the status page in headless Chromium and
// finds the live dialect and a note created through the API.
func TestStatusPageInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	dir := spaceDir(t, true)
	s := startSpace(t, freePort(t), "SQLITE_PATH="+filepath.Join(dir, "notes.db"))
	s.waitStatus("/readyz", 200, 10*time.Second)
	title := "seen by chromium " + time.Now().Format("150405.000")
	code, body := s.do("POST", "/api/notes", `{"title":"`+title+`","body":"from the API"}`)
	require.Equal(t, 201, code, body)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Loopback only: no name is ever resolved, nothing else is reached.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("proxy-server", "direct://"),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(s.url("/")),
		chromedp.WaitVisible(chromedp.ID("notes")),
	))
	pageTitle, err := chromedp.Run(ctx, chromedp.Title())
	require.NoError(t, err)
	dialect, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("dialect")))
	require.NoError(t, err)
	notes, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("notes")))
	require.NoError(t, err)
	assert.Contains(t, pageTitle, "Notes")
	assert.Equal(t, "sqlite", strings.TrimSpace(dialect))
	assert.Contains(t, notes, title)
	assert.Contains(t, notes, "from the API")
	exit, _ := s.stop()
	assert.Equal(t, 0, exit)
}
