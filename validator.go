package dbfallback

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Dialect names the database family a [Target] speaks.
type Dialect string

const (
	// Postgres is PostgreSQL, driven by jackc/pgx v5 through database/sql.
	Postgres Dialect = "postgres"
	// SQLite is SQLite, driven by mattn/go-sqlite3.
	SQLite Dialect = "sqlite"
)

// DefaultPort is the PostgreSQL port a [Target] uses when the input names none.
const DefaultPort uint16 = 5432

// maxInputLen caps what Validate reads. No real connection string comes close;
// anything longer is a pasted file or junk, and is rejected with CodeTooLong.
const maxInputLen = 8 << 10

// Host is one PostgreSQL server address of a [Target].
type Host struct {
	// Name is a host name, an IP address (IPv6 without brackets), a Unix
	// socket directory (it starts with "/"), or "" for libpq's default local
	// socket.
	Name string
	// Port is the TCP port, or the socket file suffix for a socket directory.
	Port uint16
}

// IsSocket reports whether h names a Unix socket directory or the default
// local socket rather than a TCP address.
func (h Host) IsSocket() bool { return h.Name == "" || strings.HasPrefix(h.Name, "/") }

// String returns "name:port", with brackets around an IPv6 address.
func (h Host) String() string {
	port := strconv.Itoa(int(h.Port))
	if strings.IndexByte(h.Name, ':') >= 0 {
		return "[" + h.Name + "]:" + port
	}
	return h.Name + ":" + port
}

// Target is a validated database location, ready for a driver.
//
// A Target is produced by [Validate] (or by [Resolve] from the environment) and
// is immutable by convention: its slices and map are shared by copies. The
// password and every secret-valued parameter are held behind an unexported
// pointer, which fmt prints as an address at any depth, so no fmt verb,
// log/slog handler, encoding/json or encoding.TextMarshaler user can reach
// them, even through a struct that holds a Target in an unexported field.
// [Target.Password] and [Target.Secret] return them; [Target.DSN] carries
// them to the driver.
type Target struct {
	// Dialect is Postgres or SQLite.
	Dialect Dialect

	// Hosts lists the PostgreSQL servers to try, in order (libpq's
	// multi-host syntax). It always holds at least one entry for Postgres;
	// ports default to 5432. Empty for SQLite.
	Hosts []Host
	// Database is the PostgreSQL database name; "" lets the server default
	// to the user name.
	Database string
	// User is the PostgreSQL role; "" lets the driver use PGUSER or the
	// operating-system user at connect time.
	User string
	// Params holds every other setting, after normalization: libpq settings
	// such as sslmode and server run-time parameters for Postgres, SQLite URI
	// parameters for SQLite. It never holds the password nor any other
	// secret-valued parameter (sslpassword, _auth_pass, a key named like a
	// secret, a value that reads like it holds one): see [Target.Secret].
	Params map[string]string
	// Pool holds the URL's pgxpool settings (pool_max_conns,
	// pool_max_conn_lifetime, …), checked and kept out of the DSN, which
	// a server would reject them in. [Target.PgxPoolConfig] applies them
	// all; [Open] sizes its database/sql pool from pool_max_conns,
	// pool_max_conn_lifetime and pool_max_conn_idle_time. Nil when the URL
	// has none; always nil for SQLite.
	Pool map[string]string

	// Path is the SQLite database file, relative or absolute; for an
	// in-memory database it is the optional shared-cache name.
	Path string
	// Memory reports an in-memory SQLite database.
	Memory bool

	// Notes lists the normalizations applied to the input, one short
	// sentence each. Empty when the input was already canonical.
	Notes []string

	secrets *secretSet // nil when the target has no secret
}

