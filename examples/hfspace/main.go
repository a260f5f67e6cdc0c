// Command hfspace is a small notes API that deploys as a Hugging Face Space
// (Docker) and runs with no configuration at all: PostgreSQL when
// DATABASE_URL (or DATABASE_URL_FILE, or the PG* variables) points at one
// that answers, SQLite otherwise, chosen by dbfallback.
//
// It listens on 0.0.0.0:$PORT (default 7860) at once and opens the database
// in the background, so the Space's health check passes from the first
// moment:
//
//	GET  /healthz          200 while the process runs
//	GET  /readyz           503 until the database is open, then its health JSON
//	GET  /                 HTML status page (also HEAD)
//	GET  /api/notes        list notes
//	POST /api/notes        create {"title": "...", "body": "..."}
//	GET  /api/notes/{id}   one note
//	PUT  /api/notes/{id}   replace title and body
//	DELETE /api/notes/{id} delete
//
// DB_OPEN_TIMEOUT (for example "10s") bounds how long the database may take
// to open; dbfallback keeps part of it for the SQLite fallback, so a silent
// PostgreSQL still leaves the Space ready within it (and should even SQLite
// miss it, SQLite opens without a deadline).
//
// SIGTERM or SIGINT stops accepting connections, drains requests (up to
// 10s) and closes the database; a database still opening is abandoned.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, logger, os.LookupEnv); err != nil {
		logger.Error("hfspace: exiting", "error", err.Error())
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, logger *slog.Logger, lookup func(string) (string, bool)) error {
	port, ok := lookup("PORT")
	if !ok || port == "" {
		port = "7860"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", port))
	if err != nil {
		return fmt.Errorf("listen on port %s: %w", port, err)
	}
	app := newApp(logger, lookup)
	srv := &http.Server{
		Handler:           app.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("hfspace: listening", "addr", ln.Addr().String())

	openCtx, cancelOpen := context.WithCancel(ctx)
	defer cancelOpen()
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		app.open(openCtx)
	}()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("hfspace: shutting down")
	cancelOpen()
	<-opened
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if cerr := app.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return err
	}
	logger.Info("hfspace: stopped")
	return nil
}
