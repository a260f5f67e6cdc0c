package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chiRouter is a small notes API as a chi service writes it: Middleware
// puts a session in every request, handlers use SessionFrom.
func chiRouter(db *dbfallback.DB) http.Handler {
	r := chi.NewRouter()
	r.Use(dbfallback.Middleware(db))
	r.Post("/notes/{id}", func(w http.ResponseWriter, r *http.Request) {
		s, err := dbfallback.SessionFrom(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var body struct{ Title string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := s.ExecContext(r.Context(), "INSERT INTO chi_notes (id, title) VALUES ($1, $2)", chi.URLParam(r, "id"), body.Title); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	r.Get("/notes/{id}", func(w http.ResponseWriter, r *http.Request) {
		s, err := dbfallback.SessionFrom(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var title string
		if err := s.QueryRowContext(r.Context(), "SELECT title FROM chi_notes WHERE id = $1", chi.URLParam(r, "id")).Scan(&title); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"title": title})
	})
	r.Get("/healthz", db.HealthHandler().ServeHTTP)
	return r
}

// TestChi: chi with Middleware on both dialects: a write, a read, a
// conflict, and the health handler; no connection is held afterwards.
func TestChi(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			_, err := db.Exec("DROP TABLE IF EXISTS chi_notes")
			require.NoError(t, err)
			_, err = db.Exec("CREATE TABLE chi_notes (id BIGINT PRIMARY KEY, title TEXT NOT NULL)")
			require.NoError(t, err)
			srv := httptest.NewServer(chiRouter(db))
			defer srv.Close()
			post := func(id, title string) int {
				resp, err := http.Post(srv.URL+"/notes/"+id, "application/json", strings.NewReader(`{"title":"`+title+`"}`))
				require.NoError(t, err)
				resp.Body.Close()
				return resp.StatusCode
			}
			assert.Equal(t, http.StatusCreated, post("7", "hello"))
			assert.Equal(t, http.StatusConflict, post("7", "again"))
			resp, err := http.Get(srv.URL + "/notes/7")
			require.NoError(t, err)
			var got map[string]string
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			resp.Body.Close()
			assert.Equal(t, "hello", got["title"])
			resp, err = http.Get(srv.URL + "/healthz")
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Zero(t, db.Stats().InUse, "every session released its connection")
		})
	}
}