// DSN returns the connection string to hand to the driver: a canonical
// postgres:// URL with every component percent-encoded, or a SQLite "file:"
// URI (":memory:" for a plain in-memory database). It contains the password:
// never log it; log the Target itself instead.
func (t Target) DSN() string {
	switch t.Dialect {
	case Postgres:
		return buildPostgresURL(t, false)
	case SQLite:
		return buildSQLiteDSN(t, false)
	}
	return ""
}

// Password returns the PostgreSQL password and whether one was given.
// Never log it.
func (t Target) Password() (string, bool) {
	if t.secrets == nil {
		return "", false
	}
	return t.secrets.password, t.secrets.hasPass
}

// Secret returns the value of a secret-valued parameter, such as
// sslpassword or go-sqlite3's _auth_pass, and whether it was given. Such
// parameters are kept out of [Target.Params]; [Target.SecretKeys] lists
// them. Never log the value.
func (t Target) Secret(key string) (string, bool) {
	if t.secrets == nil {
		return "", false
	}
	v, ok := t.secrets.params[key]
	return v, ok
}

// SecretKeys returns the names of the secret-valued parameters of t,
// sorted; the password is not among them (see [Target.Password]).
func (t Target) SecretKeys() []string {
	if t.secrets == nil || len(t.secrets.params) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(t.secrets.params))
}

// IsZero reports whether t is the zero Target (no database).
func (t Target) IsZero() bool { return t.Dialect == "" }

// ConnectTimeout returns the connect_timeout setting of a Postgres target
// in whole seconds, and whether one was set: 1 means one second, as pgx
// reads it (older libpq releases raised 1 to 2). Zero means no timeout to
// libpq; [Open] never waits without a bound and uses its own default then.
func (t Target) ConnectTimeout() (time.Duration, bool) {
	s, ok := t.Params["connect_timeout"]
	if !ok {
		return 0, false
	}
	d, err := parseSeconds(s)
	return d, err == nil
}

// Redacted returns the target as a URL with the password (and any other
// secret parameter) replaced by "xxxxx". It is what every log line, error
// and health response of this package shows.
func (t Target) Redacted() string {
	switch t.Dialect {
	case Postgres:
		return buildPostgresURL(t, true)
	case SQLite:
		return buildSQLiteDSN(t, true)
	}
	return ""
}

// Validate checks a database URL and returns a [Target] ready for a driver.
//
// Validate is pure: its answer depends on raw alone, never on the process
// environment, the filesystem or the network, and it never panics. It
// accepts PostgreSQL URLs (postgres://, postgresql://, pgsql://, pg://, with
// SQLAlchemy "+driver" suffixes and a jdbc: prefix), libpq keyword/value
// strings, and SQLite URLs, "file:" URIs and paths ending in .db, .sqlite or
// .sqlite3. Harmless noise (surrounding whitespace, quotes, a byte-order
// mark, scheme aliases, parameters meant for other tools, unescaped
// reserved characters in a password when the reading is unambiguous) is
// fixed and recorded in [Target.Notes].
//
// Anything else is rejected with a *[ValidationError] that matches one of
// [ErrEmpty], [ErrPlaceholder], [ErrUnsupported] or [ErrMalformed] under
// errors.Is, carries a precise [Code] and a Hint, and never contains the
// password. To check a value and then connect, call [Open] with [WithURL].
func Validate(raw string) (Target, error) {
	v := &validation{raw: raw}
	s, err := v.clean(raw)
	if err != nil {
		return Target{}, err
	}
	t, err := v.classify(s)
	if err != nil {
		return Target{}, err
	}
	// Percent-encoding can triple a value: the canonical DSN must stay
	// within the limit too, so that it validates again.
	if len(s) > maxInputLen/3 && len(t.DSN()) > maxInputLen {
		return Target{}, &ValidationError{Code: CodeTooLong,
			Reason: fmt.Sprintf("the value encodes to %d bytes; a database URL is at most %d", len(t.DSN()), maxInputLen),
			Hint:   "set the variable to the connection URL alone, not the contents of a file"}
	}
	t.Notes = v.notes
	return t, nil
}

