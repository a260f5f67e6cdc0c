package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/dbfallback/dbfallback"
	"github.com/dbfallback/dbfallback/internal/secretgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fakeEnv(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDoctor(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    []string
		status int
		want   []string
	}{
		{
			name: "valid DATABASE_URL", status: 0,
			env:  []string{"DATABASE_URL", `"postgres://app:Hunter2#x@db.internal/app?pgbouncer=true"`},
			want: []string{"valid, used: postgres://app:xxxxx@db.internal:5432/app?default_query_exec_mode=exec", "note: removed surrounding double quotes", "1. postgres://app:xxxxx@db.internal:5432/app"},
		},
		{
			name: "nothing configured", status: 1,
			want: []string{"DATABASE_URL       not set", "No usable primary: no database URL configured.", "(SQLite file, ephemeral)", "(SQLite in memory, last resort, ephemeral)"},
		},
		{
			name: "broken value", status: 1,
			env:  []string{"DATABASE_URL", "postgres://app:Hunter2@db.internal:PORT/app"},
			want: []string{"rejected [placeholder]", "hint: replace it with the real port", "No usable primary: DATABASE_URL is not usable"},
		},
		{
			name: "check one value", status: 0,
			args: []string{"-url", "sqlite:////var/lib/app.db"},
			env:  []string{"DATABASE_URL", "mysql://ignored", "PGHOST", "ignored"},
			want: []string{"WithURL", "valid, used: file:/var/lib/app.db"},
		},
		{
			name: "space with blocked port", status: 0,
			env:  []string{"SPACE_ID", "me/app", "DATABASE_URL", "postgres://u:Hunter2@db.example.com:5432/app"},
			want: []string{"allows outbound connections only to ports 80, 443 and 8080"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			var out, errOut bytes.Buffer
			status := run(tt.args, fakeEnv(append(tt.env, "TMPDIR", t.TempDir())...), &out, &errOut)
			assert.Equal(t, tt.status, status, "%s", out.String())
			for _, w := range tt.want {
				assert.Contains(t, out.String(), w)
			}
			assert.NotContains(t, out.String(), "Hunter2")
			assert.NotContains(t, out.String(), "ignored")
		})
	}
}

func TestDoctorBadFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 2, run([]string{"-nope"}, fakeEnv(), &out, &errOut))
}

// TestDoctorStranded: rows a SQLite fallback took are listed with their
// tables and counts until -merged marks them.
func TestDoctorStranded(t *testing.T) {
	t.Chdir(t.TempDir())
	path := filepath.Join(t.TempDir(), "notes.db")
	down := fakeEnv("SQLITE_PATH", path, "TMPDIR", t.TempDir())
	db, err := dbfallback.Open(context.Background(), dbfallback.WithLookupEnv(down), dbfallback.WithInit(
		func(ctx context.Context, db *dbfallback.DB) error {
			_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT)")
			return err
		}))
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO notes (title) VALUES ('a'), ('b')")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	up := fakeEnv("SQLITE_PATH", path, "TMPDIR", t.TempDir(), "DATABASE_URL", "postgres://app:Hunter2@db.internal/app")
	var out, errOut bytes.Buffer
	assert.Equal(t, 0, run(nil, up, &out, &errOut))
	assert.Contains(t, out.String(), path+": 2 rows, written between")
	assert.Contains(t, out.String(), "notes: 2 rows (rowid > 0)")
	assert.Contains(t, out.String(), "doctor -merged "+path)
	assert.NotContains(t, out.String(), "Hunter2")

	out.Reset()
	assert.Equal(t, 0, run([]string{"-merged", path}, up, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "Marked the rows left in "+path+" as merged")
	out.Reset()
	assert.Equal(t, 0, run(nil, up, &out, &errOut))
	assert.Contains(t, out.String(), "Rows left in SQLite fallback files (written while the primary was not in use):\n  none")
	errOut.Reset()
	assert.Equal(t, 1, run([]string{"-merged", path}, up, &out, &errOut), "nothing left to mark")
	assert.Contains(t, errOut.String(), "no rows left by a fallback are recorded")
}

// TestDoctorSecretChannels runs the doctor on generated configurations
// (internal/secretgen: every family of input shapes, a random marker
// password) and checks that its output, standard error included, shows no
// piece of the marker, with the environment and with -url.
func TestDoctorSecretChannels(t *testing.T) {
	const perFamily = 40
	cfg := secretgen.Config{Host: "127.0.0.1", Port: "1"} // the doctor never connects
	for _, fam := range secretgen.Families {
		t.Run(fam.Name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			rng := rand.New(rand.NewPCG(9, uint64(len(fam.Name))))
			for i := 0; i < perFamily; i++ {
				c := secretgen.Generate(rng, fam, cfg)
				env := []string{"TMPDIR", t.TempDir()}
				for k, v := range c.Env {
					env = append(env, k, v)
				}
				if c.File != "" {
					p := filepath.Join(t.TempDir(), "secret")
					require.NoError(t, os.WriteFile(p, []byte(c.File), 0o600))
					env = append(env, "DATABASE_URL_FILE", p)
				}
				var out, errOut bytes.Buffer
				run(nil, fakeEnv(env...), &out, &errOut)
				if leaks := c.Leaks(out.String() + errOut.String()); len(leaks) > 0 {
					t.Fatalf("doctor shows %q\ncase %s\n%s%s", leaks, c, out.String(), errOut.String())
				}
				if v, ok := c.Env["DATABASE_URL"]; ok {
					out.Reset()
					run([]string{"-url", v}, fakeEnv(env...), &out, &errOut)
					if leaks := c.Leaks(out.String() + errOut.String()); len(leaks) > 0 {
						t.Fatalf("doctor -url shows %q\ncase %s\n%s", leaks, c, out.String())
					}
				}
			}
		})
	}
}
