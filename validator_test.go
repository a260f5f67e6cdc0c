package dbfallback

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestCorpusSize(t *testing.T) {
	rows := loadCorpus(t)
	assert.GreaterOrEqual(t, len(rows), 120, "the corpus must hold at least 120 real-world inputs")
	seen := map[string]int{}
	for _, r := range rows {
		if prev, ok := seen[r.input]; ok {
			t.Errorf("testdata/urls.tsv:%d duplicates line %d", r.line, prev)
		}
		seen[r.input] = r.line
		assert.NotEmptyf(t, r.why, "testdata/urls.tsv:%d: say why", r.line)
		assert.NotEmptyf(t, r.source, "testdata/urls.tsv:%d: say where it was seen", r.line)
	}
}

func TestValidateCorpus(t *testing.T) {
	clearPGEnv(t)
	for _, row := range loadCorpus(t) {
		t.Run(fmt.Sprintf("line%d", row.line), func(t *testing.T) {
			got, err := Validate(row.input)
			switch Dialect(row.expect) {
			case Postgres, SQLite:
				require.NoErrorf(t, err, "input %q (%s)", row.input, row.why)
				assert.Equal(t, Dialect(row.expect), got.Dialect)
				again, err := Validate(got.dsnWithPool())
				require.NoErrorf(t, err, "the DSN of %q does not validate again", row.input)
				assert.Truef(t, sameTarget(got, again), "not idempotent:\n first %#v\nsecond %#v", got, again)
				assert.Empty(t, again.Notes, "a canonical DSN needs no normalization")
				if got.Dialect == Postgres {
					checkAgainstPgx(t, got)
				}
				checkTargetRedaction(t, got)
			default:
				require.Errorf(t, err, "input %q (%s) should be rejected as %s, got %s", row.input, row.why, row.expect, got)
				var ve *ValidationError
				require.ErrorAs(t, err, &ve)
				assert.Equal(t, Code(row.expect), ve.Code, "%s", err)
				assert.ErrorIs(t, err, ve.Code.Sentinel())
				assert.NotEmpty(t, ve.Hint, "every rejection tells a person what to change")
				matched := 0
				for _, s := range []error{ErrEmpty, ErrPlaceholder, ErrUnsupported, ErrMalformed} {
					if errors.Is(err, s) {
						matched++
					}
				}
				assert.Equal(t, 1, matched, "an error matches exactly one sentinel")
			}
		})
	}
}

// TestValidateGolden pins the full outcome of every corpus row: the
// redacted target and its notes, or the complete error text. Run with
// -update to rewrite testdata/urls.golden after a deliberate change.
func TestValidateGolden(t *testing.T) {
	var b strings.Builder
	for _, row := range loadCorpus(t) {
		got, err := Validate(row.input)
		b.WriteString(strconv.Quote(row.input))
		b.WriteString("\n\t")
		if err != nil {
			b.WriteString("error: " + err.Error())
		} else {
			b.WriteString("ok: " + got.Redacted())
			for _, k := range slices.Sorted(maps.Keys(got.Pool)) {
				b.WriteString("\n\tpool: " + k + "=" + got.Pool[k])
			}
			for _, n := range got.Notes {
				b.WriteString("\n\tnote: " + n)
			}
		}
		b.WriteString("\n")
	}
	const path = "testdata/urls.golden"
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -run TestValidateGolden -update to create it")
	assert.Equal(t, string(want), b.String())
}

// clearPGEnv hides libpq variables from pgconn.ParseConfig for the test.
func clearPGEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE", "PGAPPNAME",
		"PGCONNECT_TIMEOUT", "PGSSLKEY", "PGSSLCERT", "PGSSLROOTCERT", "PGSSLPASSWORD", "PGTARGETSESSIONATTRS",
		"PGSERVICE", "PGOPTIONS", "PGTZ", "PGCHANNELBINDING", "PGSSLNEGOTIATION", "PGREQUIREAUTH"} {
		t.Setenv(k, "")
	}
	t.Setenv("PGPASSFILE", "/nonexistent/dbfallback-test-pgpass")
	t.Setenv("PGSERVICEFILE", "/nonexistent/dbfallback-test-pgservice")
}

