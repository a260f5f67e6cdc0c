package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dbfallback/dbfallback"
)

// server is the Space under test, seen from outside. Its methods do I/O
// and are safe for concurrent use.
type server struct {
	base   string // e.g. http://127.0.0.1:7860
	client *http.Client
}

func newServer(base string) server {
	return server{base: base, client: &http.Client{Timeout: 5 * time.Second}}
}

// close drops the client's idle connections.
func (s server) close() { s.client.CloseIdleConnections() }

// do sends one request and returns the status and body.
func (s server) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// waitFor polls path every 5ms until it answers want, and returns the time
// since start and the body. It gives up after limit, when ctx ends or when
// exited reports that the server is gone.
func (s server) waitFor(ctx context.Context, path string, want int, start time.Time, limit time.Duration, exited func() error) (time.Duration, []byte, error) {
	deadline := time.Now().Add(limit)
	var last string
	for {
		code, body, err := s.do(ctx, http.MethodGet, path, nil)
		if err == nil && code == want {
			return time.Since(start), body, nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", code, bytes.TrimSpace(body))
		}
		if exited != nil {
			if err := exited(); err != nil {
				return 0, nil, fmt.Errorf("%s: the server is gone (%v); last answer: %s", path, err, last)
			}
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("%s did not answer %d within %s; last answer: %s", path, want, limit, last)
		}
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("%s: %w; last answer: %s", path, ctx.Err(), last)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// readiness is what /readyz must report once the database is open.
type readiness struct {
	dialect   dbfallback.Dialect
	fallback  bool
	ephemeral bool
	// reason, when set, must appear in the health's reason.
	reason string
	// target, when set, must appear in the health's (redacted) target.
	target string
}

// checkReady decodes a /readyz body and compares it with want.
func checkReady(body []byte, want readiness) (dbfallback.Health, error) {
	var h dbfallback.Health
	if err := json.Unmarshal(body, &h); err != nil {
		return h, fmt.Errorf("/readyz: not health JSON (%v): %s", err, body)
	}
	var errs []error
	if h.Status != "up" {
		errs = append(errs, fmt.Errorf("status %q, want up", h.Status))
	}
	if h.Dialect != want.dialect {
		errs = append(errs, fmt.Errorf("dialect %q, want %q", h.Dialect, want.dialect))
	}
	if h.Fallback != want.fallback {
		errs = append(errs, fmt.Errorf("fallback %v, want %v", h.Fallback, want.fallback))
	}
	if h.Ephemeral != want.ephemeral {
		errs = append(errs, fmt.Errorf("ephemeral %v, want %v", h.Ephemeral, want.ephemeral))
	}
	if want.reason != "" && !strings.Contains(h.Reason, want.reason) {
		errs = append(errs, fmt.Errorf("reason %q does not mention %q", h.Reason, want.reason))
	}
	if want.target != "" && !strings.Contains(h.Target, want.target) {
		errs = append(errs, fmt.Errorf("target %q is not %q", h.Target, want.target))
	}
	if err := errors.Join(errs...); err != nil {
		return h, fmt.Errorf("/readyz: %w", err)
	}
	return h, nil
}

// note is the API's resource, as a client sees it.
type note struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
	Body  string `json:"body"`
}

// roundTrip creates, reads, lists, updates and deletes a note whose text
// needs escaping in JSON, HTML and SQL, and checks every answer. It
// returns the bodies it received, for the secret check.
func (s server) roundTrip(ctx context.Context) ([]byte, error) {
	var seen bytes.Buffer
	call := func(method, path string, in any, want int) ([]byte, error) {
		code, body, err := s.do(ctx, method, path, in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		seen.Write(body)
		if code != want {
			return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, code, want, bytes.TrimSpace(body))
		}
		return body, nil
	}
	decode := func(what string, body []byte, want note) (note, error) {
		var n note
		if err := json.Unmarshal(body, &n); err != nil {
			return n, fmt.Errorf("%s: %v: %s", what, err, body)
		}
		if n.ID <= 0 || n.Title != want.Title || n.Body != want.Body || (want.ID != 0 && n.ID != want.ID) {
			return n, fmt.Errorf("%s: got %+v, want %+v", what, n, want)
		}
		return n, nil
	}

	first := note{Title: fmt.Sprintf("imagecheck %d: 'quotes', \"dq\", <b>, ✓", time.Now().UnixNano()), Body: "first; DROP TABLE notes; --"}
	body, err := call(http.MethodPost, "/api/notes", map[string]string{"title": first.Title, "body": first.Body}, http.StatusCreated)
	if err != nil {
		return seen.Bytes(), err
	}
	created, err := decode("create", body, first)
	if err != nil {
		return seen.Bytes(), err
	}
	path := fmt.Sprintf("/api/notes/%d", created.ID)
	if body, err = call(http.MethodGet, path, nil, http.StatusOK); err != nil {
		return seen.Bytes(), err
	}
	if _, err := decode("read", body, created); err != nil {
		return seen.Bytes(), err
	}
	second := note{ID: created.ID, Title: first.Title + " (edited)", Body: "second"}
	if body, err = call(http.MethodPut, path, map[string]string{"title": second.Title, "body": second.Body}, http.StatusOK); err != nil {
		return seen.Bytes(), err
	}
	if _, err := decode("update", body, second); err != nil {
		return seen.Bytes(), err
	}
	if body, err = call(http.MethodGet, "/api/notes?limit=200", nil, http.StatusOK); err != nil {
		return seen.Bytes(), err
	}
	var list struct{ Notes []note }
	if err := json.Unmarshal(body, &list); err != nil {
		return seen.Bytes(), fmt.Errorf("list: %v: %s", err, body)
	}
	found := false
	for _, n := range list.Notes {
		found = found || n == second
	}
	if !found {
		return seen.Bytes(), fmt.Errorf("list: %+v is missing", second)
	}
	if _, err := call(http.MethodDelete, path, nil, http.StatusNoContent); err != nil {
		return seen.Bytes(), err
	}
	if _, err := call(http.MethodGet, path, nil, http.StatusNotFound); err != nil {
		return seen.Bytes(), fmt.Errorf("after delete: %w", err)
	}
	if _, err := call(http.MethodDelete, path, nil, http.StatusNotFound); err != nil {
		return seen.Bytes(), fmt.Errorf("delete twice: %w", err)
	}
	return seen.Bytes(), nil
}

// create adds a note and returns it as the server stored it.
func (s server) create(ctx context.Context, title, body string) (note, error) {
	code, b, err := s.do(ctx, http.MethodPost, "/api/notes", map[string]string{"title": title, "body": body})
	if err != nil {
		return note{}, fmt.Errorf("POST /api/notes: %w", err)
	}
	var n note
	if code != http.StatusCreated || json.Unmarshal(b, &n) != nil || n.ID <= 0 || n.Title != title || n.Body != body {
		return n, fmt.Errorf("POST /api/notes: status %d, want 201 and the note: %s", code, bytes.TrimSpace(b))
	}
	return n, nil
}

// has reports an error unless the server holds n, unchanged.
func (s server) has(ctx context.Context, n note) error {
	path := fmt.Sprintf("/api/notes/%d", n.ID)
	code, b, err := s.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	var got note
	if code != http.StatusOK || json.Unmarshal(b, &got) != nil || got != n {
		return fmt.Errorf("GET %s: status %d, want 200 and %+v: %s", path, code, n, bytes.TrimSpace(b))
	}
	return nil
}

// page fetches the status page with GET and HEAD and returns its body.
func (s server) page(ctx context.Context) ([]byte, error) {
	code, body, err := s.do(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return nil, fmt.Errorf("GET /: %w", err)
	}
	if code != http.StatusOK || !bytes.Contains(body, []byte("<html")) {
		return body, fmt.Errorf("GET /: status %d, want 200 and a page: %.200s", code, body)
	}
	code, head, err := s.do(ctx, http.MethodHead, "/", nil)
	if err != nil || code != http.StatusOK || len(head) != 0 {
		return body, fmt.Errorf("HEAD /: status %d, %d bytes, %v; want 200 and no body", code, len(head), err)
	}
	return body, nil
}
