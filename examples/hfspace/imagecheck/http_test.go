package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestChecksPassAgainstTheServer runs the checks the image gets against the
// real server as a process: they must accept a correct server.
func TestChecksPassAgainstTheServer(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	start := time.Now()
	_, _, err := srv.waitFor(ctx, "/healthz", 200, start, 10*time.Second, nil)
	require.NoError(t, err)
	_, body, err := srv.waitFor(ctx, "/readyz", 200, start, 10*time.Second, nil)
	require.NoError(t, err)
	h, err := checkReady(body, readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true})
	require.NoError(t, err)
	assert.Equal(t, "up", h.Status)

	seen, err := srv.roundTrip(ctx)
	require.NoError(t, err)
	assert.Contains(t, string(seen), "(edited)", "the bodies of the round trip are returned for the secret check")
	page, err := srv.page(ctx)
	require.NoError(t, err)
	assert.Contains(t, string(page), "sqlite")

	kept, err := srv.create(ctx, "kept", "across restarts")
	require.NoError(t, err)
	assert.NoError(t, srv.has(ctx, kept))
	changed := kept
	changed.Body = "something else"
	assert.ErrorContains(t, srv.has(ctx, changed), "want 200 and", "a changed note is not the kept one")
	gone := kept
	gone.ID += 1000
	assert.ErrorContains(t, srv.has(ctx, gone), "status 404")
	_, err = srv.create(ctx, "", "a note needs a title")
	assert.ErrorContains(t, err, "want 201")
}

// TestChecksOfASilentPrimary is the silent-primary scenario against the
// real server, with a one-second connect timeout instead of the default.
func TestChecksOfASilentPrimary(t *testing.T) {
	ctx := context.Background()
	silent, err := listenSilent()
	require.NoError(t, err)
	defer silent.close()
	secret := silentSecret
	dbURL := fmt.Sprintf("postgres://space:%s@127.0.0.1:%d/notes?connect_timeout=1", url.QueryEscape(secret), silent.port())
	start := time.Now()
	srv := startServer(t, "DATABASE_URL="+dbURL)

	_, _, err = srv.waitFor(ctx, "/healthz", 200, start, 10*time.Second, nil)
	require.NoError(t, err)
	code, _, err := srv.do(ctx, http.MethodGet, "/readyz", nil)
	require.NoError(t, err)
	assert.Equal(t, 503, code, "not ready while the primary hangs")
	took, body, err := srv.waitFor(ctx, "/readyz", 200, start, 15*time.Second, nil)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, took, time.Second, "the fallback waited for the connect timeout")
	_, err = checkReady(body, readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true, reason: spaceID})
	require.NoError(t, err)
	assert.Positive(t, silent.accepted.Load(), "the server dialled the silent primary")
	page, err := srv.page(ctx)
	require.NoError(t, err)
	assert.NoError(t, leaks(secretOf(dbURL), map[string][]byte{"/readyz": body, "the page": page}))
	assert.Equal(t, secret, secretOf(dbURL), "secretOf decodes the password")
}

// fakeNotes is a notes API with one deliberate bug (or none), to show
// that roundTrip catches each.
type fakeNotes struct {
	bug   string
	mu    sync.Mutex
	next  int64
	notes map[int64]note
}

func (f *fakeNotes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if v != nil {
			json.NewEncoder(w).Encode(v)
		}
	}
	if r.URL.Path == "/" {
		if f.bug == "no page" {
			reply(500, map[string]string{"error": "boom"})
			return
		}
		w.Write([]byte("<html><body>notes</body></html>"))
		return
	}
	if r.URL.Path == "/api/notes" {
		if r.Method == http.MethodPost {
			var n note
			json.NewDecoder(r.Body).Decode(&n)
			f.next++
			n.ID = f.next
			f.notes[n.ID] = n
			code := 201
			if f.bug == "create answers 200" {
				code = 200
			}
			reply(code, n)
			return
		}
		list := []note{}
		for _, n := range f.notes {
			if f.bug != "list misses it" {
				list = append(list, n)
			}
		}
		reply(200, map[string]any{"notes": list})
		return
	}
	id, _ := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/api/notes/"), 10, 64)
	n, ok := f.notes[id]
	switch r.Method {
	case http.MethodGet:
		if !ok {
			reply(404, map[string]string{"error": "not_found"})
			return
		}
		if f.bug == "read returns another title" {
			n.Title = "something else"
		}
		reply(200, n)
	case http.MethodPut:
		var in note
		json.NewDecoder(r.Body).Decode(&in)
		if f.bug != "update is lost" {
			n.Title, n.Body = in.Title, in.Body
			f.notes[id] = n
		}
		reply(200, n)
	case http.MethodDelete:
		if !ok {
			reply(404, map[string]string{"error": "not_found"})
			return
		}
		if f.bug != "delete keeps it" {
			delete(f.notes, id)
		}
		reply(204, nil)
	}
}