// validation carries the state of one Validate call: the original input (for
// redacted error context) and the notes collected so far.
type validation struct {
	raw     string
	notes   []string
	scheme3 bool // the scheme was sqlite3 (Rails' spelling)
	// checkedHosts caches the first hosts checkHost accepted, so that the
	// URL's hosts are not checked again when the target is built.
	checkedHosts [8]string
	nChecked     int

	templateChars bool // the cleaned value holds '$', '{' or '<'
}

func (v *validation) note(format string, args ...any) {
	v.notes = append(v.notes, fmt.Sprintf(format, args...))
}

// fail builds the error for the current input. reason and hint must never
// contain text taken from the input, apart from what redaction made safe.
func (v *validation) fail(code Code, reason, hint string) error {
	return &ValidationError{Code: code, Input: redactInput(v.raw), Reason: reason, Hint: hint}
}

// describe is fail for a value whose secret parts cannot be told apart:
// the error names what it is ("a value", "a bare word") and gives its
// length instead of any part of it.
func (v *validation) describe(what string, code Code, reason, hint string) error {
	return &ValidationError{Code: code, Reason: reason, Hint: hint,
		Input: fmt.Sprintf("<%s of %d characters, not shown>", what, utf8.RuneCountInString(trimSpaceAndBOM(v.raw)))}
}

var smartQuotes = [][2]string{{"\u201c", "\u201d"}, {"\u2018", "\u2019"}}

// clean strips surrounding noise and rejects inputs no parser should see.
func (v *validation) clean(s string) (string, error) {
	if len(s) > maxInputLen {
		// Not even a redacted part of a value this size is repeated.
		return "", &ValidationError{Code: CodeTooLong,
			Reason: fmt.Sprintf("the value is %d bytes long; a database URL is at most %d", len(s), maxInputLen),
			Hint:   "set the variable to the connection URL alone, not the contents of a file"}
	}
	if !utf8.ValidString(s) {
		return "", v.fail(CodeControlChar, "the value is not valid UTF-8",
			"re-copy the URL as plain text; percent-encode any non-ASCII character")
	}
	trimmed := trimSpaceAndBOM(s)
	if trimmed != s {
		switch {
		case strings.Contains(s, "\ufeff"):
			v.note("removed a UTF-8 byte-order mark and surrounding whitespace")
		case strings.ContainsAny(s, "\r\n"):
			v.note("removed a trailing newline and surrounding whitespace")
		default:
			v.note("removed surrounding whitespace")
		}
	}
	s = trimmed
	if s == "" {
		return "", v.fail(CodeEmpty, "the value is empty",
			"set it to a database URL such as postgres://user:password@host:5432/dbname, or unset it to use SQLite")
	}
	if err := v.checkPasted(s); err != nil {
		return "", err
	}
	if isJSONObject(s) {
		return s, nil // a JSON secret: line breaks are JSON whitespace; jsonSecret checks the rest
	}
	quoted := s
	s, err := v.unquote(s)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", v.fail(CodeEmpty, "the value is an empty pair of quotes",
			"set it to a database URL, or unset it to use SQLite")
	}
	if isJSONObject(s) {
		return s, nil // a JSON secret: line breaks are JSON whitespace; jsonSecret checks the rest
	}
	control := false
	for i := 0; i < len(s); i++ {
		k := byteClass[s[i]]
		if k == 0 {
			continue
		}
		switch {
		case k == classNUL:
			return "", v.fail(CodeNUL, "the value contains a NUL byte",
				"re-copy the URL as plain text; a NUL byte cannot appear in a connection string")
		case k == classControl || k == classC2 && i+1 < len(s) && s[i+1] < 0xa0:
			control = true
		case k == classTemplate:
			v.templateChars = true
		}
	}
	if control {
		return "", v.fail(CodeControlChar, "the value contains a control character (a line break or tab inside it?)",
			"set the variable to a single line holding only the URL")
	}
	if s != quoted {
		// Quotes came off: what they held may be a pasted line too.
		if err := v.checkPasted(s); err != nil {
			return "", err
		}
	}
	return s, nil
}

