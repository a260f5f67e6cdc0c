package dbfallback

import (
	"encoding/json"
	"net/http"
)

// HealthHandler serves [DB.Health] as JSON for GET and HEAD: status 200
// when the database answers a ping within 2s, 503 when it does not. The
// body holds status, dialect, fallback, reason, ephemeral, the redacted
// target, latency_ms and, while a recovery probe runs, primary_up; never a
// secret. Other methods get 405.
func (db *DB) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := db.Health(r.Context())
		body, err := json.Marshal(h)
		if err != nil {
			http.Error(w, "health encoding failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if h.Status != "up" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if r.Method == http.MethodGet {
			w.Write(append(body, '\n'))
		}
	})
}