// pgxOwnKeys are settings pgx consumes itself rather than sending to the
// server as run-time parameters.
var pgxOwnKeys = map[string]bool{
	"connect_timeout": true, "sslmode": true, "sslkey": true, "sslcert": true, "sslcertmode": true,
	"sslrootcert": true, "sslnegotiation": true, "sslpassword": true, "sslsni": true, "krbspn": true,
	"krbsrvname": true, "target_session_attrs": true, "service": true, "servicefile": true, "passfile": true,
	"min_protocol_version": true, "max_protocol_version": true, "channel_binding": true, "require_auth": true,
}

// checkAgainstPgx parses the canonical DSN with pgx and checks that pgx reads
// exactly the parts Validate reported: one reading, no surprise parameter.
func checkAgainstPgx(t *testing.T, tg Target) {
	t.Helper()
	for _, k := range []string{"sslrootcert", "sslcert", "sslkey", "service", "passfile"} {
		if _, ok := tg.Params[k]; ok {
			return // pgx would read files named by these keys
		}
	}
	cfg, err := pgconn.ParseConfig(tg.DSN())
	require.NoErrorf(t, err, "pgx rejects the canonical DSN of %s", tg)
	type hp struct {
		host string
		port uint16
	}
	got := []hp{{cfg.Host, cfg.Port}}
	for _, fb := range cfg.Fallbacks {
		if last := got[len(got)-1]; last.host != fb.Host || last.port != fb.Port {
			got = append(got, hp{fb.Host, fb.Port})
		}
	}
	require.Len(t, got, len(tg.Hosts), "pgx reads a different host list")
	for i, h := range tg.Hosts {
		if h.Name != "" {
			assert.Equal(t, h.Name, got[i].host)
		}
		assert.Equal(t, h.Port, got[i].port)
	}
	if tg.Database != "" {
		assert.Equal(t, tg.Database, cfg.Database)
	}
	if tg.User != "" {
		assert.Equal(t, tg.User, cfg.User)
	}
	if pw, ok := tg.Password(); ok {
		assert.Equal(t, pw, cfg.Password, "pgx reads a different password")
	}
	for k, v := range cfg.RuntimeParams {
		switch k {
		case "default_query_exec_mode", "statement_cache_capacity", "description_cache_capacity":
			continue // pgx.ParseConfig (not pgconn) consumes these
		}
		want, secret := tg.Secret(k)
		if !secret {
			want = tg.Params[k]
		}
		assert.Equalf(t, want, v, "run-time parameter %s", k)
	}
	for _, k := range append(slices.Collect(maps.Keys(tg.Params)), tg.SecretKeys()...) {
		if !pgxOwnKeys[k] {
			switch k {
			case "default_query_exec_mode", "statement_cache_capacity", "description_cache_capacity":
				continue
			}
			assert.Containsf(t, cfg.RuntimeParams, k, "parameter %s does not reach pgx", k)
		}
	}
}

// checkTargetRedaction checks every printable form of an accepted target.
func checkTargetRedaction(t *testing.T, tg Target) {
	t.Helper()
	pw, ok := tg.Password()
	if !ok || len(pw) < 4 {
		return
	}
	public := strings.Join([]string{tg.User, tg.Database, fmt.Sprint(tg.Hosts), fmt.Sprint(tg.Params), redactedMask, "postgres"}, " ")
	if strings.Contains(public, pw) {
		return // the password equals a public part; its appearance proves nothing
	}
	for name, s := range map[string]string{
		"String":   tg.String(),
		"Redacted": tg.Redacted(),
		"%v":       fmt.Sprintf("%v", tg),
		"%+v":      fmt.Sprintf("%+v", tg),
		"%#v":      fmt.Sprintf("%#v", tg),
		"LogValue": tg.LogValue().String(),
	} {
		assert.NotContainsf(t, s, pw, "%s leaks the password", name)
	}
}