func trimSpaceAndBOM(s string) string {
	if s != "" && isPlainEdge(s[0]) && isPlainEdge(s[len(s)-1]) {
		return s
	}
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '\ufeff' })
}

// unquote removes one pair of matching surrounding quotes.
func (v *validation) unquote(s string) (string, error) {
	for _, q := range smartQuotes {
		if strings.HasPrefix(s, q[0]) && strings.HasSuffix(s, q[1]) && len(s) >= len(q[0])+len(q[1]) {
			v.note("removed surrounding typographic quotes")
			return trimSpaceAndBOM(s[len(q[0]) : len(s)-len(q[1])]), nil
		}
	}
	first, last := s[0], s[len(s)-1]
	isQuote := func(c byte) bool { return c == '"' || c == '\'' || c == '`' }
	switch {
	case isQuote(first) && len(s) >= 2 && last == first:
		inner := s[1 : len(s)-1]
		v.note("removed surrounding %s quotes", quoteName(first))
		trimmed := trimSpaceAndBOM(inner)
		if trimmed != inner {
			v.note("removed whitespace inside the quotes")
		}
		if trimmed != "" && isQuote(trimmed[0]) && trimmed[len(trimmed)-1] == trimmed[0] && len(trimmed) >= 2 {
			return "", v.fail(CodeUnbalancedQuote, "the value is quoted twice",
				"remove the quotes: most .env loaders keep them as part of the value")
		}
		return trimmed, nil
	case isQuote(first):
		return "", v.fail(CodeUnbalancedQuote, "the value starts with a quote that is never closed",
			"remove the stray quote, or close it at the end of the value")
	case isQuote(last) && !looksKeywordValue(s):
		return "", v.fail(CodeUnbalancedQuote, "the value ends with a quote that was never opened",
			"remove the stray quote at the end of the value")
	}
	return s, nil
}

func quoteName(c byte) string {
	switch c {
	case '"':
		return "double"
	case '\'':
		return "single"
	}
	return "backtick"
}

