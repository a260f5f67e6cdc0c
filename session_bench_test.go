package dbfallback

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// BenchmarkSessionHandler serves 30 concurrent requests whose handler runs
// one query, then 300ms of other work (a call to another service, say),
// on a pool of 10 connections; one op is the 30 requests, so ns/op is the
// time until the last one is answered. "session" is the session as it is;
// "session pinned" calls Conn first, which is what every session did
// before (the connection was held for the whole request); "pool" uses the
// DB directly, the floor.
func BenchmarkSessionHandler(b *testing.B) {
	const requests, work, conns = 30, 300 * time.Millisecond, 10
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			db := benchDB(b, dialect, WithPool(PoolConfig{MaxOpenConns: conns, MaxIdleConns: conns}))
			handlers := []struct {
				name string
				h    http.Handler
			}{
				{"session", Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s, _ := SessionFrom(r.Context())
					var n int
					if err := s.QueryRowContext(r.Context(), "SELECT 1").Scan(&n); err != nil {
						http.Error(w, err.Error(), 500)
					}
					time.Sleep(work)
				}))},
				{"session pinned", Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s, _ := SessionFrom(r.Context())
					if _, err := s.Conn(r.Context()); err != nil {
						http.Error(w, err.Error(), 500)
						return
					}
					var n int
					if err := s.QueryRowContext(r.Context(), "SELECT 1").Scan(&n); err != nil {
						http.Error(w, err.Error(), 500)
					}
					time.Sleep(work)
				}))},
				{"pool", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var n int
					if err := db.QueryRowContext(r.Context(), "SELECT 1").Scan(&n); err != nil {
						http.Error(w, err.Error(), 500)
					}
					time.Sleep(work)
				})},
			}
			for _, hh := range handlers {
				b.Run(hh.name, func(b *testing.B) {
					for b.Loop() {
						var wg sync.WaitGroup
						for range requests {
							wg.Add(1)
							go func() {
								defer wg.Done()
								rec := httptest.NewRecorder()
								hh.h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
								if rec.Code != 200 {
									b.Errorf("status %d: %s", rec.Code, rec.Body)
								}
							}()
						}
						wg.Wait()
					}
				})
			}
		})
	}
}
