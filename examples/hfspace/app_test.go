package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestApp returns an app on a SQLite file in a temporary directory,
// opened (open == true) or still opening.
func newTestApp(t *testing.T, open bool) *app {
	t.Helper()
	env := map[string]string{"SQLITE_PATH": filepath.Join(t.TempDir(), "notes.db")}
	a := newApp(slog.New(slog.DiscardHandler), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if open {
		a.open(context.Background())
		require.NotNil(t, a.db.Load())
	}
	t.Cleanup(func() { a.close() })
	return a
}

func call(t *testing.T, h http.Handler, method, path, contentType, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if b, _ := io.ReadAll(rec.Body); len(b) > 0 && strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	}
	return rec.Code, m, rec.Header()
}

func TestNotesCRUD(t *testing.T) {
	h := newTestApp(t, true).routes()
	code, m, hdr := call(t, h, "POST", "/api/notes", "application/json", `{"title":"first","body":"hello"}`)
	require.Equal(t, http.StatusCreated, code, "%v", m)
	id := int(m["id"].(float64))
	assert.Equal(t, "/api/notes/"+strconv.Itoa(id), hdr.Get("Location"))
	assert.Equal(t, "first", m["title"])

	code, m, _ = call(t, h, "GET", "/api/notes/"+strconv.Itoa(id), "", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "hello", m["body"])

	code, m, _ = call(t, h, "PUT", "/api/notes/"+strconv.Itoa(id), "application/json", `{"title":"renamed"}`)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "renamed", m["title"])
	assert.Equal(t, "", m["body"], "PUT replaces")

	code, m, _ = call(t, h, "GET", "/api/notes", "", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Len(t, m["notes"], 1)

	code, _, _ = call(t, h, "DELETE", "/api/notes/"+strconv.Itoa(id), "", "")
	assert.Equal(t, http.StatusNoContent, code)
	code, _, _ = call(t, h, "GET", "/api/notes/"+strconv.Itoa(id), "", "")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestBadRequests(t *testing.T) {
	h := newTestApp(t, true).routes()
	big := `{"title":"t","body":"` + strings.Repeat("x", maxBody) + `"}`
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"malformed json", "POST", "/api/notes", "application/json", `{"title":`, 400, "malformed_json"},
		{"not an object", "POST", "/api/notes", "application/json", `["x"]`, 400, "malformed_json"},
		{"empty body", "POST", "/api/notes", "application/json", ``, 400, "empty_body"},
		{"two objects", "POST", "/api/notes", "application/json", `{"title":"a"}{"title":"b"}`, 400, "malformed_json"},
		{"unknown field", "POST", "/api/notes", "application/json", `{"title":"a","color":"red"}`, 400, "malformed_json"},
		{"wrong type", "POST", "/api/notes", "application/json", `{"title":5}`, 400, "malformed_json"},
		{"missing title", "POST", "/api/notes", "application/json", `{"body":"x"}`, 422, "missing_title"},
		{"blank title", "POST", "/api/notes", "application/json", `{"title":"   "}`, 422, "missing_title"},
		{"title too long", "POST", "/api/notes", "application/json", `{"title":"` + strings.Repeat("é", maxTitle+1) + `"}`, 422, "title_too_long"},
		{"body too long", "POST", "/api/notes", "application/json", `{"title":"a","body":"` + strings.Repeat("x", maxNoteBody+1) + `"}`, 422, "body_too_long"},
		{"body over the limit", "POST", "/api/notes", "application/json", big, 413, "body_too_large"},
		{"wrong content type", "POST", "/api/notes", "text/xml", `<note/>`, 415, "unsupported_media_type"},
		{"unknown id", "GET", "/api/notes/424242", "", "", 404, "not_found"},
		{"unknown id update", "PUT", "/api/notes/424242", "application/json", `{"title":"x"}`, 404, "not_found"},
		{"unknown id delete", "DELETE", "/api/notes/424242", "", "", 404, "not_found"},
		{"bad id", "GET", "/api/notes/abc", "", "", 400, "bad_id"},
		{"zero id", "GET", "/api/notes/0", "", "", 400, "bad_id"},
		{"bad limit", "GET", "/api/notes?limit=9999", "", "", 400, "bad_limit"},
		{"method", "PATCH", "/api/notes/1", "", "", 405, "method_not_allowed"},
		{"method on collection", "DELETE", "/api/notes", "", "", 405, "method_not_allowed"},
		{"unknown endpoint", "GET", "/api/nope", "", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m, hdr := call(t, h, tt.method, tt.path, tt.ctype, tt.body)
			assert.Equal(t, tt.status, status)
			assert.Equal(t, "application/json", hdr.Get("Content-Type"))
			e, _ := m["error"].(map[string]any)
			require.NotNil(t, e, "a JSON error body: %v", m)
			assert.Equal(t, tt.code, e["code"])
			assert.NotEmpty(t, e["message"])
		})
	}
	code, _, _ := call(t, h, "POST", "/api/notes", "application/x-www-form-urlencoded", `{"title":"from curl -d"}`)
	assert.Equal(t, http.StatusCreated, code, "curl's default content type with a JSON body is accepted")
}

func TestBeforeTheDatabaseOpens(t *testing.T) {
	a := newTestApp(t, false)
	h := a.routes()
	code, m, _ := call(t, h, "GET", "/healthz", "", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", m["status"])
	code, m, _ = call(t, h, "GET", "/readyz", "", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "starting", m["status"])
	code, m, hdr := call(t, h, "GET", "/api/notes", "", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", hdr.Get("Retry-After"))
	assert.Equal(t, "starting", m["error"].(map[string]any)["code"])
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), "starting")

	a.open(context.Background())
	code, m, _ = call(t, h, "GET", "/readyz", "", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "sqlite", m["dialect"])
}

func TestStatusPage(t *testing.T) {
	h := newTestApp(t, true).routes()
	call(t, h, "POST", "/api/notes", "application/json", `{"title":"<script>alert(1)</script>","body":"b"}`)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	body := rec.Body.String()
	assert.Contains(t, body, `<span id="dialect" class="badge warn">sqlite</span>`)
	assert.Contains(t, body, "&lt;script&gt;", "titles are escaped")
	assert.NotContains(t, body, "<script>alert")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("HEAD", "/", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/missing", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}
