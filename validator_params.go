package dbfallback

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// paramAction says what Validate does with a parameter it knows.
type paramAction uint8

const (
	// keep passes the parameter to the driver once its value is checked.
	keep paramAction = iota
	// drop removes it with a note: it belongs to another tool (named by
	// the rule) and a PostgreSQL server would reject it.
	drop
	// rename translates it into the rule's "to" key, with a note.
	rename
	// pool keeps it, checked, for the connection pool, in Target.Pool and
	// never in the DSN: pgxpool reads it (Target.PgxPoolConfig), Open
	// sizes its database/sql pool from it where database/sql has the
	// setting, and a PostgreSQL server would reject it.
	pool
)

// paramRule is everything this package knows about one connection
// parameter. The parser, the notes, the DSN writer and the redactor all
// read [paramRules]: adding a key there is the one change a new parameter
// needs.
type paramRule struct {
	action paramAction
	// to is the key a renamed parameter becomes.
	to string
	// tool is whose parameter it is: "libpq" and "pgx" keys are accepted in
	// keyword/value strings; "server" keys are PostgreSQL run-time
	// parameters; the others name the tool a dropped key belongs to, or
	// the format of a foreign connection string the redactor must know.
	tool string
	// dialect is where the parser reads the key: Postgres, SQLite, or ""
	// for keys of other formats (ADO.NET, ODBC, AWS secrets) that only the
	// redactor uses, to tell where a secret value ends.
	dialect Dialect
	// values lists the allowed values in lower case; nil allows any.
	values []string
	// count marks a non-negative whole number; positive, one of at least 1.
	count, positive bool
	// duration marks a non-negative Go duration ("90s", "1h30m").
	duration bool
	// secret marks a value that is never shown: not in Target.Params, not
	// in a note, masked in every String, error and log line.
	secret bool
}