func TestValidateNormalizations(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		hosts    []Host
		db, user string
		password string
		params   map[string]string
		path     string
		memory   bool
		note     string // a substring one of the notes must contain
	}{
		{name: "heroku alias", in: "postgres://u:p@h.example.com/db", hosts: []Host{{"h.example.com", 5432}}, db: "db", user: "u", password: "p"},
		{name: "pgsql alias", in: "pgsql://u@h/db", hosts: []Host{{"h", 5432}}, db: "db", user: "u", note: `read the "pgsql" scheme as postgres`},
		{name: "sqlalchemy suffix", in: "postgresql+asyncpg://u@h/db", hosts: []Host{{"h", 5432}}, db: "db", user: "u", note: "+asyncpg"},
		{name: "hash in password", in: "postgres://u:p#1@h/db", hosts: []Host{{"h", 5432}}, db: "db", user: "u", password: "p#1", note: "'#'"},
		{name: "at in password", in: "postgres://u:p@1@h/db", hosts: []Host{{"h", 5432}}, db: "db", user: "u", password: "p@1", note: "'@'"},
		{name: "slash in password", in: "postgres://u:p/1@h/db", hosts: []Host{{"h", 5432}}, db: "db", user: "u", password: "p/1", note: "'/'"},
		{name: "azure user", in: "postgres://me@srv:pw@srv.postgres.database.azure.com/db", hosts: []Host{{"srv.postgres.database.azure.com", 5432}}, db: "db", user: "me@srv", password: "pw", note: "user name contains"},
		{name: "empty port", in: "postgres://h:/db", hosts: []Host{{"h", 5432}}, db: "db", note: "empty port"},
		{name: "multi host", in: "postgres://a:1,b:2/db", hosts: []Host{{"a", 1}, {"b", 2}}, db: "db"},
		{name: "one port for all", in: "postgres://a,b/db?port=6000", hosts: []Host{{"a", 6000}, {"b", 6000}}, db: "db"},
		{name: "ipv6 zone", in: "postgres://[fe80::1%25eth0]:1/db", hosts: []Host{{"fe80::1%eth0", 1}}, db: "db"},
		{name: "socket query", in: "postgres:///db?host=/run/pg", hosts: []Host{{"/run/pg", 5432}}, db: "db"},
		{name: "socket encoded", in: "postgres://%2Frun%2Fpg:5433/db", hosts: []Host{{"/run/pg", 5433}}, db: "db"},
		{name: "socket file", in: "postgres:///db?host=/cloudsql/p:r:i/.s.PGSQL.6432", hosts: []Host{{"/cloudsql/p:r:i", 6432}}, db: "db", note: "socket file"},
		{name: "prisma schema", in: "postgres://h/db?schema=app", hosts: []Host{{"h", 5432}}, db: "db", params: map[string]string{"search_path": "app"}, note: "search_path"},
		{name: "prisma pgbouncer", in: "postgres://h/db?pgbouncer=true&connection_limit=1", hosts: []Host{{"h", 5432}}, db: "db", params: map[string]string{"default_query_exec_mode": "exec"}, note: "connection_limit"},
		{name: "pgxpool keys", in: "postgres://h/db?pool_max_conns=5", hosts: []Host{{"h", 5432}}, db: "db"},
		{name: "ssl true", in: "postgres://h/db?ssl=true", hosts: []Host{{"h", 5432}}, db: "db", params: map[string]string{"sslmode": "require"}, note: "ssl=true"},
		{name: "sslmode case", in: "postgres://h/db?sslmode=Require", hosts: []Host{{"h", 5432}}, db: "db", params: map[string]string{"sslmode": "require"}, note: "lower-cased"},
		{name: "jdbc", in: "jdbc:postgresql://h/db?user=u&password=pw&currentSchema=s", hosts: []Host{{"h", 5432}}, db: "db", user: "u", password: "pw", params: map[string]string{"search_path": "s"}, note: "jdbc:"},
		{name: "jdbc short", in: "jdbc:postgresql:db", hosts: []Host{{"localhost", 5432}}, db: "db", note: "localhost"},
		{name: "keepalives dropped", in: "postgres://h/db?keepalives=1", hosts: []Host{{"h", 5432}}, db: "db", note: "keepalives"},
		{name: "keyword value", in: "host=h port=6000 dbname='my db' user=u password='a b\\'c'", hosts: []Host{{"h", 6000}}, db: "my db", user: "u", password: "a b'c"},
		{name: "keyword hostaddr", in: "hostaddr=10.0.0.1 dbname=d", hosts: []Host{{"10.0.0.1", 5432}}, db: "d", note: "hostaddr"},
		{name: "quotes", in: "'postgres://h/db'", hosts: []Host{{"h", 5432}}, db: "db", note: "single quotes"},
		{name: "bom", in: "\ufeffpostgres://h/db", hosts: []Host{{"h", 5432}}, db: "db", note: "byte-order mark"},
		{name: "newline", in: "postgres://h/db\n", hosts: []Host{{"h", 5432}}, db: "db", note: "newline"},
		{name: "trailing slash", in: "postgres://h/db/", hosts: []Host{{"h", 5432}}, db: "db", note: "trailing slash"},
		{name: "raw equals in value", in: "postgres://h/db?options=-csearch_path=x", hosts: []Host{{"h", 5432}}, db: "db", params: map[string]string{"options": "-csearch_path=x"}, note: "'='"},
		{name: "sqlite relative", in: "sqlite:///data/app.db", path: "data/app.db"},
		{name: "sqlite absolute", in: "sqlite:////data/app.db", path: "/data/app.db"},
		{name: "sqlite3 alias", in: "sqlite3:////data/app.db", path: "/data/app.db", note: "sqlite3"},
		{name: "sqlite opaque", in: "sqlite:name.db", path: "name.db"},
		{name: "sqlite memory", in: "sqlite://", memory: true},
		{name: "sqlite memory long", in: "sqlite:///:memory:", memory: true},
		{name: "bare memory", in: ":memory:", memory: true},
		{name: "file uri params kept", in: "file:app.db?mode=ro&_busy_timeout=100", path: "app.db", params: map[string]string{"mode": "ro", "_busy_timeout": "100"}},
		{name: "file uri memory", in: "file:shared?mode=memory&cache=shared", memory: true, path: "shared", params: map[string]string{"cache": "shared"}},
		{name: "file uri absolute", in: "file:///var/app.db", path: "/var/app.db"},
		{name: "bare path", in: "./data/app.sqlite", path: "./data/app.sqlite"},
		{name: "escaped space", in: "sqlite:///my%20app.db", path: "my app.db"},
		{name: "python params dropped", in: "sqlite:///a.db?check_same_thread=false", path: "a.db", note: "check_same_thread"},
		{name: "sqlalchemy uri mode", in: "sqlite:///file:a.db?mode=ro&uri=true", path: "a.db", params: map[string]string{"mode": "ro"}},
		{name: "aiosqlite", in: "sqlite+aiosqlite:///a.db", path: "a.db", note: "+aiosqlite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Validate(tt.in)
			require.NoError(t, err)
			if tt.hosts != nil {
				assert.Equal(t, Postgres, got.Dialect)
				assert.Equal(t, tt.hosts, got.Hosts)
				assert.Equal(t, tt.db, got.Database)
				assert.Equal(t, tt.user, got.User)
				pw, has := got.Password()
				assert.Equal(t, tt.password != "", has)
				assert.Equal(t, tt.password, pw)
			} else {
				assert.Equal(t, SQLite, got.Dialect)
				assert.Equal(t, tt.path, got.Path)
				assert.Equal(t, tt.memory, got.Memory)
			}
			for k, v := range tt.params {
				assert.Equal(t, v, got.Params[k], "param %s", k)
			}
			if tt.params == nil && tt.hosts != nil {
				assert.Empty(t, got.Params)
			}
			if tt.note != "" {
				assert.Truef(t, containsNote(got.Notes, tt.note), "no note mentions %q: %q", tt.note, got.Notes)
			} else {
				assert.Empty(t, got.Notes)
			}
		})
	}
}

