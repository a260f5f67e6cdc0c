package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbfallback/dbfallback"
)

// app holds the server's state. The database opens in the background:
// until it does, db is nil and the API answers 503.
type app struct {
	logger *slog.Logger
	lookup func(string) (string, bool)
	db     atomic.Pointer[dbfallback.DB]

	closeOnce sync.Once
	closeErr  error
}

func newApp(logger *slog.Logger, lookup func(string) (string, bool)) *app {
	return &app{logger: logger, lookup: lookup}
}

// open opens the database with dbfallback. With the default strategy it
// fails only when ctx ends (the server is shutting down) or the schema
// cannot be created. When DB_OPEN_TIMEOUT passes first (a machine too
// loaded for even SQLite to open in the time dbfallback kept for it), it
// opens SQLite without a deadline rather than stay unready.
func (a *app) open(ctx context.Context) {
	opts := []dbfallback.Option{
		dbfallback.WithLookupEnv(a.lookup),
		dbfallback.WithLogger(a.logger),
		dbfallback.WithSQLiteName("notes.db"),
		dbfallback.WithInit(createSchema),
	}
	octx := ctx
	if d := a.openTimeout(); d > 0 {
		var cancel context.CancelFunc
		octx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	db, err := dbfallback.Open(octx, opts...)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		a.logger.Warn("hfspace: the database did not open within DB_OPEN_TIMEOUT; opening SQLite without a deadline", "error", err.Error())
		db, err = dbfallback.Open(ctx, append(opts, dbfallback.WithStrategy(dbfallback.SQLiteOnly))...)
	}
	if err != nil {
		a.logger.Error("hfspace: no database", "error", err.Error())
		return
	}
	a.db.Store(db)
}

// openTimeout reads DB_OPEN_TIMEOUT, the longest the database may take to
// open (a Go duration such as "10s", or whole seconds); 0, the default,
// means no bound but the connect timeout. Within it, dbfallback keeps room
// for the SQLite fallback, so a silent primary still leaves the Space
// ready in time.
func (a *app) openTimeout() time.Duration {
	v, ok := a.lookup("DB_OPEN_TIMEOUT")
	if !ok || strings.TrimSpace(v) == "" {
		return 0
	}
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		a.logger.Warn("hfspace: DB_OPEN_TIMEOUT is not a positive duration; ignored", "value", v)
		return 0
	}
	return d
}

// close closes the database if it opened; safe to call more than once.
func (a *app) close() error {
	a.closeOnce.Do(func() {
		if db := a.db.Load(); db != nil {
			a.closeErr = db.Close()
		}
	})
	return a.closeErr
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		db := a.db.Load()
		if db == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
			return
		}
		db.HealthHandler().ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /{$}", a.page)
	mux.Handle("/api/notes", a.api(a.notes))
	mux.Handle("/api/notes/{id}", a.api(a.note))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return securityHeaders(mux)
}

// api wraps an API handler: 503 until the database is open, then the
// request's session from dbfallback.Middleware, and a JSON 500 (never a
// stack trace) when the handler panics.
func (a *app) api(h func(w http.ResponseWriter, r *http.Request, s *dbfallback.Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db := a.db.Load()
		if db == nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "starting", "the database is not open yet; retry shortly")
			return
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.logger.Error("hfspace: handler panic", "path", r.URL.Path, "panic", p)
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		dbfallback.Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, err := dbfallback.SessionFrom(r.Context())
			if err != nil {
				a.internal(w, r, err)
				return
			}
			h(w, r, s)
		})).ServeHTTP(w, r)
	})
}

// internal logs err and answers 500 without details.
func (a *app) internal(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	a.logger.Error("hfspace: request failed", "path", r.URL.Path, "error", err.Error())
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
