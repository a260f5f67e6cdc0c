package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func findSource(r Resolution, name string) Source {
	for _, s := range r.Sources {
		if s.Name == name {
			return s
		}
	}
	return Source{}
}

func TestResolveSources(t *testing.T) {
	secretFile := func(t *testing.T, content string) string {
		p := filepath.Join(t.TempDir(), "db_url")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	tests := []struct {
		name       string
		opts       func(t *testing.T) []Option
		wantHost   string // "" means no primary
		wantSource string
		wantErrIn  map[string]error // source name -> error it must match
		reason     string           // substring of Resolution.Reason()
	}{
		{
			name:   "nothing configured",
			opts:   func(t *testing.T) []Option { return []Option{env()} },
			reason: "no database URL configured",
		},
		{
			name:       "DATABASE_URL",
			opts:       func(t *testing.T) []Option { return []Option{env("DATABASE_URL", "postgres://u:p@db.internal/app")} },
			wantHost:   "db.internal",
			wantSource: "DATABASE_URL",
		},
		{
			name: "WithURL wins over DATABASE_URL",
			opts: func(t *testing.T) []Option {
				return []Option{WithURL("postgres://opt/app"), env("DATABASE_URL", "postgres://envhost/app")}
			},
			wantHost: "opt", wantSource: "WithURL",
			wantErrIn: map[string]error{"DATABASE_URL": ErrShadowed},
		},
		{
			name: "blank WithURL counts as unset",
			opts: func(t *testing.T) []Option {
				return []Option{WithURL("  "), env("DATABASE_URL", "postgres://envhost/app")}
			},
			wantHost: "envhost", wantSource: "DATABASE_URL",
			wantErrIn: map[string]error{"WithURL": ErrEmpty},
		},
		{
			name: "empty DATABASE_URL falls through to PG variables",
			opts: func(t *testing.T) []Option {
				return []Option{env("DATABASE_URL", "", "PGHOST", "pghost", "PGDATABASE", "app", "PGPASSWORD", "hunter22")}
			},
			wantHost: "pghost", wantSource: "PG* variables",
			wantErrIn: map[string]error{"DATABASE_URL": ErrEmpty},
		},
		{
			name: "invalid DATABASE_URL is not replaced by PGHOST",
			opts: func(t *testing.T) []Option {
				return []Option{env("DATABASE_URL", "mysql://u:p@h/db", "PGHOST", "pghost")}
			},
			wantErrIn: map[string]error{"DATABASE_URL": ErrUnsupported, "PG* variables": ErrShadowed},
			reason:    "DATABASE_URL is not usable",
		},
		{
			name: "secret file with trailing newline",
			opts: func(t *testing.T) []Option {
				return []Option{env("DATABASE_URL_FILE", secretFile(t, "postgres://u:p@filehost/app\n"))}
			},
			wantHost: "filehost", wantSource: "DATABASE_URL_FILE",
		},
		{
			name: "secret file missing",
			opts: func(t *testing.T) []Option {
				return []Option{env("DATABASE_URL_FILE", filepath.Join(t.TempDir(), "nope"))}
			},
			wantErrIn: map[string]error{"DATABASE_URL_FILE": os.ErrNotExist},
			reason:    "DATABASE_URL_FILE is not usable",
		},
		{
			name:      "secret file is a directory",
			opts:      func(t *testing.T) []Option { return []Option{env("DATABASE_URL_FILE", t.TempDir())} },
			reason:    "is a directory",
			wantErrIn: map[string]error{"DATABASE_URL_FILE": nil},
		},
		{
			name: "secret file is huge",
			opts: func(t *testing.T) []Option {
				return []Option{env("DATABASE_URL_FILE", secretFile(t, strings.Repeat("x", maxSecretFile+1)))}
			},
			wantErrIn: map[string]error{"DATABASE_URL_FILE": errTooLarge},
		},
		{
			name:      "secret file is empty",
			opts:      func(t *testing.T) []Option { return []Option{env("DATABASE_URL_FILE", secretFile(t, "\n"))} },
			wantErrIn: map[string]error{"DATABASE_URL_FILE": ErrEmpty},
		},
		{
			name: "custom variable list",
			opts: func(t *testing.T) []Option {
				return []Option{WithEnvVars("POSTGRES_URL"), env("DATABASE_URL", "postgres://ignored/app", "POSTGRES_URL", "postgres://pgurl/app")}
			},
			wantHost: "pgurl", wantSource: "POSTGRES_URL",
		},
		{
			name: "PG variables with a template",
			opts: func(t *testing.T) []Option {
				return []Option{env("PGHOST", "${DB_HOST}", "PGDATABASE", "app")}
			},
			wantErrIn: map[string]error{"PG* variables": ErrPlaceholder},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolatedDirs(t)
			r, err := Resolve(context.Background(), append(tt.opts(t), withDataDir(""))...)
			require.NoError(t, err)
			if tt.wantHost == "" {
				assert.True(t, r.Primary.IsZero(), "unexpected primary %s", r.Primary)
			} else {
				require.False(t, r.Primary.IsZero(), "no primary; sources %+v", r.Sources)
				assert.Equal(t, tt.wantHost, r.Primary.Hosts[0].Name)
				assert.True(t, findSource(r, tt.wantSource).Chosen)
				assert.Empty(t, r.Reason())
			}
			for name, want := range tt.wantErrIn {
				s := findSource(r, name)
				require.Truef(t, s.Found, "source %s not recorded: %+v", name, r.Sources)
				require.Errorf(t, s.Err, "source %s", name)
				if want != nil {
					assert.ErrorIs(t, s.Err, want)
				}
			}
			if tt.reason != "" {
				assert.Contains(t, r.Reason(), tt.reason)
			}
			for _, s := range r.Sources {
				assert.NotContains(t, s.Detail, "hunter22")
				if s.Err != nil {
					assert.NotContains(t, s.Err.Error(), "hunter22")
				}
			}
			last := r.Fallbacks[len(r.Fallbacks)-1]
			assert.True(t, last.Memory, "the chain always ends in memory")
		})
	}
}

