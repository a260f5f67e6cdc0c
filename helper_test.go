package dbfallback

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// corpusRow is one line of testdata/urls.tsv.
type corpusRow struct {
	line   int
	input  string
	expect string // "postgres", "sqlite" or a Code
	why    string
	source string
}

// loadCorpus reads testdata/urls.tsv.
func loadCorpus(tb testing.TB) []corpusRow {
	tb.Helper()
	f, err := os.Open("testdata/urls.tsv")
	require.NoError(tb, err)
	defer f.Close()
	var rows []corpusRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		require.Lenf(tb, cols, 4, "testdata/urls.tsv:%d: want 4 tab-separated columns", n)
		input, err := strconv.Unquote(cols[0])
		require.NoErrorf(tb, err, "testdata/urls.tsv:%d: input must be a Go string literal", n)
		rows = append(rows, corpusRow{line: n, input: input, expect: cols[1], why: cols[2], source: cols[3]})
	}
	require.NoError(tb, sc.Err())
	return rows
}

// fragments returns the alphanumeric runs of s that are at least min bytes
// long: the pieces of a password that would identify it if they leaked.
func fragments(s string, min int) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		if len(f) >= min {
			out = append(out, f)
		}
	}
	return out
}

// assertNoFragment fails when text contains any fragment of secret.
func assertNoFragment(tb testing.TB, text, secret, context string) {
	tb.Helper()
	for _, f := range fragments(secret, 3) {
		if strings.Contains(text, f) {
			tb.Errorf("%s leaks password fragment %q: %s", context, f, text)
		}
	}
}

// env is a fake environment for WithLookupEnv.
func env(kv ...string) Option {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	if _, ok := m["TMPDIR"]; !ok {
		// isolatedDirs sets the test's TMPDIR: without it, the machine's
		// /tmp/app.db would be a location of every test.
		if v, ok := os.LookupEnv("TMPDIR"); ok {
			m["TMPDIR"] = v
		}
	}
	return WithLookupEnv(func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	})
}

// isolatedDirs makes a test independent of the machine: the working
// directory, TMPDIR and /data all live under t.TempDir().
func isolatedDirs(t testing.TB) (work, tmp string) {
	t.Helper()
	base := t.TempDir()
	work, tmp = base+"/work", base+"/tmp"
	require.NoError(t, os.MkdirAll(work, 0o755))
	require.NoError(t, os.MkdirAll(tmp, 0o755))
	t.Chdir(work)
	t.Setenv("TMPDIR", tmp) // read by env
	return work, tmp
}

// testPostgresURL returns the URL of the real PostgreSQL server that
// .ci/run starts, or skips the test with a one-line reason when none is
// configured. When the variable is set, callers must fail (never skip) if
// the server does not answer.
func testPostgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if u == "" {
		tb.Skip("needs PostgreSQL: set DBFALLBACK_TEST_DATABASE_URL (.ci/run starts a server and sets it)")
	}
	return u
}

// slogJSON is a JSON logger writing to w.
func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// firstError keeps the first error recorded by concurrent goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
