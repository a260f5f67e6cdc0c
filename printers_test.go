package dbfallback

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryTypePrintsRedacted puts secrets where configuration puts them
// (a URL's password, sslpassword, a key named like a secret, go-sqlite3's
// _auth_pass, a database URL put in SQLITE_PATH by mistake, an invalid
// DATABASE_URL) and prints every exported type that can carry one, and a
// *DB, through every channel: fmt verbs, slog text and JSON, encoding/json,
// encoding.TextMarshaler, error text, and every string reflection reaches.
func TestEveryTypePrintsRedacted(t *testing.T) {
	const (
		pw     = "Zq7Pw#x@y/Pass word"
		sslpw  = "Zq7SslPassPhrase"
		token  = "Zq7TokenValue99"
		sqlpw  = "Zq7SqliteAuth"
		badpw  = "Zq7InvalidUrlPass"
		pathpw = "Zq7SqlitePathPass"
	)
	secrets := []string{pw, sslpw, token, sqlpw, badpw, pathpw}
	isolatedDirs(t)
	port := freePort(t) // refused: Open falls back to SQLite
	primary := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/app?sslmode=disable&auth_token=%s&sslpassword=%s",
		escapeComponent(pw), port, token, sslpw)

	tg, err := Validate(primary)
	require.NoError(t, err)
	sq, err := Validate("file:app.db?_auth_user=u&_auth_pass=" + sqlpw)
	require.NoError(t, err)
	_, verr := Validate("postgres://app:" + badpw + "@db.example.com:99999/app")
	require.Error(t, verr)

	var logs bytes.Buffer
	opts := []Option{
		WithURL(primary),
		env("SQLITE_PATH", "postgres://u:"+pathpw+"@db.example.com/app"),
		withDataDir(""), WithConnectTimeout(time.Second),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
	}
	r, err := Resolve(context.Background(), opts...)
	require.NoError(t, err)
	rBad, err := Resolve(context.Background(), env("DATABASE_URL", "postgres://app:"+badpw+"@db.example.com:notaport/app"), withDataDir(""))
	require.NoError(t, err)
	require.True(t, rBad.Primary.IsZero())

	db, err := Open(context.Background(), append(opts, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))...)
	require.NoError(t, err)
	defer db.Close()
	require.True(t, db.Fallback(), "the refused primary leads to SQLite")
	health := db.Health(context.Background())
	rec := httptest.NewRecorder()
	db.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))

	values := map[string]any{
		"Target":            tg,
		"SQLite Target":     sq,
		"*ValidationError":  verr,
		"Resolution":        r,
		"invalid primary":   rBad,
		"Source":            r.Sources[0],
		"invalid Source":    rBad.Sources[0],
		"SQLitePath":        r.Paths[0],
		"Attempt":           db.Attempts()[0],
		"[]Attempt":         db.Attempts(),
		"Health":            health,
		"Host":              tg.Hosts[0],
		"Dialect":           tg.Dialect,
		"Code":              CodeBadPort,
		"PoolConfig":        PoolConfig{},
		"Strategy":          PreferPrimary,
		"error from Reason": db.Reason(),
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			assertNoSecretIn(t, name, v, secrets...)
		})
	}
	t.Run("*DB", func(t *testing.T) {
		// Printed while open (Format, String, LogValue, JSON take the DB's
		// lock), walked by reflection only once closed: the background
		// integrity check writes the fields reflection reads.
		assertNoSecretText(t, "*DB %+v while open", fmt.Sprintf("%+v %#v %v %s", db, db, db, db), secrets...)
		require.NoError(t, db.Close())
		assertNoSecretIn(t, "*DB", db, secrets...)
	})
	t.Run("logs and health body", func(t *testing.T) {
		assertNoSecretText(t, "log lines", logs.String(), secrets...)
		assertNoSecretText(t, "HealthHandler body", rec.Body.String(), secrets...)
		assert.Contains(t, logs.String(), "using a fallback database", "the log line was written")
	})
	t.Run("the secrets are still there for the driver", func(t *testing.T) {
		got, _ := tg.Password()
		assert.Equal(t, pw, got)
		got, _ = tg.Secret("sslpassword")
		assert.Equal(t, sslpw, got)
		got, _ = sq.Secret("_auth_pass")
		assert.Equal(t, sqlpw, got)
		assert.Contains(t, db.Attempts()[0].Target.DSN(), token)
	})
	t.Run("SQLITE_PATH holding a database URL is reported, not used", func(t *testing.T) {
		p := r.Paths[0]
		assert.Equal(t, "SQLITE_PATH", p.Origin)
		assert.Error(t, p.Err)
		assert.Contains(t, p.Path, "xxxxx")
	})
}

// TestPrintedForms pins the deliberate shape of each printer, so that a
// change is a decision rather than an accident.
func TestPrintedForms(t *testing.T) {
	isolatedDirs(t)
	tmp := t.TempDir()
	r, err := Resolve(context.Background(), WithURL("postgres://u:Zq7Secret@db.example.com/app"), withDataDir(""),
		env("TMPDIR", tmp))
	require.NoError(t, err)
	tests := []struct {
		name, got, want string
	}{
		{"Target %v", fmt.Sprint(r.Primary), "postgres://u:xxxxx@db.example.com:5432/app"},
		{"Target %#v", fmt.Sprintf("%#v", r.Primary), `dbfallback.Target("postgres://u:xxxxx@db.example.com:5432/app")`},
		{"Source %v", fmt.Sprint(r.Sources[0]), "WithURL: postgres://u:xxxxx@db.example.com:5432/app (used)"},
		{"shadowed Source %v", fmt.Sprint(Source{Name: "DATABASE_URL"}), "DATABASE_URL: not set"},
		{"Resolution %v", fmt.Sprint(r), "primary postgres://u:xxxxx@db.example.com:5432/app from WithURL; fallbacks file:data/app.db, file:" + tmp + "/app.db, :memory:"},
		{"SQLitePath %v", fmt.Sprint(r.Paths[0]), "./data data/app.db: usable, chosen"},
		{"Attempt %v", fmt.Sprint(Attempt{Target: r.Primary, Tries: 1, Duration: time.Millisecond}), "postgres://u:xxxxx@db.example.com:5432/app: ok (1 tries, 1ms)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got)
		})
	}
	t.Run("DB", func(t *testing.T) {
		db, err := Open(context.Background(), WithStrategy(SQLiteOnly), WithSQLitePath(t.TempDir()+"/x.db"), env())
		require.NoError(t, err)
		defer db.Close()
		assert.Regexp(t, `^dbfallback\.DB\(sqlite file:/.*/x\.db, fallback\)$`, db.String())
		assert.Equal(t, db.String(), fmt.Sprintf("%#v", db))
		var b bytes.Buffer
		slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "db", db)
		assert.Contains(t, b.String(), `"db":{"dialect":"sqlite","target":"file:`)
		js, err := db.MarshalJSON()
		require.NoError(t, err)
		assert.Contains(t, string(js), `"attempts":[{"Target":`)
		var nilDB *DB
		assert.Equal(t, "dbfallback.DB(nil)", nilDB.String())
		fmt.Fprint(io.Discard, nilDB)
	})
}