func containsNote(notes []string, sub string) bool {
	for _, n := range notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

// TestValidateIsPure shows that the environment never changes the answer:
// pgx.ParseConfig would merge these variables, Validate must not.
func TestValidateIsPure(t *testing.T) {
	inputs := []string{"postgres://h/db", "postgres:///db", "host=h", "sqlite:///a.db", "user=u dbname=d"}
	before := make([]Target, len(inputs))
	for i, in := range inputs {
		var err error
		before[i], err = Validate(in)
		require.NoError(t, err)
	}
	t.Setenv("PGHOST", "elsewhere.example")
	t.Setenv("PGPORT", "1")
	t.Setenv("PGUSER", "intruder")
	t.Setenv("PGPASSWORD", "from-the-environment")
	t.Setenv("PGSSLMODE", "disable")
	t.Setenv("PGDATABASE", "other")
	t.Chdir(t.TempDir())
	for i, in := range inputs {
		after, err := Validate(in)
		require.NoError(t, err)
		assert.Equal(t, before[i], after, "Validate(%q) depends on the environment", in)
	}
}

func TestValidationErrorText(t *testing.T) {
	_, err := Validate("postgres://user:hunter22@db:99999/app")
	require.Error(t, err)
	assert.Equal(t, `dbfallback: validate "postgres://user:xxxxx@db:99999/app": the port is out of range (hint: use a port between 1 and 65535, usually 5432)`, err.Error())
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, CodePortRange, ve.Code)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.NotErrorIs(t, err, ErrEmpty)
}