// classify dispatches on the form of s: URL scheme, keyword/value or path.
func (v *validation) classify(s string) (Target, error) {
	if isJSONObject(s) {
		return v.jsonSecret(s)
	}
	if name, ok := variableReference(s); ok {
		what := "a variable" // a lower-case "name" may be a password that starts with '$'
		if isEnvName(name) {
			what = "the variable " + sanitizeScheme(name)
		}
		return Target{}, v.fail(CodePlaceholder, "the value is a reference to "+what+", which was not substituted",
			"set the variable to the final URL: the shell, .env loader or platform that should have expanded it did not")
	}
	if v.templateChars {
		if err := v.checkTemplates(s); err != nil {
			return Target{}, err
		}
	}
	scheme, rest, hasScheme := splitScheme(s)
	if hasScheme && strings.EqualFold(scheme, "jdbc") {
		v.note("removed the jdbc: prefix")
		s = rest
		scheme, rest, hasScheme = splitScheme(s)
		if !hasScheme {
			return Target{}, v.fail(CodeMissingScheme, "nothing follows the jdbc: prefix",
				"use jdbc:postgresql://host:5432/dbname, or better, postgres://host:5432/dbname")
		}
		if lower := strings.ToLower(scheme); lower == "postgresql" && !strings.HasPrefix(rest, "//") {
			return v.jdbcShortPostgres(rest)
		}
	}
	if hasScheme {
		lower := strings.ToLower(scheme)
		base, driver, _ := strings.Cut(lower, "+")
		switch {
		case isPostgresScheme(base):
			if err := v.checkDriver(lower, base, driver, sqlalchemyPostgresDrivers); err != nil {
				return Target{}, err
			}
			if lower != "postgres" && lower != "postgresql" && driver == "" {
				v.note("read the %q scheme as postgres", scheme)
			} else if scheme != lower {
				v.note("lower-cased the scheme")
			}
			if !strings.HasPrefix(rest, "//") {
				return Target{}, v.fail(CodeMissingTarget, "the scheme is not followed by //",
					"write postgres://host:5432/dbname")
			}
			return v.postgresURL(rest[2:])
		case base == "sqlite" || base == "sqlite3":
			if err := v.checkDriver(lower, base, driver, sqlalchemySQLiteDrivers); err != nil {
				return Target{}, err
			}
			if lower != "sqlite" {
				v.note("read the %q scheme as sqlite", scheme)
			}
			v.scheme3 = base == "sqlite3"
			return v.sqliteURL(rest)
		case lower == "file":
			return v.sqliteFileURI(rest)
		}
		if len(scheme) == 1 {
			// A Windows drive letter ("C:\app.db") is a path, not a scheme.
			return v.bare(s)
		}
		if name, ok := unsupportedSchemes[base]; ok || strings.HasPrefix(rest, "//") || driver != "" {
			hint := supportedHint
			if !ok {
				name = "an unsupported database"
				if guess := closeScheme(base); guess != "" {
					name = "not a scheme dbfallback knows"
					hint = fmt.Sprintf("did you mean %s://? ", guess) + supportedHint
				}
			}
			return Target{}, v.fail(CodeUnsupportedScheme,
				fmt.Sprintf("the %q scheme is %s", sanitizeScheme(scheme), name), hint)
		}
	}
	return v.bare(s)
}

// bare handles inputs without a recognised scheme: keyword/value strings,
// :memory: and SQLite paths; anything else is a URL missing its scheme.
func (v *validation) bare(s string) (Target, error) {
	switch {
	case s == ":memory:":
		return v.sqliteMemory("", "")
	case looksKeywordValue(s):
		return v.keywordValue(s)
	case hasSQLiteSuffix(s):
		path, query, _ := strings.Cut(s, "?")
		return v.sqlitePath(path, query)
	}
	if strings.IndexByte(s, ' ') >= 0 {
		// No scheme and no keyword: a passphrase pasted on its own has this
		// shape too, and nothing tells where a secret in it would end.
		return Target{}, v.describe("a value", CodeSpace, "the value contains a space and is not a keyword/value string",
			"percent-encode spaces as %20, or use libpq's keyword/value form: host=… dbname=…")
	}
	if at := strings.IndexByte(s, '@'); at >= 0 && strings.IndexByte(s[:at], ':') < 0 {
		// "user@host" or a password holding '@' ("Np0o@Lk9j"): without a
		// scheme and a ':' before the '@', no part can be told apart from a
		// secret, so the value is described, not repeated.
		return Target{}, v.describe("a value", CodeMissingScheme, "the value has no scheme",
			"start it with postgres:// (for example postgres://user:password@host:5432/dbname), or give a SQLite path ending in .db")
	}
	if strings.IndexByte(s, '@') >= 0 || strings.IndexByte(s, ':') >= 0 || strings.IndexByte(s, '/') >= 0 {
		return Target{}, v.fail(CodeMissingScheme, "the value has no scheme",
			"start it with postgres:// (for example postgres://user:password@host:5432/dbname), or give a SQLite path ending in .db")
	}
	// A single bare word may be a password pasted on its own (the variable
	// set to the secret instead of the URL): it has no shape to recognise a
	// secret by, so the error describes it instead of repeating it.
	return Target{}, v.describe("a bare word", CodeMissingScheme, "the value is neither a database URL nor a SQLite path",
		"use postgres://user:password@host:5432/dbname, or a SQLite path ending in .db, .sqlite or .sqlite3")
}