func TestResolvePGVariables(t *testing.T) {
	isolatedDirs(t)
	r, err := Resolve(context.Background(), withDataDir(""), env(
		"PGHOST", "pg.internal", "PGPORT", "6543", "PGUSER", "svc", "PGPASSWORD", "p@ss w0rd#1",
		"PGDATABASE", "orders", "PGSSLMODE", "require", "PGCONNECT_TIMEOUT", "7"))
	require.NoError(t, err)
	require.False(t, r.Primary.IsZero())
	p := r.Primary
	assert.Equal(t, []Host{{"pg.internal", 6543}}, p.Hosts)
	assert.Equal(t, "svc", p.User)
	assert.Equal(t, "orders", p.Database)
	pw, _ := p.Password()
	assert.Equal(t, "p@ss w0rd#1", pw, "PGPASSWORD is taken literally: no URL escaping applies")
	assert.Equal(t, "require", p.Params["sslmode"])
	assert.Equal(t, 7*time.Second, r.ConnectTimeout)
	s := findSource(r, "PG* variables")
	assert.Contains(t, s.Detail, "PGPASSWORD=xxxxx")
	assert.NotContains(t, s.Detail, "w0rd")
}

func TestResolveSQLitePaths(t *testing.T) {
	t.Run("defaults to ./data", func(t *testing.T) {
		work, tmp := isolatedDirs(t)
		r, err := Resolve(context.Background(), env("TMPDIR", tmp), withDataDir(""))
		require.NoError(t, err)
		require.Len(t, r.Fallbacks, 3, "every usable location, then memory")
		assert.Equal(t, filepath.Join("data", "app.db"), r.Fallbacks[0].Path)
		assert.True(t, r.Ephemeral(r.Fallbacks[0]), "an automatic location is ephemeral")
		assert.Equal(t, filepath.Join(tmp, "app.db"), r.Fallbacks[1].Path)
		assert.True(t, r.Fallbacks[2].Memory)
		_, err = os.Stat(filepath.Join(work, "data"))
		assert.ErrorIs(t, err, os.ErrNotExist, "Resolve creates no directory")
		entries, _ := os.ReadDir(work)
		assert.Empty(t, entries, "the write probe leaves nothing behind")
	})
	t.Run("/data first when it exists", func(t *testing.T) {
		isolatedDirs(t)
		data := t.TempDir()
		r, err := Resolve(context.Background(), env(), withDataDir(data))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(data, "app.db"), r.Fallbacks[0].Path)
		assert.True(t, r.Ephemeral(r.Fallbacks[0]))
		r, err = Resolve(context.Background(), env(), withDataDir(data), WithPersistent(true), WithSQLiteName("notes.db"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(data, "notes.db"), r.Fallbacks[0].Path)
		assert.False(t, r.Ephemeral(r.Fallbacks[0]), "WithPersistent vouches for the location")
	})
	t.Run("explicit path is persistent", func(t *testing.T) {
		isolatedDirs(t)
		dir := t.TempDir()
		for _, opts := range [][]Option{
			{WithSQLitePath(filepath.Join(dir, "x.db")), env()},
			{env("SQLITE_PATH", filepath.Join(dir, "x.db"))},
			{env("SQLITE_PATH", "sqlite:///"+filepath.Join(dir, "x.db"))},
		} {
			r, err := Resolve(context.Background(), append(opts, withDataDir(""))...)
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(dir, "x.db"), r.Fallbacks[0].Path)
			assert.False(t, r.Ephemeral(r.Fallbacks[0]))
		}
		r, err := Resolve(context.Background(), env("SQLITE_PATH", dir), withDataDir(""))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, "app.db"), r.Fallbacks[0].Path, "a directory holds <name>")
	})
	t.Run("unusable locations are skipped with a reason", func(t *testing.T) {
		isolatedDirs(t)
		notDir := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(notDir, nil, 0o600))
		fuse := t.TempDir()
		tmp := t.TempDir()
		r, err := Resolve(context.Background(),
			env("SQLITE_PATH", "/sys/app.db", "TMPDIR", tmp),
			withDataDir(fuse),
			withFSType(func(dir string) string {
				if strings.HasPrefix(dir, fuse) {
					return "FUSE"
				}
				return ""
			}))
		require.NoError(t, err)
		require.Len(t, r.Paths, 4)
		assert.ErrorContains(t, r.Paths[0].Err, "not writable", "/sys refuses writes even to root")
		assert.ErrorContains(t, r.Paths[1].Err, "FUSE")
		assert.NoError(t, r.Paths[2].Err)
		assert.True(t, r.Paths[2].Chosen)
		assert.Equal(t, filepath.Join("data", "app.db"), r.Fallbacks[0].Path)

		r, err = Resolve(context.Background(), env("SQLITE_PATH", filepath.Join(notDir, "app.db")), withDataDir(""))
		require.NoError(t, err)
		assert.ErrorContains(t, r.Paths[0].Err, "is not a directory")
		r, err = Resolve(context.Background(), env("SQLITE_PATH", t.TempDir()+"/"), withDataDir(""))
		require.NoError(t, err)
		assert.NoError(t, r.Paths[0].Err, "a directory given as SQLITE_PATH holds app.db")
		for _, memory := range []string{":memory:", "sqlite://:memory:"} {
			r, err = Resolve(context.Background(), env("SQLITE_PATH", memory), withDataDir(""))
			require.NoError(t, err)
			assert.ErrorContains(t, r.Paths[0].Err, "does not name a SQLite file", memory)
			assert.NotContains(t, r.Paths[0].Err.Error(), "secret", "%s is not mistaken for user:password", memory)
		}
	})
	t.Run("every location unusable leaves memory", func(t *testing.T) {
		isolatedDirs(t)
		r, err := Resolve(context.Background(), env("TMPDIR", "/sys"), withDataDir(""),
			withFSType(func(string) string { return "NFS" }))
		require.NoError(t, err)
		require.Len(t, r.Fallbacks, 1)
		assert.True(t, r.Fallbacks[0].Memory)
		assert.True(t, r.Ephemeral(r.Fallbacks[0]))
	})
}

func TestResolveContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Resolve(ctx, env())
	assert.True(t, errors.Is(err, context.Canceled))
}

func TestResolveSpace(t *testing.T) {
	isolatedDirs(t)
	r, err := Resolve(context.Background(), env("SPACE_ID", "me/notes"), withDataDir(""))
	require.NoError(t, err)
	assert.True(t, r.InSpace())
	assert.Equal(t, "me/notes", r.SpaceID)
}

// TestResolveSecretFileForms: a secret file holds the value alone, a JSON
// secret, or .env lines of which exactly one is named after the variable
// the file stands for; nothing of a file of several lines is echoed.
func TestResolveSecretFileForms(t *testing.T) {
	tests := []struct {
		name    string
		vars    []string // WithEnvVars; nil for the default
		content string
		host    string // "" when rejected
		code    Code
		note    string
	}{
		{name: "one .env line", content: "DATABASE_URL=postgres://u:Zq7Pw@filehost/app\n", host: "filehost", note: "read the DATABASE_URL line (line 1)"},
		{name: ".env file with other lines", content: "# settings\nPOSTGRES_PASSWORD=Zq7Pw\nexport DATABASE_URL='postgres://u:Zq7Pw@filehost/app'\r\nDEBUG=1\n",
			host: "filehost", note: "(line 3)"},
		{name: "named after WithEnvVars", vars: []string{"POSTGRES_URL"}, content: "DATABASE_URL=postgres://u:Zq7Pw@wrong/app\nPOSTGRES_URL = postgres://u:Zq7Pw@filehost/app\n",
			host: "filehost", note: "read the POSTGRES_URL line (line 2)"},
		{name: "JSON secret over several lines", content: "{\n \"host\": \"filehost\",\n \"password\": \"Zq7Pw\"\n}\n", host: "filehost", note: "JSON secret"},
		{name: "two lines named after the variable", content: "DATABASE_URL=postgres://u:Zq7Pw@a/app\nDATABASE_URL=postgres://u:Zq7Pw@b/app\n", code: CodePastedAssignment},
		{name: "compose file", content: "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: Zq7Pw\n", code: CodeControlChar},
		{name: "URL then a bare secret", content: "postgres://u:Zq7Pw@filehost/app\nZq7Pw-alone\n", code: CodeControlChar},
		{name: "a variable of another name only", content: "DATABASE_URL_OLD=postgres://u:Zq7Pw@a/app\n", code: CodePastedAssignment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolatedDirs(t)
			p := filepath.Join(t.TempDir(), "secret")
			require.NoError(t, os.WriteFile(p, []byte(tt.content), 0o600))
			fileVar := "DATABASE_URL_FILE"
			opts := []Option{withDataDir("")}
			if tt.vars != nil {
				opts = append(opts, WithEnvVars(tt.vars...))
				fileVar = tt.vars[0] + "_FILE"
			}
			r, err := Resolve(context.Background(), append(opts, env(fileVar, p))...)
			require.NoError(t, err)
			s := findSource(r, fileVar)
			if tt.code != "" {
				var ve *ValidationError
				require.ErrorAs(t, s.Err, &ve)
				assert.Equal(t, tt.code, ve.Code, "%v", s.Err)
			} else {
				require.NoError(t, s.Err)
				assert.Equal(t, tt.host, r.Primary.Hosts[0].Name)
				assert.True(t, containsNote(r.Primary.Notes, tt.note), "notes %q", r.Primary.Notes)
			}
			assertNoSecretIn(t, "resolution", r, "Zq7Pw-alone", "POSTGRES_PASSWORD=Zq7Pw")
			assert.NotContains(t, r.Reason()+fmt.Sprint(r)+s.Detail, "Zq7Pw")
		})
	}
	t.Run("a URL in the _FILE variable is not echoed", func(t *testing.T) {
		isolatedDirs(t)
		r, err := Resolve(context.Background(), withDataDir(""), env("DATABASE_URL_FILE", "postgres://u:Zq7Pw@h/app"))
		require.NoError(t, err)
		s := findSource(r, "DATABASE_URL_FILE")
		require.Error(t, s.Err)
		assert.NotContains(t, s.Err.Error()+s.Detail+r.Reason(), "Zq7Pw")
	})
}
