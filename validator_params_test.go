package dbfallback

import (
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ruleKeys returns the keys of paramRules for which keep returns true,
// sorted so that subtests have stable names.
func ruleKeys(keep func(string, paramRule) bool) []string {
	var out []string
	for k, r := range paramRules {
		if keep(k, r) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// sampleValue is a value each kind of rule accepts.
func sampleValue(key string, r paramRule) string {
	switch {
	case r.values != nil:
		return r.values[len(r.values)-1]
	case r.count:
		return "7"
	case r.duration:
		return "90s"
	}
	switch key {
	case "ssl", "pgbouncer":
		return "true"
	case "requiressl":
		return "1"
	case "targetServerType":
		return "primary"
	case "loginTimeout", "connectTimeout":
		return "7"
	case "unix_sock":
		return "/run/pg"
	case "require_auth":
		return "scram-sha-256"
	case "host", "hostaddr":
		return "10.0.0.9"
	case "port":
		return "6000"
	}
	return "v7"
}

// TestParamRules checks the table against what the parser does with every
// key it lists: a dropped key is gone with a note naming its tool, a
// renamed key becomes its "to" key, an enumerated or counted value is
// checked, a kept key reaches Params (or a field of the Target), a pool
// key reaches Pool.
func TestParamRules(t *testing.T) {
	for _, key := range ruleKeys(func(_ string, r paramRule) bool { return r.dialect == Postgres }) {
		rule := paramRules[key]
		t.Run(key, func(t *testing.T) {
			val := sampleValue(key, rule)
			in := "postgres://h/db?" + url.QueryEscape(key) + "=" + url.QueryEscape(val)
			tg, err := Validate(in)
			require.NoError(t, err, "%s", in)
			_, inParams := tg.Params[key]
			switch rule.action {
			case drop:
				assert.False(t, inParams, "a dropped key stays")
				require.NotEmpty(t, tg.Notes)
				if key != "gssencmode" {
					assert.Contains(t, strings.Join(tg.Notes, " "), rule.tool, "the note names the tool")
				}
			case rename:
				assert.False(t, inParams, "a renamed key stays")
				assert.NotEqual(t, rule.to, "", "a rename names its key")
				if rule.to != "host" && rule.to != "dbname" {
					assert.Contains(t, tg.Params, rule.to, "%s becomes %s", key, rule.to)
				}
				if key != "database" {
					assert.Contains(t, strings.Join(tg.Notes, " "), key, "the note names the key")
				}
			case pool:
				assert.False(t, inParams, "a pool key stays out of Params")
				assert.Equal(t, val, tg.Pool[key], "a pool key is kept in Pool")
				assert.NotContains(t, tg.DSN(), key, "a server rejects it")
				assert.Empty(t, tg.Notes)
			case keep:
				switch key {
				case "host", "hostaddr", "port", "dbname", "user", "password":
					assert.False(t, inParams, "core parts live in their own fields")
				default:
					if !rule.secret {
						assert.Equal(t, val, tg.Params[key])
					}
				}
			}
			if rule.values != nil || rule.count || rule.duration {
				_, err := Validate("postgres://h/db?" + url.QueryEscape(key) + "=bogus%20value")
				assert.Error(t, err, "an unchecked value for %s", key)
			}
			if isKeyword(key) {
				_, err := Validate("host=h " + key + "='" + strings.ReplaceAll(val, "'", `\'`) + "'")
				assert.NoError(t, err, "keyword/value strings accept libpq and pgx keywords")
			}
		})
	}
	t.Run("SQLite", func(t *testing.T) {
		for _, key := range ruleKeys(func(_ string, r paramRule) bool { return r.dialect == SQLite }) {
			rule := paramRules[key]
			tg, err := Validate("file:app.db?" + key + "=" + sampleValue(key, rule))
			if key == "mode" {
				continue // mode=memory changes the target itself
			}
			require.NoError(t, err, key)
			if rule.action == drop {
				assert.NotContains(t, tg.Params, key)
				assert.Contains(t, strings.Join(tg.Notes, " "), rule.tool)
			}
		}
	})
	t.Run("foreign formats are not parameters", func(t *testing.T) {
		for _, key := range ruleKeys(func(_ string, r paramRule) bool { return r.dialect == "" }) {
			assert.False(t, isKeyword(key), key)
			if isParamName(key) && !paramRules[key].secret {
				tg, err := Validate("postgres://h/db?" + key + "=v")
				require.NoError(t, err)
				assert.Equal(t, "v", tg.Params[key], "%s is a run-time parameter to pgx", key)
			}
		}
	})
}

// TestIsSecretKey pins which names are secrets: the table's rule first,
// then the name pattern for keys the table does not know.
func TestIsSecretKey(t *testing.T) {
	tests := []struct {
		key    string
		secret bool
	}{
		{"password", true}, {"PASSWORD", true}, {"Password", true}, {"sslpassword", true},
		{"pwd", true}, {"Pwd", true}, {"passwd", true}, {"api_key", true}, {"oauth_client_secret", true},
		{"scram_client_key", true}, {"scram_server_key", true}, {"_auth_pass", true},
		{"PGPASSWORD", true}, {"POSTGRES_PASSWORD", true}, {"db_pass", true}, {"auth_token", true},
		{"x-api-key", true}, {"client_secret", true}, {"aws_credentials", true},
		{"sslkey", false}, {"passfile", false}, {"sslkeylogfile", false}, {"user", false},
		{"sslmode", false}, {"keepalives", false}, {"application_name", false}, {"_auth_salt", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			assert.Equal(t, tt.secret, isSecretKey(tt.key))
		})
	}
}