// TestChecksCatchBrokenServers shows that each check can fail: a correct
// fake passes, and each bug is reported with what went wrong.
func TestChecksCatchBrokenServers(t *testing.T) {
	tests := []struct {
		bug, want string
	}{
		{"", ""},
		{"create answers 200", "status 200, want 201"},
		{"read returns another title", "read: got"},
		{"update is lost", "update: got"},
		{"list misses it", "list:"},
		{"delete keeps it", "after delete"},
		{"no page", "GET /: status 500"},
	}
	for _, tt := range tests {
		name := tt.bug
		if name == "" {
			name = "no bug"
		}
		t.Run(name, func(t *testing.T) {
			ts := httptest.NewServer(&fakeNotes{bug: tt.bug, notes: map[int64]note{}})
			defer ts.Close()
			srv := newServer(ts.URL)
			defer srv.close()
			_, err := srv.roundTrip(context.Background())
			if err == nil {
				_, err = srv.page(context.Background())
			}
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestCheckReady(t *testing.T) {
	sqlite := readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true, reason: spaceID}
	tests := []struct {
		name, body string
		want       readiness
		err        string
	}{
		{"as wanted", `{"status":"up","dialect":"sqlite","fallback":true,"ephemeral":true,"reason":"this is Hugging Face Space dbfallback-ci/notes"}`, sqlite, ""},
		{"down", `{"status":"down","dialect":"sqlite","fallback":true,"ephemeral":true,"reason":"dbfallback-ci/notes"}`, sqlite, `status "down"`},
		{"other dialect", `{"status":"up","dialect":"postgres","fallback":true,"ephemeral":true,"reason":"dbfallback-ci/notes"}`, sqlite, `dialect "postgres"`},
		{"not a fallback", `{"status":"up","dialect":"sqlite","fallback":false,"ephemeral":true,"reason":"dbfallback-ci/notes"}`, sqlite, "fallback false"},
		{"not ephemeral", `{"status":"up","dialect":"sqlite","fallback":true,"ephemeral":false,"reason":"dbfallback-ci/notes"}`, sqlite, "ephemeral false"},
		{"reason without the Space", `{"status":"up","dialect":"sqlite","fallback":true,"ephemeral":true,"reason":"timeout"}`, sqlite, "does not mention"},
		{"every field wrong at once", `{"status":"starting"}`, sqlite, `want "sqlite"`},
		{"not JSON", `starting`, sqlite, "not health JSON"},
		{"postgres", `{"status":"up","dialect":"postgres","fallback":false,"ephemeral":false}`, readiness{dialect: dbfallback.Postgres}, ""},
		{"the wanted file", `{"status":"up","dialect":"sqlite","fallback":true,"target":"file:/data/notes.db"}`, readiness{dialect: dbfallback.SQLite, fallback: true, target: "/data/notes.db"}, ""},
		{"another file", `{"status":"up","dialect":"sqlite","fallback":true,"target":"file:data/notes.db"}`, readiness{dialect: dbfallback.SQLite, fallback: true, target: "/data/notes.db"}, `target "file:data/notes.db" is not`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkReady([]byte(tt.body), tt.want)
			if tt.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.err)
		})
	}
}

func TestWaitFor(t *testing.T) {
	ready := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ready:
			w.Write([]byte("ok"))
		default:
			w.WriteHeader(503)
			w.Write([]byte("starting"))
		}
	}))
	defer ts.Close()
	srv := newServer(ts.URL)
	defer srv.close()
	ctx := context.Background()

	t.Run("gives up after the limit with the last answer", func(t *testing.T) {
		_, _, err := srv.waitFor(ctx, "/readyz", 200, time.Now(), 50*time.Millisecond, nil)
		assert.ErrorContains(t, err, "did not answer 200 within 50ms; last answer: 503 starting")
	})
	t.Run("stops when the server is gone", func(t *testing.T) {
		_, _, err := srv.waitFor(ctx, "/readyz", 200, time.Now(), time.Minute, func() error { return errors.New("container exited") })
		assert.ErrorContains(t, err, "the server is gone (container exited)")
	})
	t.Run("stops when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, _, err := srv.waitFor(ctx, "/readyz", 200, time.Now(), time.Minute, nil)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("returns the time since start and the body", func(t *testing.T) {
		close(ready)
		start := time.Now().Add(-time.Second)
		took, body, err := srv.waitFor(ctx, "/readyz", 200, start, time.Minute, nil)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, took, time.Second)
		assert.Equal(t, "ok", string(body))
	})
	t.Run("a server that does not listen", func(t *testing.T) {
		dead := newServer(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
		_, _, err := dead.waitFor(ctx, "/healthz", 200, time.Now(), 30*time.Millisecond, nil)
		assert.ErrorContains(t, err, "connection refused")
	})
}
