package dbfallback

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthJSON fetches the health handler's response.
func healthJSON(t *testing.T, db *DB, method string) (int, map[string]any, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	db.HealthHandler().ServeHTTP(rec, httptest.NewRequest(method, "/healthz", nil))
	var m map[string]any
	if method == http.MethodGet {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m), rec.Body.String())
	}
	return rec.Code, m, rec.Body.String()
}

func TestHealthHandler(t *testing.T) {
	t.Run("fallback", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("DATABASE_URL", "mysql://root:Hunter22@db/app"), withDataDir(""))
		require.NoError(t, err)
		defer db.Close()
		code, m, body := healthJSON(t, db, http.MethodGet)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "up", m["status"])
		assert.Equal(t, "sqlite", m["dialect"])
		assert.Equal(t, true, m["fallback"])
		assert.Equal(t, true, m["ephemeral"])
		assert.Contains(t, m["reason"], "DATABASE_URL is not usable")
		assert.Equal(t, "file:data/app.db", m["target"])
		assert.IsType(t, float64(0), m["latency_ms"])
		assert.NotContains(t, m, "primary_up")
		assert.NotContains(t, m, "error")
		assert.NotContains(t, body, "Hunter22")

		code, _, body = healthJSON(t, db, http.MethodHead)
		assert.Equal(t, http.StatusOK, code)
		assert.Empty(t, body)
		rec := httptest.NewRecorder()
		db.HealthHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/healthz", nil))
		assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	})
	t.Run("primary", func(t *testing.T) {
		url := testPostgresURL(t)
		db, _ := openWith(t, url)
		code, m, body := healthJSON(t, db, http.MethodGet)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "up", m["status"])
		assert.Equal(t, "postgres", m["dialect"])
		assert.Equal(t, false, m["fallback"])
		assert.Equal(t, false, m["ephemeral"])
		assert.NotContains(t, m, "reason")
		assert.True(t, strings.HasPrefix(m["target"].(string), "postgres://"))
		assert.Contains(t, m["target"], ":xxxxx@")
		pw, _ := db.Target().Password()
		assert.NotContains(t, body, pw)
		assert.NotContains(t, body, escapeComponent(pw))
	})
	t.Run("stopped database", func(t *testing.T) {
		srv := startPGServer(t)
		db, _ := openWith(t, strings.Replace(srv.url(), "postgres@", "postgres:Hunter22@", 1))
		require.Equal(t, Postgres, db.Dialect())
		srv.stop("immediate")
		code, m, body := healthJSON(t, db, http.MethodGet)
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "down", m["status"])
		assert.NotEmpty(t, m["error"])
		assert.NotContains(t, body, "Hunter22")
		code, _, _ = healthJSON(t, db, http.MethodHead)
		assert.Equal(t, http.StatusServiceUnavailable, code)
	})
	t.Run("probe result", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("DATABASE_URL", "postgres://u:Hunter22@127.0.0.1:1/app"), withDataDir(""),
			WithRecoveryProbe(20*time.Millisecond, nil), WithConnectTimeout(200*time.Millisecond))
		require.NoError(t, err)
		defer db.Close()
		require.Eventually(t, func() bool {
			_, m, _ := healthJSON(t, db, http.MethodGet)
			return m["primary_up"] == false
		}, 5*time.Second, 20*time.Millisecond)
	})
}