// paramRules is the one table of parameter rules. Keys are case-sensitive,
// as in libpq; the redactor also matches them case-insensitively. A key
// without a rule is a run-time parameter for the server, and a secret when
// its name looks like one (see isSecretKey).
var paramRules = map[string]paramRule{
	// Connection keywords of libpq that pgx reads.
	"host":                 {tool: "libpq", dialect: Postgres},
	"hostaddr":             {tool: "libpq", dialect: Postgres},
	"port":                 {tool: "libpq", dialect: Postgres},
	"dbname":               {tool: "libpq", dialect: Postgres},
	"user":                 {tool: "libpq", dialect: Postgres},
	"password":             {tool: "libpq", dialect: Postgres, secret: true},
	"passfile":             {tool: "libpq", dialect: Postgres}, // a path, not a secret
	"connect_timeout":      {tool: "libpq", dialect: Postgres, count: true},
	"sslmode":              {tool: "libpq", dialect: Postgres, values: []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}},
	"sslkey":               {tool: "libpq", dialect: Postgres}, // a path, not a secret
	"sslcert":              {tool: "libpq", dialect: Postgres},
	"sslcertmode":          {tool: "libpq", dialect: Postgres, values: []string{"disable", "allow", "require"}},
	"sslrootcert":          {tool: "libpq", dialect: Postgres},
	"sslnegotiation":       {tool: "libpq", dialect: Postgres, values: []string{"postgres", "direct"}},
	"sslpassword":          {tool: "libpq", dialect: Postgres, secret: true},
	"sslsni":               {tool: "libpq", dialect: Postgres, values: []string{"0", "1"}},
	"krbspn":               {tool: "libpq", dialect: Postgres},
	"krbsrvname":           {tool: "libpq", dialect: Postgres},
	"target_session_attrs": {tool: "libpq", dialect: Postgres, values: []string{"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}},
	"service":              {tool: "libpq", dialect: Postgres},
	"servicefile":          {tool: "libpq", dialect: Postgres},
	"min_protocol_version": {tool: "libpq", dialect: Postgres, values: []string{"3.0", "3.2", "latest"}},
	"max_protocol_version": {tool: "libpq", dialect: Postgres, values: []string{"3.0", "3.2", "latest"}},
	"channel_binding":      {tool: "libpq", dialect: Postgres, values: []string{"disable", "prefer", "require"}},
	"require_auth":         {tool: "libpq", dialect: Postgres},
	"application_name":     {tool: "libpq", dialect: Postgres},
	"client_encoding":      {tool: "libpq", dialect: Postgres},
	"options":              {tool: "libpq", dialect: Postgres},
	"replication":          {tool: "libpq", dialect: Postgres},

	// pgx's own keys.
	"default_query_exec_mode":    {tool: "pgx", dialect: Postgres, values: []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"}},
	"statement_cache_capacity":   {tool: "pgx", dialect: Postgres, count: true},
	"description_cache_capacity": {tool: "pgx", dialect: Postgres, count: true},
	"database":                   {tool: "pgx", dialect: Postgres, action: rename, to: "dbname"},

	// libpq keywords pgx lacks: pgx would send them to the server, which
	// rejects them.
	"fallback_application_name": {tool: "libpq", dialect: Postgres, action: rename, to: "application_name"},
	"requiressl":                {tool: "libpq", dialect: Postgres, action: rename, to: "sslmode"},
	"gssencmode":                {tool: "libpq", dialect: Postgres, action: drop},
	"keepalives":                {tool: "libpq", dialect: Postgres, action: drop},
	"keepalives_idle":           {tool: "libpq", dialect: Postgres, action: drop},
	"keepalives_interval":       {tool: "libpq", dialect: Postgres, action: drop},
	"keepalives_count":          {tool: "libpq", dialect: Postgres, action: drop},
	"tcp_user_timeout":          {tool: "libpq", dialect: Postgres, action: drop},
	"sslcompression":            {tool: "libpq", dialect: Postgres, action: drop},
	"sslcrl":                    {tool: "libpq", dialect: Postgres, action: drop},
	"sslcrldir":                 {tool: "libpq", dialect: Postgres, action: drop},
	"sslkeylogfile":             {tool: "libpq", dialect: Postgres, action: drop}, // a path, not a secret
	"requirepeer":               {tool: "libpq", dialect: Postgres, action: drop},
	"ssl_min_protocol_version":  {tool: "libpq", dialect: Postgres, action: drop},
	"ssl_max_protocol_version":  {tool: "libpq", dialect: Postgres, action: drop},
	"gsslib":                    {tool: "libpq", dialect: Postgres, action: drop},
	"gssdelegation":             {tool: "libpq", dialect: Postgres, action: drop},
	"load_balance_hosts":        {tool: "libpq", dialect: Postgres, action: drop},
	"scram_client_key":          {tool: "libpq", dialect: Postgres, action: drop, secret: true},
	"scram_server_key":          {tool: "libpq", dialect: Postgres, action: drop, secret: true},
	"oauth_issuer":              {tool: "libpq", dialect: Postgres, action: drop},
	"oauth_client_id":           {tool: "libpq", dialect: Postgres, action: drop},
	"oauth_client_secret":       {tool: "libpq", dialect: Postgres, action: drop, secret: true},
	"oauth_scope":               {tool: "libpq", dialect: Postgres, action: drop},

	// PostgreSQL run-time parameters often put in URLs.
	"search_path":                         {tool: "server", dialect: Postgres},
	"statement_timeout":                   {tool: "server", dialect: Postgres},
	"lock_timeout":                        {tool: "server", dialect: Postgres},
	"idle_in_transaction_session_timeout": {tool: "server", dialect: Postgres},
	"timezone":                            {tool: "server", dialect: Postgres},
	"TimeZone":                            {tool: "server", dialect: Postgres},
	"datestyle":                           {tool: "server", dialect: Postgres},
	"DateStyle":                           {tool: "server", dialect: Postgres},
	"intervalstyle":                       {tool: "server", dialect: Postgres},
	"IntervalStyle":                       {tool: "server", dialect: Postgres},
	"work_mem":                            {tool: "server", dialect: Postgres},
	"role":                                {tool: "server", dialect: Postgres},
	"default_transaction_isolation":       {tool: "server", dialect: Postgres},
	"default_transaction_read_only":       {tool: "server", dialect: Postgres},
	"standard_conforming_strings":         {tool: "server", dialect: Postgres},
	"extra_float_digits":                  {tool: "server", dialect: Postgres},

	// Other tools' keys, translated.
	"ssl":              {tool: "JDBC", dialect: Postgres, action: rename, to: "sslmode"},
	"schema":           {tool: "Prisma", dialect: Postgres, action: rename, to: "search_path"},
	"currentSchema":    {tool: "JDBC", dialect: Postgres, action: rename, to: "search_path"},
	"pgbouncer":        {tool: "Prisma", dialect: Postgres, action: rename, to: "default_query_exec_mode"},
	"ApplicationName":  {tool: "JDBC", dialect: Postgres, action: rename, to: "application_name"},
	"applicationName":  {tool: "JDBC", dialect: Postgres, action: rename, to: "application_name"},
	"loginTimeout":     {tool: "JDBC", dialect: Postgres, action: rename, to: "connect_timeout"},
	"connectTimeout":   {tool: "JDBC", dialect: Postgres, action: rename, to: "connect_timeout"},
	"targetServerType": {tool: "JDBC", dialect: Postgres, action: rename, to: "target_session_attrs"},
	"unix_sock":        {tool: "pg8000", dialect: Postgres, action: rename, to: "host"},
	"encoding":         {tool: "Rails", dialect: Postgres, action: rename, to: "client_encoding"},

	// Other tools' keys, dropped.
	"connection_limit":              {tool: "Prisma", dialect: Postgres, action: drop},
	"pool_timeout":                  {tool: "Prisma", dialect: Postgres, action: drop},
	"socket_timeout":                {tool: "Prisma", dialect: Postgres, action: drop},
	"sslaccept":                     {tool: "Prisma", dialect: Postgres, action: drop},
	"sslidentity":                   {tool: "Prisma", dialect: Postgres, action: drop},
	"statement_cache_size":          {tool: "Prisma", dialect: Postgres, action: drop},
	"max_idle_connection_lifetime":  {tool: "Prisma", dialect: Postgres, action: drop},
	"api_key":                       {tool: "Prisma", dialect: Postgres, action: drop, secret: true},
	"pool_max_conns":                {tool: "pgxpool", dialect: Postgres, action: pool, count: true, positive: true},
	"pool_min_conns":                {tool: "pgxpool", dialect: Postgres, action: pool, count: true},
	"pool_min_idle_conns":           {tool: "pgxpool", dialect: Postgres, action: pool, count: true},
	"pool_max_conn_lifetime":        {tool: "pgxpool", dialect: Postgres, action: pool, duration: true},
	"pool_max_conn_lifetime_jitter": {tool: "pgxpool", dialect: Postgres, action: pool, duration: true},
	"pool_max_conn_idle_time":       {tool: "pgxpool", dialect: Postgres, action: pool, duration: true},
	"pool_health_check_period":      {tool: "pgxpool", dialect: Postgres, action: pool, duration: true},
	"pool_ping_timeout":             {tool: "pgxpool", dialect: Postgres, action: pool, duration: true},
	"pool":                          {tool: "Rails", dialect: Postgres, action: drop},
	"reconnect":                     {tool: "Rails", dialect: Postgres, action: drop},
	"prepared_statements":           {tool: "Rails", dialect: Postgres, action: drop},
	"advisory_locks":                {tool: "Rails", dialect: Postgres, action: drop},
	"checkout_timeout":              {tool: "Rails", dialect: Postgres, action: drop},
	"prepared_statement_cache_size": {tool: "asyncpg", dialect: Postgres, action: drop},
	"sslfactory":                    {tool: "JDBC", dialect: Postgres, action: drop},
	"sslfactoryarg":                 {tool: "JDBC", dialect: Postgres, action: drop},
	"socketTimeout":                 {tool: "JDBC", dialect: Postgres, action: drop},
	"tcpKeepAlive":                  {tool: "JDBC", dialect: Postgres, action: drop},
	"prepareThreshold":              {tool: "JDBC", dialect: Postgres, action: drop},
	"reWriteBatchedInserts":         {tool: "JDBC", dialect: Postgres, action: drop},
	"stringtype":                    {tool: "JDBC", dialect: Postgres, action: drop},
	"loadBalanceHosts":              {tool: "JDBC", dialect: Postgres, action: drop},
	"sslhostnameverifier":           {tool: "JDBC", dialect: Postgres, action: drop},
	"binaryTransfer":                {tool: "JDBC", dialect: Postgres, action: drop},
	"preferQueryMode":               {tool: "JDBC", dialect: Postgres, action: drop},
	"defaultRowFetchSize":           {tool: "JDBC", dialect: Postgres, action: drop},
	"loggerLevel":                   {tool: "JDBC", dialect: Postgres, action: drop},
	"readOnly":                      {tool: "JDBC", dialect: Postgres, action: drop},
	"autosave":                      {tool: "JDBC", dialect: Postgres, action: drop},

	// SQLite URI parameters and go-sqlite3's own.
	"mode":              {tool: "SQLite", dialect: SQLite, values: []string{"ro", "rw", "rwc", "memory"}},
	"cache":             {tool: "SQLite", dialect: SQLite, values: []string{"shared", "private"}},
	"vfs":               {tool: "SQLite", dialect: SQLite},
	"immutable":         {tool: "SQLite", dialect: SQLite},
	"nolock":            {tool: "SQLite", dialect: SQLite},
	"psow":              {tool: "SQLite", dialect: SQLite},
	"_auth":             {tool: "go-sqlite3", dialect: SQLite},
	"_auth_user":        {tool: "go-sqlite3", dialect: SQLite},
	"_auth_pass":        {tool: "go-sqlite3", dialect: SQLite, secret: true},
	"_auth_crypt":       {tool: "go-sqlite3", dialect: SQLite},
	"_auth_salt":        {tool: "go-sqlite3", dialect: SQLite},
	"_busy_timeout":     {tool: "go-sqlite3", dialect: SQLite},
	"_journal_mode":     {tool: "go-sqlite3", dialect: SQLite},
	"_txlock":           {tool: "go-sqlite3", dialect: SQLite},
	"_fk":               {tool: "go-sqlite3", dialect: SQLite},
	"_foreign_keys":     {tool: "go-sqlite3", dialect: SQLite},
	"_synchronous":      {tool: "go-sqlite3", dialect: SQLite},
	"_loc":              {tool: "go-sqlite3", dialect: SQLite},
	"uri":               {tool: "SQLAlchemy", dialect: SQLite},
	"check_same_thread": {tool: "Python sqlite3", dialect: SQLite, action: drop},
	"timeout":           {tool: "Python sqlite3", dialect: SQLite, action: drop},
	"isolation_level":   {tool: "Python sqlite3", dialect: SQLite, action: drop},
	"cached_statements": {tool: "Python sqlite3", dialect: SQLite, action: drop},
	"detect_types":      {tool: "Python sqlite3", dialect: SQLite, action: drop},
	"factory":           {tool: "Python sqlite3", dialect: SQLite, action: drop},

	// Keys of foreign connection strings, known to the redactor only: they
	// end a secret value that runs into them.
	"server":                   {tool: "ADO.NET"},
	"data source":              {tool: "ADO.NET"},
	"initial catalog":          {tool: "ADO.NET"},
	"user id":                  {tool: "ADO.NET"},
	"uid":                      {tool: "ODBC"},
	"pwd":                      {tool: "ODBC", secret: true},
	"passwd":                   {tool: "ODBC", secret: true},
	"driver":                   {tool: "ODBC"},
	"encrypt":                  {tool: "ADO.NET"},
	"trust server certificate": {tool: "ADO.NET"},
	"integrated security":      {tool: "ADO.NET"},
	"username":                 {tool: "AWS Secrets Manager"},
	"engine":                   {tool: "AWS Secrets Manager"},
	"dbInstanceIdentifier":     {tool: "AWS Secrets Manager"},
	"dbClusterIdentifier":      {tool: "AWS Secrets Manager"},
}

// foldedRules indexes paramRules by lower-cased key, for the redactor and
// for keys written in another case (PASSWORD, Password).
var foldedRules = func() map[string]paramRule {
	m := make(map[string]paramRule, len(paramRules))
	for k, r := range paramRules {
		m[strings.ToLower(k)] = r
	}
	return m
}()

// ruleFor returns the rule the parser applies to key in dialect d.
func ruleFor(key string, d Dialect) (paramRule, bool) {
	r, ok := paramRules[key]
	return r, ok && r.dialect == d
}

// isKnownParam reports a parameter name this package has a rule for, in
// any dialect.
func isKnownParam(k string) bool {
	_, ok := paramRules[k]
	return ok
}

// isKeyword reports a libpq or pgx connection keyword, or a pgxpool key
// (pgxpool reads both forms): what a keyword/value string may hold.
func isKeyword(k string) bool {
	r, ok := ruleFor(k, Postgres)
	return ok && (r.tool == "libpq" || r.tool == "pgx" || r.action == pool)
}

// secretNameParts are the pieces of a parameter name that make its value a
// secret when the table has no rule for it: "db_password", "PGPASSWORD",
// "auth_token", "x-api-key", "client_secret", "authorization" (an HTTP
// header's Basic or Bearer credentials), "app.jwt", "X-Amz-Signature" (an
// RDS IAM token's). Known keys that match but hold paths (sslkey, passfile,
// sslkeylogfile) have rules saying so.
var secretNameParts = []string{"pass", "pwd", "secret", "token", "key", "credential", "authorization", "jwt", "signature"}

// isSecretKey reports whether the value of parameter k must never be shown:
// its rule says so (matched exactly, then case-insensitively), or it has no
// rule and its name contains one of secretNameParts.
func isSecretKey(k string) bool {
	if r, ok := paramRules[k]; ok {
		return r.secret
	}
	lower := strings.ToLower(k)
	if r, ok := foldedRules[lower]; ok {
		return r.secret
	}
	for _, p := range secretNameParts {
		if strings.Contains(lower, p) {
			return true
		}
	}
	return false
}

// applyPGSetting records one setting in c, following its rule: core parts
// of the connection go to their fields, other tools' keys are translated
// or dropped with a note, values are checked, and keys without a rule are
// kept as server run-time parameters.
func (v *validation) applyPGSetting(c *pgCore, key, val string) error {
	// The parts of the connection go to their own fields; their rules (in
	// the table) only say they are libpq's, and which one is secret.
	switch key {
	case "password":
		// An empty password is no password, as in libpq and pgx (which
		// then look in the password file).
		c.password, c.hasPassword = val, val != ""
		return nil
	case "host", "hostaddr", "port", "dbname", "user":
		// A port must be digits and a host a host name or address (see
		// checkHost): only a name, a user or a socket directory can carry
		// a secret through.
		if (key == "dbname" || key == "user" || strings.HasPrefix(val, "/")) && holdsSecret(val) {
			return v.settingHoldsSecret(key)
		}
		if c, _ := userColon(val); key == "user" && c >= 0 {
			// "app:pw" as a user name (a percent-encoded ':' in the URL,
			// PGUSER, user=): printed as the user, it would show the
			// password.
			return v.settingHoldsSecret(key)
		}
		switch key {
		case "host":
			c.host, c.hasHost = val, val != ""
		case "hostaddr":
			c.hostaddr, c.hasHostaddr = val, val != ""
		case "port":
			c.port, c.hasPort = val, val != ""
		case "dbname":
			c.dbname = val
		case "user":
			c.user = val
		}
		return nil
	}
	rule, known := ruleFor(key, Postgres)
	if !known {
		c.set(key, val)
		return nil
	}
	switch rule.action {
	case drop:
		return v.dropParam(key, val, rule)
	case rename:
		return v.translateParam(c, key, val, rule)
	case pool:
		val, err := v.checkValue(key, val, rule)
		if err != nil {
			return err
		}
		if c.pool == nil {
			c.pool = make(map[string]string, 2)
		}
		c.pool[key] = val
		return nil
	}
	if rule.tool == "libpq" && !rule.secret && rule.values == nil && !rule.count && holdsSecret(val) {
		return v.settingHoldsSecret(key)
	}
	switch key {
	case "require_auth":
		if !validRequireAuth(val) {
			return v.fail(CodeBadParam, "require_auth lists an unknown authentication method",
				"use a comma list of password, md5, gss, sspi, scram-sha-256, oauth, none (all or none prefixed with !)")
		}
	}
	val, err := v.checkValue(key, val, rule)
	if err != nil {
		return err
	}
	c.setRule(key, val, rule)
	return nil
}

// settingHoldsSecret rejects a libpq setting whose value reads like it
// holds a secret: "user=app;password=…" in a URL query is a user name to
// libpq (JDBC properties written with ';'); printed as one, it would show
// the password.
func (v *validation) settingHoldsSecret(key string) error {
	return v.fail(CodeBadParam, fmt.Sprintf("the %s setting holds what reads like a secret (name=value after ';', or user:password@)", key),
		"give each setting its own ?name=value, joined with '&'; percent-encode ';', ':' and '@' inside a value")
}

// checkValue checks a value against its rule and returns it canonical
// (enumerated values lower-cased, counts without leading zeros).
func (v *validation) checkValue(key, val string, rule paramRule) (string, error) {
	if rule.duration {
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return "", v.fail(CodeBadParam, key+" is not a duration", "write "+key+"=30m (a Go duration: 90s, 1h30m)")
		}
		return val, nil
	}
	if rule.count {
		n, err := strconv.Atoi(val)
		if err == nil && n < 1 && rule.positive {
			return "", v.fail(CodeBadParam, key+" is below 1", "write "+key+"=10 (at least 1)")
		}
		if err == nil && rule.action == pool && n > math.MaxInt32 {
			return "", v.fail(CodeBadParam, key+" is too large", "write "+key+"=10 (pgxpool counts are 32-bit)")
		}
		if err != nil || n < 0 {
			if key == "connect_timeout" {
				return "", v.fail(CodeBadConnectTimeout, "connect_timeout is not a whole number of seconds",
					"write connect_timeout=10 (seconds, no unit)")
			}
			return "", v.fail(CodeBadParam, key+" is not a non-negative whole number", "write "+key+"=512")
		}
		return strconv.Itoa(n), nil
	}
	if rule.values == nil {
		return val, nil
	}
	lower := strings.ToLower(val)
	if !slices.Contains(rule.values, lower) {
		code := CodeBadParam
		switch key {
		case "sslmode":
			code = CodeBadSSLMode
		case "target_session_attrs":
			code = CodeBadTargetSessionAttr
		}
		return "", v.fail(code, fmt.Sprintf("%s has an unknown value", key),
			fmt.Sprintf("use one of: %s", strings.Join(rule.values, ", ")))
	}
	if lower != val {
		v.note("lower-cased the value of %s", key)
	}
	return lower, nil
}

// dropParam notes the removal of another tool's key.
func (v *validation) dropParam(key, val string, rule paramRule) error {
	switch {
	case key == "gssencmode":
		if val == "require" {
			return v.fail(CodeBadParam, "gssencmode=require asks for GSSAPI encryption, which pgx does not support",
				"use sslmode=require or verify-full for an encrypted connection")
		}
		v.note("removed gssencmode (pgx does not use GSSAPI encryption)")
	case rule.tool == "libpq":
		v.note("removed %s, a libpq setting pgx does not support (the server would reject it)", key)
	default:
		v.note("removed %s, a %s setting the server would reject", key, rule.tool)
	}
	return nil
}

// translateParam turns another tool's key into rule.to, with a note.
func (v *validation) translateParam(c *pgCore, key, val string, rule paramRule) error {
	switch key {
	case "database":
		c.dbname = val
		return nil
	case "ssl":
		switch strings.ToLower(val) {
		case "true", "1", "require":
			return v.setParam(c, rule.to, "require", "translated ssl="+strings.ToLower(val)+" to sslmode=require")
		case "false", "0", "disable":
			return v.setParam(c, rule.to, "disable", "translated ssl="+strings.ToLower(val)+" to sslmode=disable")
		case "prefer", "allow", "verify-ca", "verify-full":
			return v.setParam(c, rule.to, strings.ToLower(val), "translated asyncpg's ssl= to sslmode=")
		}
		return v.fail(CodeBadSSLMode, "the ssl parameter is neither true nor false",
			"use sslmode=disable, require, verify-ca or verify-full")
	case "requiressl":
		if val == "1" {
			return v.setParam(c, rule.to, "require", "translated requiressl=1 to sslmode=require")
		}
		v.note("removed requiressl=%s (obsolete; sslmode=prefer is the default)", boolWord(val))
		return nil
	case "schema", "currentSchema":
		if _, has := c.params[rule.to]; has {
			v.note("removed %s: search_path is already set", key)
			return nil
		}
		v.note("translated %s=%s to search_path (a PostgreSQL server has no %q parameter)", key, safeValue(val), key)
		c.set(rule.to, val)
		return nil
	case "pgbouncer":
		if strings.EqualFold(val, "true") || val == "1" {
			return v.setParam(c, rule.to, "exec",
				"translated Prisma's pgbouncer=true to default_query_exec_mode=exec (no named prepared statements)")
		}
		v.note("removed Prisma's pgbouncer=%s", boolWord(val))
		return nil
	case "loginTimeout", "connectTimeout":
		if n, err := strconv.Atoi(val); err == nil && n >= 0 {
			v.note("translated JDBC's %s to connect_timeout", key)
			c.set(rule.to, strconv.Itoa(n))
			return nil
		}
		v.note("removed JDBC's %s: not a whole number of seconds", key)
		return nil
	case "targetServerType":
		if tsa, ok := jdbcServerTypes[val]; ok {
			return v.setParam(c, rule.to, tsa, "translated JDBC's targetServerType to target_session_attrs")
		}
		v.note("removed JDBC's targetServerType: pgx has no equivalent of that value")
		return nil
	case "unix_sock":
		dir, port, ok := socketFile(val)
		if !ok {
			dir = val
		}
		c.host, c.hasHost = dir, dir != ""
		if ok {
			c.port, c.hasPort = port, true
		}
		v.note("translated pg8000's unix_sock to host (the socket directory)")
		return nil
	case "encoding":
		return v.setParam(c, rule.to, val, "translated Rails' encoding to client_encoding")
	}
	// A plain alias (fallback_application_name, JDBC's ApplicationName):
	// the key's own setting wins.
	if _, has := c.params[rule.to]; has {
		v.note("removed %s: %s is already set", key, rule.to)
		return nil
	}
	v.note("translated %s to %s", key, rule.to)
	c.set(rule.to, val)
	return nil
}

// jdbcServerTypes maps JDBC's targetServerType to target_session_attrs.
var jdbcServerTypes = map[string]string{"primary": "primary", "master": "primary", "secondary": "standby",
	"slave": "standby", "preferSecondary": "prefer-standby", "preferSlave": "prefer-standby", "any": "any"}

// finishParams resolves translations that depend on the final set.
func (v *validation) finishParams(c *pgCore) {
	if _, ok := c.params["search_path"]; ok {
		if opt, has := c.params["options"]; has && strings.Contains(opt, "search_path") {
			delete(c.params, "search_path")
			v.note("kept the search_path given in options and dropped the separate schema setting")
		}
	}
}

func (v *validation) setParam(c *pgCore, key, val, note string) error {
	c.set(key, val)
	v.note("%s", note)
	return nil
}

func boolWord(s string) string {
	if len(s) > 8 {
		return "…"
	}
	return safeValue(s)
}

// safeValue returns a non-secret parameter value for a note, shortened.
func safeValue(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func validRequireAuth(s string) bool {
	if s == "" {
		return true
	}
	methods := []string{"password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none"}
	parts := strings.Split(s, ",")
	neg := strings.HasPrefix(parts[0], "!")
	for _, p := range parts {
		if strings.HasPrefix(p, "!") != neg || !slices.Contains(methods, strings.TrimPrefix(p, "!")) {
			return false
		}
	}
	return true
}
