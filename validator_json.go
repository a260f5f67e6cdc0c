package dbfallback

import (
	"encoding/json"
	"slices"
	"strings"
)

// awsEngines are the engine names of AWS Secrets Manager secrets for
// PostgreSQL (RDS, Aurora).
var awsEngines = []string{"postgres", "postgresql", "aurora-postgresql"}

// jsonSecret reads a JSON object as a PostgreSQL target: an AWS Secrets
// Manager (RDS, Aurora) secret holds username, password, host, port,
// dbname and engine; any other key with a libpq or pgx rule (sslmode, …)
// is a setting; the secret's identifiers (dbInstanceIdentifier,
// dbClusterIdentifier) are ignored. Values are strings or numbers. No
// part of the input appears in an error: JSON's own messages quote it.
func (v *validation) jsonSecret(s string) (Target, error) {
	const hint = `paste the secret as JSON, as AWS Secrets Manager holds it: {"username":"…","password":"…","host":"…","port":5432,"dbname":"…"}; or use a postgres:// URL`
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || dec.More() {
		return Target{}, v.fail(CodeBadJSON, "the value starts with '{' but is not one valid JSON object", hint)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	engine := ""
	var settings []setting
	for _, k := range keys {
		var val string
		switch x := obj[k].(type) {
		case string:
			val = x
		case json.Number:
			val = x.String()
		default:
			return Target{}, v.fail(CodeBadJSON, "a field of the JSON secret is neither a string nor a number", hint)
		}
		if !isSecretKey(k) {
			if err := v.checkTemplates(val); err != nil {
				return Target{}, err
			}
		}
		switch rule, known := paramRules[k]; {
		case k == "engine":
			engine = strings.ToLower(val)
		case k == "username":
			settings = append(settings, setting{"user", val})
		case known && rule.tool == "AWS Secrets Manager":
			// An identifier of the secret's database: nothing to connect with.
		case known && rule.dialect == Postgres:
			settings = append(settings, setting{k, val})
		default:
			return Target{}, v.fail(CodeBadJSON, "the JSON secret has a field dbfallback does not read", hint)
		}
	}
	if _, ok := obj["host"]; !ok {
		// An RDS-managed master secret holds only the credentials: read
		// alone, they would point at a local socket.
		return Target{}, v.fail(CodeMissingTarget, "the JSON secret names no host",
			`add "host" (and "port", "dbname") to the secret, or use a postgres:// URL`)
	}
	switch {
	case engine == "":
		v.note("read a JSON secret (no engine given) as PostgreSQL")
	case slices.Contains(awsEngines, engine):
		v.note("read an AWS Secrets Manager JSON secret (engine %s)", engine)
	default:
		return Target{}, v.fail(CodeUnsupportedScheme, "the JSON secret is for another database engine", supportedHint)
	}
	return v.buildPostgres(settings, "JSON secret")
}
