package dbfallback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback/internal/secretgen"
	"github.com/stretchr/testify/require"
)

// teeHandler sends every record to two handlers (slog.NewMultiHandler
// needs Go 1.26; the module supports 1.25).
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	return errors.Join(h.a.Handle(ctx, r.Clone()), h.b.Handle(ctx, r.Clone()))
}
func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}
func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h.a.WithGroup(g), h.b.WithGroup(g)}
}

// channelRun collects what every channel showed for one case.
type channelRun struct {
	texts map[string]string
}

func (r *channelRun) add(name, text string) { r.texts[name] = text }

// addValue records every printed form of v (see renderAll) and every
// string reflection reaches in it.
func (r *channelRun) addValue(name string, v any) {
	for ch, text := range renderAll(v) {
		r.add(name+" via "+ch, text)
	}
	r.add(name+" reflected strings", strings.Join(walkStrings(v), "\n"))
}

// failOnDNS is the lookup Open gets in generated cases: every case points
// at loopback, and nothing else may leave the machine. (pgx asks its
// LookupFunc for IP literals too.)
func failOnDNS(ctx context.Context, host string) ([]string, error) {
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return []string{host}, nil
	}
	return nil, fmt.Errorf("lookup %s: no DNS in this test", host)
}

// runSecretCase feeds c to Validate, Resolve and, when open is set, Open,
// and returns the text of every channel: errors and their fields, notes,
// every exported type and the *DB through every printer, the log (text
// and JSON), Health and the HealthHandler body. dir is the case's own
// directory (the working directory of the test).
func runSecretCase(tb testing.TB, c secretgen.Case, dir string, open bool) *channelRun {
	tb.Helper()
	run := &channelRun{texts: map[string]string{}}
	env := map[string]string{"TMPDIR": dir}
	for k, v := range c.Env {
		env[k] = v
	}
	if c.File != "" {
		p := filepath.Join(dir, "secret")
		require.NoError(tb, os.WriteFile(p, []byte(c.File), 0o600))
		env["DATABASE_URL_FILE"] = p
		t, err := Validate(c.File)
		run.addValue("Validate(file) target", t)
		if err != nil {
			run.addValue("Validate(file) error", err)
		}
	}
	if v, ok := env["DATABASE_URL"]; ok {
		t, err := Validate(v)
		run.addValue("Validate target", t)
		run.add("notes", strings.Join(t.Notes, "\n"))
		if err != nil {
			run.addValue("Validate error", err)
		}
	}
	lookup := WithLookupEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Resolve(ctx, lookup, withDataDir(""))
	require.NoError(tb, err)
	run.addValue("Resolution", r)
	run.add("Reason", r.Reason())
	for i, s := range r.Sources {
		run.addValue("Source "+strconv.Itoa(i), s)
	}
	for i, p := range r.Paths {
		run.addValue("SQLitePath "+strconv.Itoa(i), p)
	}
	if !open {
		return run
	}
	var text, js bytes.Buffer
	logger := slog.New(teeHandler{slog.NewTextHandler(&text, nil), slog.NewJSONHandler(&js, nil)})
	db, err := Open(ctx, lookup, withDataDir(""), withLookupFunc(failOnDNS), WithConnectTimeout(2*time.Second), WithLogger(logger))
	require.NoError(tb, err, "the default strategy always opens")
	defer func() {
		// Reflection reads every field of the DB, background goroutines'
		// state included: walk it once they have stopped.
		db.Close()
		run.add("*DB reflected strings", strings.Join(walkStrings(db), "\n"))
	}()
	for ch, text := range renderAll(db) {
		run.add("*DB via "+ch, text)
	}
	for i, a := range db.Attempts() {
		run.addValue("Attempt "+strconv.Itoa(i), a)
	}
	run.addValue("Health", db.Health(ctx))
	rec := httptest.NewRecorder()
	db.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	run.add("HealthHandler body", rec.Body.String())
	logger.Info("app", "db", db, "target", db.Target(), "attempts", db.Attempts())
	run.add("log text", text.String())
	run.add("log JSON", js.String())
	return run
}

// checkSecretCase fails for every channel that shows a token of c's
// marker, and returns how many channels it checked.
func checkSecretCase(tb testing.TB, c secretgen.Case, run *channelRun) int {
	tb.Helper()
	names := make([]string, 0, len(run.texts))
	for name := range run.texts {
		names = append(names, name)
	}
	sort.Strings(names)
	var leaking []string
	first := ""
	for _, name := range names {
		if leaks := c.Leaks(run.texts[name]); len(leaks) > 0 {
			if first == "" {
				first = fmt.Sprintf("%s shows %q:\n%.600s", name, leaks, run.texts[name])
			}
			leaking = append(leaking, name)
		}
	}
	if len(leaking) > 0 {
		tb.Errorf("case %s\nleaks in %d of %d channels; first: %s\nall: %s", c, len(leaking), len(names), first,
			strings.Join(leaking, ", "))
	}
	return len(names)
}

// closedLoopback is a loopback address where nothing listens: generated
// cases point there, so opening one costs a refused connection.
func closedLoopback(tb testing.TB) secretgen.Config {
	return secretgen.Config{Host: "127.0.0.1", Port: strconv.Itoa(freePort(tb))}
}

// secretCasesPerFamily is how many cases of each family TestSecretChannels
// tries (-secret-cases overrides, for long local runs).
var secretCasesPerFamily = func() int {
	if n, err := strconv.Atoi(os.Getenv("DBFALLBACK_SECRET_CASES")); err == nil && n > 0 {
		return n
	}
	return 60
}()

// TestSecretChannels is the property test of the redaction promise: for
// every family of input shapes (internal/secretgen), random marker
// passwords never appear, whole or in part, in any channel. A fixed seed
// keeps CI reproducible; DBFALLBACK_SECRET_CASES and
// DBFALLBACK_SECRET_SEED widen it locally. Every fourth case also goes
// through Open, so that the *DB, its attempts, health and log are checked.
func TestSecretChannels(t *testing.T) {
	work, _ := isolatedDirs(t)
	seed := uint64(9)
	if s, err := strconv.ParseUint(os.Getenv("DBFALLBACK_SECRET_SEED"), 10, 64); err == nil {
		seed = s
	}
	cfg := closedLoopback(t)
	for _, fam := range secretgen.Families {
		t.Run(fam.Name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(len(fam.Name))))
			channels := 0
			for i := 0; i < secretCasesPerFamily; i++ {
				c := secretgen.Generate(rng, fam, cfg)
				dir := filepath.Join(work, fmt.Sprintf("%s-%d", fam.Name, i))
				require.NoError(t, os.MkdirAll(dir, 0o700))
				channels += checkSecretCase(t, c, runSecretCase(t, c, dir, i%4 == 0))
				if t.Failed() {
					return // one family's first leak is enough to read
				}
			}
			t.Logf("%s: %d cases, %d channel outputs checked, 0 leaks", fam.Name, secretCasesPerFamily, channels)
		})
	}
}

// FuzzSecretChannels is TestSecretChannels driven by the fuzzer: its bytes
// pick the family and seed every choice of the case, and every case goes
// through Open. Run it for long: go test -run '^$' -fuzz FuzzSecretChannels.
func FuzzSecretChannels(f *testing.F) {
	for i := range secretgen.Families {
		f.Add([]byte{byte(i), 1, 2, 3})
		f.Add([]byte{byte(i), 0xff, 0x10})
	}
	cfg := closedLoopback(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		t.Chdir(dir)
		c := secretgen.FromBytes(data, cfg)
		checkSecretCase(t, c, runSecretCase(t, c, dir, true))
	})
}
