package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback/internal/secretgen"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// spaceChannels serves every page of an opened app for case c and returns
// what each showed: the status page (GET and HEAD), /readyz, /healthz, the
// API before and after a request that fails, and the log.
func spaceChannels(t *testing.T, c secretgen.Case, dir string) map[string]string {
	t.Helper()
	env := map[string]string{"TMPDIR": dir}
	for k, v := range c.Env {
		env[k] = v
	}
	if c.File != "" {
		p := filepath.Join(dir, "secret")
		require.NoError(t, os.WriteFile(p, []byte(c.File), 0o600))
		env["DATABASE_URL_FILE"] = p
	}
	var logs syncBuffer
	a := newApp(slog.New(slog.NewJSONHandler(&logs, nil)), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.open(ctx)
	defer a.close()
	require.NotNil(t, a.db.Load(), "the Space always opens a database")
	h := a.routes()
	out := map[string]string{}
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/", ""}, {"HEAD", "/", ""}, {"GET", "/readyz", ""}, {"GET", "/healthz", ""},
		{"GET", "/api/notes", ""}, {"POST", "/api/notes", `{"title":`}, {"GET", "/api/notes/999", ""},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
		if req.body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		h.ServeHTTP(rec, r)
		body, _ := io.ReadAll(rec.Body)
		out[req.method+" "+req.path] = string(body)
	}
	a.close()
	out["log"] = logs.String()
	return out
}

// leaksIn fails for each channel that shows a token of c's marker.
func leaksIn(t *testing.T, c secretgen.Case, out map[string]string) {
	t.Helper()
	names := make([]string, 0, len(out))
	for k := range out {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if leaks := c.Leaks(out[name]); len(leaks) > 0 {
			t.Fatalf("%s shows %q\ncase %s\n%.800s", name, leaks, c, out[name])
		}
	}
}

// TestSpaceSecretChannels runs the Space in-process on generated
// configurations (internal/secretgen: every family, a random marker
// password, the primary on a loopback port where nothing listens) and
// checks /, /readyz, /healthz, the API's answers and the log.
func TestSpaceSecretChannels(t *testing.T) {
	const perFamily = 12
	cfg := secretgen.Config{Host: "127.0.0.1", Port: strconv.Itoa(freePort(t))}
	for _, fam := range secretgen.Families {
		t.Run(fam.Name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			rng := rand.New(rand.NewPCG(13, uint64(len(fam.Name))))
			for i := 0; i < perFamily; i++ {
				c := secretgen.Generate(rng, fam, cfg)
				leaksIn(t, c, spaceChannels(t, c, t.TempDir()))
			}
		})
	}
}

// TestSpaceProcessSecretChannels runs the built server, as a Space runs
// it, on one generated configuration per family, and checks the pages
// and everything the process wrote to stdout and stderr.
func TestSpaceProcessSecretChannels(t *testing.T) {
	cfg := secretgen.Config{Host: "127.0.0.1", Port: strconv.Itoa(freePort(t))}
	rng := rand.New(rand.NewPCG(17, 17))
	for _, fam := range secretgen.Families {
		t.Run(fam.Name, func(t *testing.T) {
			c := secretgen.Generate(rng, fam, cfg)
			for strings.Contains(c.String(), "\\x00") {
				c = secretgen.Generate(rng, fam, cfg) // an environment cannot hold NUL
			}
			dir := spaceDir(t, true)
			extra := []string{"TMPDIR=" + dir}
			for k, v := range c.Env {
				extra = append(extra, k+"="+v)
			}
			if c.File != "" {
				p := filepath.Join(dir, "secret")
				require.NoError(t, os.WriteFile(p, []byte(c.File), 0o600))
				if os.Geteuid() == 0 {
					require.NoError(t, os.Chown(p, spaceUID, spaceUID))
				}
				extra = append(extra, "DATABASE_URL_FILE="+p)
			}
			s := startSpace(t, freePort(t), extra...)
			_, ready := s.waitStatus("/readyz", 200, 15*time.Second)
			_, page := s.do("GET", "/", "")
			_, api := s.do("POST", "/api/notes", `{"title":`)
			exit, _ := s.stop()
			require.Equal(t, 0, exit)
			leaksIn(t, c, map[string]string{"/readyz": ready, "/": page, "POST /api/notes": api, "stdout and stderr": s.logs.String()})
		})
	}
}