const supportedHint = "dbfallback connects to PostgreSQL (postgres://, postgresql://, libpq keyword/value) and SQLite (sqlite:///path.db, file:path.db, path.db); unset the variable to use SQLite"

var unsupportedSchemes = map[string]string{
	"mysql":       "MySQL",
	"mariadb":     "MariaDB",
	"mysqlx":      "MySQL X protocol",
	"sqlserver":   "SQL Server",
	"mssql":       "SQL Server",
	"oracle":      "Oracle",
	"mongodb":     "MongoDB",
	"redis":       "Redis",
	"rediss":      "Redis",
	"http":        "a web address, not a database",
	"https":       "a web address, not a database",
	"ftp":         "a file-transfer address, not a database",
	"amqp":        "a message broker",
	"cockroachdb": "the CockroachDB SQLAlchemy dialect (use its postgresql:// connection string instead)",
	"prisma":      "Prisma Accelerate (use the direct postgres:// connection string, often DIRECT_URL)",
	"libsql":      "Turso/libSQL (a remote service, not a local SQLite file)",
	"clickhouse":  "ClickHouse",
	"snowflake":   "Snowflake",
	"duckdb":      "DuckDB",
	"sqlite4":     "an unsupported database",
	"mongo":       "MongoDB",
	"memcached":   "Memcached",
	"cassandra":   "Cassandra",
	"neo4j":       "Neo4j",
	"postgis":     "the PostGIS Django backend (use postgres:// with the same parts)",
}

var sqlalchemyPostgresDrivers = []string{"psycopg2", "psycopg", "asyncpg", "pg8000", "psycopg2cffi"}
var sqlalchemySQLiteDrivers = []string{"pysqlite", "aiosqlite"}

// checkDriver accepts a SQLAlchemy "+driver" suffix from a known list.
func (v *validation) checkDriver(scheme, base, driver string, known []string) error {
	if driver == "" {
		return nil
	}
	for _, k := range known {
		if driver == k {
			v.note("removed the SQLAlchemy driver suffix +%s", driver)
			return nil
		}
	}
	return v.fail(CodeUnsupportedDriver,
		fmt.Sprintf("the %q scheme names a driver dbfallback does not know", sanitizeScheme(scheme)),
		fmt.Sprintf("write %s:// without the suffix; known suffixes are +%s", base, strings.Join(known, ", +")))
}

// knownScheme reports whether scheme (any case, with a "+driver" suffix)
// is one this package names: a PostgreSQL or SQLite spelling, jdbc,
// file, or a database it knows to be unsupported. The redactor uses it to
// tell a scheme from the front of a password ("user:" + "//secret@host").
func knownScheme(scheme string) bool {
	if scheme == "" {
		return false
	}
	base, _, _ := strings.Cut(strings.ToLower(scheme), "+")
	_, unsupported := unsupportedSchemes[base]
	return unsupported || isPostgresScheme(base) || base == "sqlite" || base == "sqlite3" || base == "jdbc" || base == "file"
}

func isPostgresScheme(s string) bool {
	switch s {
	case "postgres", "postgresql", "pgsql", "pg":
		return true
	}
	return false
}

// splitScheme splits "scheme:rest" where scheme is RFC 3986 shaped (a
// letter, then isSchemeByte bytes). schemeBefore (redact.go) finds the
// same shape backwards from a "://".
func splitScheme(s string) (scheme, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && isSchemeByte(c):
		case i > 0 && c == ':':
			return s[:i], s[i+1:], true
		default:
			return "", s, false
		}
	}
	return "", s, false
}

