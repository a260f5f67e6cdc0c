package dbfallback

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzResolve feeds random environments through WithLookupEnv: the URL
// variable, a secret file's content, libpq variables and SQLITE_PATH.
// Resolve must not panic or hang, the chain must end in memory, and
// nothing it reports may hold a piece of PGPASSWORD, whose letters and
// digits are distinctive tokens (see tokenize). The URL forms' own leak
// properties are fuzzed by FuzzValidate and FuzzValidateSecret.
func FuzzResolve(f *testing.F) {
	for _, row := range loadCorpus(f)[:40] {
		f.Add(row.input, "postgres://u:pw@h/db\n", "db.internal", []byte("p@ss w0rd"), "data/app.db")
	}
	f.Add("", "", "", []byte(""), "")
	f.Add("  ", "\x00", "${PGHOST}", []byte("'"), "../../etc/x.db")
	f.Fuzz(func(t *testing.T, dbURL, fileContent, pghost string, rawPass []byte, sqlitePath string) {
		pass, tokens, ok := tokenize(rawPass)
		if !ok {
			return
		}
		dir := t.TempDir()
		secret := filepath.Join(dir, "secret")
		if err := os.WriteFile(secret, []byte(fileContent), 0o600); err != nil {
			t.Fatal(err)
		}
		// SQLITE_PATH stays inside the test's directory: Resolve probes it.
		sp := filepath.Join(dir, "sqlite", filepath.Clean("/"+sqlitePath))
		env := map[string]string{
			"DATABASE_URL":      dbURL,
			"DATABASE_URL_FILE": secret,
			"PGHOST":            pghost,
			"PGPASSWORD":        pass,
			"PGDATABASE":        "app",
			"SQLITE_PATH":       sp,
			"TMPDIR":            dir,
		}
		if dbURL == "" {
			delete(env, "DATABASE_URL")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := Resolve(ctx, WithLookupEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }), withDataDir(""))
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if len(r.Fallbacks) == 0 || !r.Fallbacks[len(r.Fallbacks)-1].Memory {
			t.Fatal("the chain must end in memory")
		}
		var out []string
		for _, s := range r.Sources {
			out = append(out, s.Detail, s.Target.String())
			if s.Err != nil {
				out = append(out, s.Err.Error())
			}
		}
		out = append(out, r.Reason(), r.Primary.String())
		text := strings.Join(out, "\n")
		for _, tok := range tokens {
			if strings.Contains(text, tok) && !strings.Contains(dbURL+fileContent+pghost, tok) {
				t.Fatalf("PGPASSWORD piece %q leaks:\n%s", tok, text)
			}
		}
	})
}