func TestValidateTooLong(t *testing.T) {
	junk := strings.Repeat("postgres://user:Sekr1tJunk@h/", 16<<10/29+1)
	_, err := Validate(junk)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, CodeTooLong, ve.Code)
	assert.LessOrEqual(t, len(err.Error()), 600, "an error about a huge value stays short")
	assert.NotContains(t, err.Error(), "Sekr1tJunk")
}

func TestValidateCodes(t *testing.T) {
	for _, c := range []struct {
		code     Code
		sentinel error
	}{
		{CodeEmpty, ErrEmpty}, {CodePlaceholder, ErrPlaceholder}, {CodeUnsupportedScheme, ErrUnsupported},
		{CodeUnsupportedDriver, ErrUnsupported}, {CodeBadPort, ErrMalformed}, {CodeAmbiguous, ErrMalformed},
	} {
		t.Run(string(c.code), func(t *testing.T) {
			assert.Equal(t, c.sentinel, c.code.Sentinel())
		})
	}
}

// TestConnectTimeout pins what connect_timeout and PGCONNECT_TIMEOUT mean:
// whole seconds, 1 being one second as pgx reads it.
func TestConnectTimeout(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		set  bool
	}{
		{name: "unset", in: "postgres://h/db"},
		{name: "zero", in: "postgres://h/db?connect_timeout=0", want: 0, set: true},
		{name: "one second is one second", in: "postgres://h/db?connect_timeout=1", want: time.Second, set: true},
		{name: "ten", in: "postgres://h/db?connect_timeout=10", want: 10 * time.Second, set: true},
		{name: "JDBC loginTimeout", in: "jdbc:postgresql://h/db?loginTimeout=1", want: time.Second, set: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Validate(tt.in)
			require.NoError(t, err)
			got, set := tg.ConnectTimeout()
			assert.Equal(t, tt.set, set)
			assert.Equal(t, tt.want, got)
		})
	}
	t.Run("PGCONNECT_TIMEOUT", func(t *testing.T) {
		isolatedDirs(t)
		r, err := Resolve(context.Background(), env("PGCONNECT_TIMEOUT", "1"), withDataDir(""))
		require.NoError(t, err)
		assert.Equal(t, time.Second, r.ConnectTimeout)
	})
}