// sanitizeScheme returns a scheme safe to quote: short and made of scheme
// characters only (splitScheme guarantees the latter).
func sanitizeScheme(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// checkPasted rejects shell and YAML assignment lines pasted as the value.
func (v *validation) checkPasted(s string) error {
	const hint = "set the variable to the part after '=' only, without the name, quotes or export"
	if strings.HasPrefix(s, "export ") || strings.HasPrefix(s, "set ") || strings.HasPrefix(s, "ENV ") {
		return v.fail(CodePastedAssignment, "the value is a whole shell or Dockerfile line", hint)
	}
	if looksADONet(s) {
		return v.fail(CodeUnsupportedScheme, "the value is a .NET (ADO.NET or Npgsql) connection string",
			"write it as a URL: postgres://user:password@host:5432/dbname")
	}
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 || i == len(s) {
		return nil
	}
	name, rest := s[:i], s[i:]
	switch {
	case rest[0] == '=':
		value := strings.TrimLeft(rest[1:], "\"'")
		_, after, hasScheme := splitScheme(value)
		switch {
		case hasScheme && strings.HasPrefix(after, "//"):
			return v.fail(CodePastedAssignment, "the value is a NAME=value assignment", hint)
		case strings.ToUpper(name) == name && strings.ToLower(name) != name:
			err := v.fail(CodePastedAssignment, "the value is a NAME=value assignment", hint)
			if verr := err.(*ValidationError); verr.Input == v.raw {
				// Nothing was masked, but a value that is not a URL may
				// still be a password (DATABASE_URL=hunter2): keep the name.
				verr.Input = fmt.Sprintf("%s=<%d characters, not shown>", name, utf8.RuneCountInString(rest[1:]))
			}
			return err
		case strings.ToLower(name) != name:
			// A mixed-case "name" without a URL after '=' is more likely
			// a bare secret, such as a base64 password ("YWJj…9PQ=="),
			// than a variable: it is described, not repeated.
			return v.describe("a value", CodePastedAssignment, "the value is a NAME=value assignment", hint)
		}
	case strings.HasPrefix(rest, ": ") || strings.HasPrefix(rest, ":\t"):
		return v.fail(CodePastedAssignment, "the value is a YAML \"name: value\" line", hint)
	}
	return nil
}

// checkTemplates rejects unexpanded variable references and template
// markers anywhere in the value.
func (v *validation) checkTemplates(s string) error {
	const reason = "the value holds an unexpanded template (%s); the variable it refers to was not substituted"
	const hint = "set the variable to the final URL; if a password really contains this text, percent-encode its $, { or < (%24, %7B, %3C)"
	switch {
	case strings.Contains(s, "${"):
		return v.fail(CodePlaceholder, fmt.Sprintf(reason, "${…}"), hint)
	case strings.Contains(s, "{{"):
		return v.fail(CodePlaceholder, fmt.Sprintf(reason, "{{…}}"), hint)
	}
	for i := strings.IndexByte(s, '<'); i >= 0; {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		if inner := s[i+1 : i+j]; inner != "" && isPlaceholderWord(inner) {
			return v.fail(CodePlaceholder, fmt.Sprintf(reason, "<…>"), hint)
		}
		k := strings.IndexByte(s[i+1:], '<')
		if k < 0 {
			break
		}
		i += 1 + k
	}
	return nil
}

// isJSONObject reports a value that starts like a JSON object: '{', but
// not a "{{ … }}" template.
func isJSONObject(s string) bool { return s != "" && s[0] == '{' && !strings.HasPrefix(s, "{{") }

// variableReference reports a whole value that is a reference to a
// variable in a shell, Makefile or Windows form: $NAME, $(NAME), %NAME%
// (${NAME} is caught with the other templates), and returns the name.
func variableReference(s string) (string, bool) {
	switch {
	case len(s) > 3 && strings.HasPrefix(s, "$(") && s[len(s)-1] == ')':
		s = s[2 : len(s)-1]
	case len(s) > 2 && s[0] == '%' && s[len(s)-1] == '%':
		s = s[1 : len(s)-1]
	case len(s) > 1 && s[0] == '$':
		s = s[1:]
	default:
		return "", false
	}
	return s, isIdent(s)
}

// isPlaceholderWord reports text such as "password", "DB_HOST" or "your-user".
func isPlaceholderWord(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r == ' ' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// componentPlaceholder reports whether one decoded URL component is a
// template stand-in: $DB_PASS, [YOUR-PASSWORD], __PASSWORD__, your_password.
// A '$' followed by lower-case letters ("$ecret") is a plausible password
// and is not a placeholder.
func componentPlaceholder(s string) bool {
	if len(s) < 2 {
		return false
	}
	switch s[0] {
	case '$', '[', '_', 'y', 'Y', 'm', 'M', 'd', 'D', 'H', 'U', 'P':
	default:
		return false // no stand-in below starts with another character
	}
	if s[0] == '$' && isEnvName(s[1:]) {
		return true
	}
	if s[0] == '[' && s[len(s)-1] == ']' && strings.IndexByte(s, ':') < 0 && isPlaceholderWord(s[1:len(s)-1]) {
		return true
	}
	if len(s) > 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__") && isIdent(s[2:len(s)-2]) {
		return true
	}
	var buf [40]byte
	l := squash(&buf, s)
	switch string(l) {
	case "yourpassword", "yourdbpassword", "yourpass", "mypassword", "dbpassword", "yourusername", "yourhost",
		"yourhostname", "yourdatabase", "yourdbname", "yourdb", "dbhost", "dbname", "dbuser":
		return s != string(l) || strings.ToUpper(s) == s // "dbname" is a fine database name; "DB_NAME" is a stand-in
	}
	switch s {
	case "HOST", "HOSTNAME", "USER", "USERNAME", "PASSWORD", "DATABASE", "DBNAME", "PORT":
		return true
	}
	return false
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// looksADONet reports a "Key=Value;Key=Value" connection string of the kind
// .NET drivers (ADO.NET, Npgsql) use.
func looksADONet(s string) bool {
	if strings.IndexByte(s, ';') < 0 || strings.Contains(s, "://") {
		return false
	}
	lower := strings.ToLower(s)
	for _, k := range []string{"server=", "host=", "data source=", "username=", "user id=", "uid=", "initial catalog="} {
		if strings.HasPrefix(lower, k) || strings.Contains(lower, ";"+k) || strings.Contains(lower, "; "+k) {
			return true
		}
	}
	return false
}

// closeScheme suggests a supported scheme within two edits of s, for typos
// such as "posgresql" or "sqllite".
func closeScheme(s string) string {
	best, bestDist := "", 3
	for _, k := range []string{"postgresql", "postgres", "sqlite"} {
		if d := editDistance(s, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 32 || len(b) > 32 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// isEnvName reports an environment-variable name by convention: upper-case
// letters, digits and '_'.
func isEnvName(s string) bool {
	return isIdent(s) && strings.ToUpper(s) == s
}

// squash lower-cases s and drops '-', '_' and spaces into buf: both
// "YOUR-PASSWORD" and "your_password" become "yourpassword".
func squash(buf *[40]byte, s string) []byte {
	if len(s) > len(buf) {
		return nil
	}
	b := buf[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == '_' || c == ' ':
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		default:
			b = append(b, c)
		}
	}
	return b
}

// isPlainEdge reports an ASCII byte that is neither space nor control, so
// trimming cannot start there.
func isPlainEdge(c byte) bool { return c > ' ' && c < 0x7f }

// Byte classes for clean's single pass: ASCII controls and DEL, NUL, the
// lead byte of the C1 controls (U+0080–U+009F are 0xC2 0x80–0x9F in UTF-8;
// the input is valid UTF-8 by then), and the characters templates use.
const (
	classControl = 1 + iota
	classNUL
	classC2
	classTemplate
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = classControl
	}
	t[0], t[0x7f], t[0xc2] = classNUL, classControl, classC2
	t['$'], t['{'], t['<'] = classTemplate, classTemplate, classTemplate
	return t
}()
