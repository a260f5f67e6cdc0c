package dbfallback

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbfallback/dbfallback/internal/secretgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSecretParamsLeaveParams shows where secret-valued parameters go:
// out of Params, into Secret, into the DSN for the driver, and nowhere a
// printer can reach.
func TestSecretParamsLeaveParams(t *testing.T) {
	tests := []struct {
		name, in, key string
	}{
		{name: "sslpassword", in: "postgres://h/db?sslpassword=Qk7Secret1&sslmode=require", key: "sslpassword"},
		{name: "upper-case PASSWORD is a run-time parameter named like a secret", in: "postgres://h/db?PASSWORD=Qk7Secret1", key: "PASSWORD"},
		{name: "unknown key named like a token", in: "postgres://h/db?auth_token=Qk7Secret1", key: "auth_token"},
		{name: "keyword/value sslpassword", in: "host=h sslpassword='Qk7Secret1'", key: "sslpassword"},
		{name: "go-sqlite3 _auth_pass", in: "file:app.db?_auth=&_auth_user=u&_auth_pass=Qk7Secret1", key: "_auth_pass"},
		{name: "_auth_pass in a sqlite URL", in: "sqlite:///app.db?_auth_pass=Qk7Secret1", key: "_auth_pass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Validate(tt.in)
			require.NoError(t, err)
			assert.NotContains(t, tg.Params, tt.key, "secret-valued parameters are not in Params")
			got, ok := tg.Secret(tt.key)
			assert.True(t, ok)
			assert.Equal(t, "Qk7Secret1", got)
			assert.Equal(t, []string{tt.key}, tg.SecretKeys())
			assert.Contains(t, tg.DSN(), "Qk7Secret1", "the driver still gets it")
			js, err := json.Marshal(tg)
			require.NoError(t, err)
			outs := []string{tg.String(), tg.Redacted(), tg.GoString(), string(js), strings.Join(tg.Notes, " ")}
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%T"} {
				outs = append(outs, fmt.Sprintf(verb, tg), fmt.Sprintf(verb, &tg))
			}
			for _, out := range outs {
				assert.NotContains(t, out, "Qk7Secret1")
				assert.NotContains(t, out, fmt.Sprintf("%x", "Qk7Secret1"), "nor in hex")
			}
			again, err := Validate(tg.DSN())
			require.NoError(t, err)
			assert.True(t, sameTarget(tg, again), "the DSN carries the secret parameter back")
		})
	}
	t.Run("dropped secret keys leave no trace", func(t *testing.T) {
		for _, key := range []string{"scram_client_key", "scram_server_key", "oauth_client_secret", "api_key"} {
			tg, err := Validate("postgres://h/db?" + key + "=Qk7Secret1")
			require.NoError(t, err)
			assert.NotContains(t, tg.DSN(), "Qk7Secret1", key)
			assert.Empty(t, tg.SecretKeys(), key)
		}
	})
	t.Run("a hand-built Params is masked too", func(t *testing.T) {
		tg := Target{Dialect: Postgres, Hosts: []Host{{"h", 5432}}, Params: map[string]string{"password": "Qk7Secret1", "sslmode": "require"}}
		js, err := json.Marshal(tg)
		require.NoError(t, err)
		assert.NotContains(t, tg.String(), "Qk7Secret1")
		assert.NotContains(t, string(js), "Qk7Secret1")
		assert.Contains(t, string(js), `"sslmode":"require"`)
		assert.Equal(t, "Qk7Secret1", tg.Params["password"], "MarshalJSON masks a copy, not the caller's map")
	})
}

// TestEverySecretRuleIsMasked puts a marker in the value of every key the
// rules table marks secret, in every format that can carry the key, and
// checks every channel (see runSecretCase): adding a secret key to the
// table cannot forget the redactor, the DSN writer or a printer.
func TestEverySecretRuleIsMasked(t *testing.T) {
	work, _ := isolatedDirs(t)
	cfg := closedLoopback(t)
	hp := cfg.Host + ":" + cfg.Port
	markers := []string{"MkSecret7q", "Mk7q&Mk8r;Mk9s Mk2t'Mk3u\"Mk4v}Mk5w"}
	for _, key := range ruleKeys(func(_ string, r paramRule) bool { return r.secret }) {
		rule := paramRules[key]
		t.Run(key, func(t *testing.T) {
			for mi, marker := range markers {
				tokens := fragments(marker, 4)
				enc := escapeComponent(marker)
				quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(marker) + "'"
				js, _ := json.Marshal(marker)
				inputs := []string{
					key + "=" + marker, key + ": " + marker, strings.ToUpper(key) + "=" + quoted,
					"Host=" + cfg.Host + ";" + key + "=" + marker + ";Database=app",
					"Driver={x};Server=" + cfg.Host + ";" + key + "={" + strings.ReplaceAll(marker, "}", "}}") + "};Uid=u",
					`{"host":"` + cfg.Host + `","port":` + cfg.Port + `,"` + key + `":` + string(js) + `}`,
				}
				switch rule.dialect {
				case Postgres:
					inputs = append(inputs,
						"postgres://app@"+hp+"/app?"+key+"="+enc,
						"postgres://app@"+hp+"/app?"+key+"="+enc+"&sslmode=bogus",
						"postgres://app@"+hp+"/app?sslmode=bogus&"+key+"="+marker,
						"postgres://app@"+hp+"/app?"+strings.ToUpper(key)+"="+enc)
					if isKeyword(key) {
						inputs = append(inputs, "host="+cfg.Host+" port="+cfg.Port+" "+key+"="+quoted,
							"host = "+cfg.Host+" "+key+" = "+quoted+" sslmode = bogus")
					}
				case SQLite:
					inputs = append(inputs, "file:app.db?"+key+"="+enc, "sqlite:///app.db?"+key+"="+enc+"&mode=bogus")
				}
				for i, in := range inputs {
					c := secretgen.Case{Family: "rule " + key, Shape: fmt.Sprint(i), Secret: marker, Tokens: tokens,
						Env: map[string]string{"DATABASE_URL": in}}
					dir := filepath.Join(work, fmt.Sprintf("%s-%d-%d", key, mi, i))
					require.NoError(t, os.MkdirAll(dir, 0o700))
					checkSecretCase(t, c, runSecretCase(t, c, dir, i%3 == 0))
				}
			}
		})
	}
}