// TestValidateJSONSecret: an AWS Secrets Manager (RDS, Aurora) JSON secret
// is a PostgreSQL target; other JSON is rejected without echoing it.
func TestValidateJSONSecret(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  Code   // "" when accepted
		dsn   string // the DSN when accepted
		notes string
	}{
		{name: "RDS secret", in: `{"username":"app","password":"p@ss w\"rd","engine":"postgres","host":"db.example.com","port":5432,"dbname":"orders","dbInstanceIdentifier":"prod"}`,
			dsn: "postgres://app:p%40ss%20w%22rd@db.example.com:5432/orders", notes: "AWS Secrets Manager JSON secret (engine postgres)"},
		{name: "pretty-printed Aurora secret, port as a string", in: "{\n  \"engine\": \"aurora-postgresql\",\n  \"host\": \"cluster.example.com\",\n  \"port\": \"6543\",\n  \"username\": \"app\",\n  \"password\": \"pw\",\n  \"dbClusterIdentifier\": \"c1\"\n}\n",
			dsn: "postgres://app:pw@cluster.example.com:6543/", notes: "engine aurora-postgresql"},
		{name: "no engine, libpq settings", in: `{"host":"h","dbname":"d","sslmode":"REQUIRE","connect_timeout":7}`,
			dsn: "postgres://h:5432/d?connect_timeout=7&sslmode=require", notes: "no engine given"},
		{name: "quoted in a .env file", in: `'{"host":"h","dbname":"d"}'`, dsn: "postgres://h:5432/d", notes: "single quotes"},
		{name: "MySQL secret", in: `{"engine":"mysql","host":"h","username":"u","password":"Zq7Pw"}`, code: CodeUnsupportedScheme},
		{name: "unknown field", in: `{"host":"h","url":"postgres://u:Zq7Pw@h/db"}`, code: CodeBadJSON},
		{name: "not JSON", in: `{"host":"h","password":"Zq7Pw"`, code: CodeBadJSON},
		{name: "Python dict", in: `{'host': 'h', 'password': 'Zq7Pw'}`, code: CodeBadJSON},
		{name: "two objects", in: `{"host":"h"}{"password":"Zq7Pw"}`, code: CodeBadJSON},
		{name: "nested value", in: `{"host":"h","password":["Zq7Pw"]}`, code: CodeBadJSON},
		{name: "no host and no database", in: `{"username":"u","password":"Zq7Pw"}`, code: CodeMissingTarget},
		{name: "template in a field", in: `{"host":"${DB_HOST}","password":"Zq7Pw"}`, code: CodePlaceholder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Validate(tt.in)
			if tt.code != "" {
				var ve *ValidationError
				require.ErrorAs(t, err, &ve)
				assert.Equal(t, tt.code, ve.Code, "%v", err)
				assert.NotContains(t, err.Error(), "Zq7Pw")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.dsn, tg.DSN())
			assert.True(t, containsNote(tg.Notes, tt.notes), "notes %q", tg.Notes)
			again, err := Validate(tg.DSN())
			require.NoError(t, err)
			assert.True(t, sameTarget(tg, again))
		})
	}
}

// TestValidateVariableReferences: a whole value that names a variable is a
// placeholder, in every syntax that names one.
func TestValidateVariableReferences(t *testing.T) {
	for _, in := range []string{"$DATABASE_URL", "$(DATABASE_URL)", "%DATABASE_URL%", "${DATABASE_URL}", "'$DATABASE_URL'", "$database_url"} {
		t.Run(in, func(t *testing.T) {
			_, err := Validate(in)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrPlaceholder)
		})
	}
	_, err := Validate("$(DATABASE_URL)")
	assert.Contains(t, err.Error(), "reference to the variable DATABASE_URL")
	_, err = Validate("$hunter2x")
	assert.NotContains(t, strings.SplitN(err.Error(), ": ", 3)[2], "hunter2x", "a lower-case name is not repeated in the reason")
	for _, in := range []string{"$DATABASE_URL/x", "50%", "%%", "$", "$(", "%A B%"} {
		_, err := Validate(in)
		assert.NotErrorIs(t, err, ErrPlaceholder, in)
	}
}

// TestValidateParamsInDatabaseName: JDBC's ';' properties and a forgotten
// '?' would carry a password into the database name (leak class 7).
func TestValidateParamsInDatabaseName(t *testing.T) {
	for _, in := range []string{
		"jdbc:postgresql://h/db;user=u;password=Zq7Pw",
		"postgres://h/db&password=Zq7Pw",
		"postgres://u@h:5432/db&sslmode=require&password=Zq7Pw",
		"postgres://h/db;password=Zq7Pw?sslmode=require",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := Validate(in)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, CodeBadDatabase, ve.Code)
			assert.NotContains(t, err.Error(), "Zq7Pw")
		})
	}
	for _, in := range []string{"postgres://h/a&b", "postgres://h/rock&roll", "postgres://h/a;b"} {
		_, err := Validate(in)
		assert.NoError(t, err, "a name with '&' or ';' but no name=value is still a name: %s", in)
	}
}

// TestValidateTemplateNotJSON: a whole-value Helm or Jinja template starts
// with '{' but is a placeholder, not a JSON secret.
func TestValidateTemplateNotJSON(t *testing.T) {
	for _, in := range []string{"{{ .Values.databaseUrl }}", "{{DATABASE_URL}}", "'{{ secrets.DB }}'"} {
		_, err := Validate(in)
		assert.ErrorIs(t, err, ErrPlaceholder, in)
	}
}
