package dbfallback

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// knownKeyword lists libpq and pgx connection keywords that pass through
// unchanged (after their value is checked).
var knownKeyword = map[string]struct{}{
	"host": {}, "hostaddr": {}, "port": {}, "dbname": {}, "user": {}, "password": {},
	"passfile": {}, "connect_timeout": {}, "sslmode": {}, "sslkey": {}, "sslcert": {}, "sslcertmode": {},
	"sslrootcert": {}, "sslnegotiation": {}, "sslpassword": {}, "sslsni": {}, "krbspn": {}, "krbsrvname": {},
	"target_session_attrs": {}, "service": {}, "servicefile": {}, "min_protocol_version": {},
	"max_protocol_version": {}, "channel_binding": {}, "require_auth": {}, "application_name": {},
	"client_encoding": {}, "options": {}, "replication": {}, "default_query_exec_mode": {},
	"statement_cache_capacity": {}, "description_cache_capacity": {},
	"fallback_application_name": {}, "keepalives": {}, "keepalives_idle": {}, "keepalives_interval": {},
	"keepalives_count": {}, "tcp_user_timeout": {}, "sslcompression": {}, "sslcrl": {}, "sslcrldir": {},
	"requirepeer": {}, "ssl_min_protocol_version": {}, "ssl_max_protocol_version": {}, "gssencmode": {},
	"gsslib": {}, "gssdelegation": {}, "load_balance_hosts": {}, "requiressl": {}, "scram_client_key": {},
	"scram_server_key": {}, "oauth_issuer": {}, "oauth_client_id": {}, "oauth_client_secret": {}, "oauth_scope": {},
}

// foreignParams are settings of other tools that a PostgreSQL server would
// reject as unknown run-time parameters; they are removed with a note.
var foreignParams = map[string]string{
	"connection_limit":              "Prisma",
	"pool_timeout":                  "Prisma",
	"socket_timeout":                "Prisma",
	"sslaccept":                     "Prisma",
	"sslidentity":                   "Prisma",
	"statement_cache_size":          "Prisma",
	"max_idle_connection_lifetime":  "Prisma",
	"pool_max_conns":                "pgxpool",
	"pool_min_conns":                "pgxpool",
	"pool_min_idle_conns":           "pgxpool",
	"pool_max_conn_lifetime":        "pgxpool",
	"pool_max_conn_lifetime_jitter": "pgxpool",
	"pool_max_conn_idle_time":       "pgxpool",
	"pool_health_check_period":      "pgxpool",
	"pool":                          "Rails",
	"reconnect":                     "Rails",
	"prepared_statements":           "Rails",
	"advisory_locks":                "Rails",
	"checkout_timeout":              "Rails",
	"prepared_statement_cache_size": "asyncpg",
	"sslfactory":                    "JDBC",
	"sslfactoryarg":                 "JDBC",
	"socketTimeout":                 "JDBC",
	"tcpKeepAlive":                  "JDBC",
	"prepareThreshold":              "JDBC",
	"reWriteBatchedInserts":         "JDBC",
	"stringtype":                    "JDBC",
	"loadBalanceHosts":              "JDBC",
	"sslhostnameverifier":           "JDBC",
	"binaryTransfer":                "JDBC",
	"preferQueryMode":               "JDBC",
	"defaultRowFetchSize":           "JDBC",
	"loggerLevel":                   "JDBC",
	"readOnly":                      "JDBC",
	"autosave":                      "JDBC",
	"keepalives":                    "libpq",
	"keepalives_idle":               "libpq",
	"keepalives_interval":           "libpq",
	"keepalives_count":              "libpq",
	"tcp_user_timeout":              "libpq",
	"sslcompression":                "libpq",
	"sslcrl":                        "libpq",
	"sslcrldir":                     "libpq",
	"requirepeer":                   "libpq",
	"ssl_min_protocol_version":      "libpq",
	"ssl_max_protocol_version":      "libpq",
	"gsslib":                        "libpq",
	"gssdelegation":                 "libpq",
	"load_balance_hosts":            "libpq",
	"scram_client_key":              "libpq",
	"scram_server_key":              "libpq",
	"oauth_issuer":                  "libpq",
	"oauth_client_id":               "libpq",
	"oauth_client_secret":           "libpq",
	"oauth_scope":                   "libpq",
}

var enumParams = map[string][]string{
	"sslmode":                 {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
	"target_session_attrs":    {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"},
	"channel_binding":         {"disable", "prefer", "require"},
	"sslnegotiation":          {"postgres", "direct"},
	"sslcertmode":             {"disable", "allow", "require"},
	"min_protocol_version":    {"3.0", "3.2", "latest"},
	"max_protocol_version":    {"3.0", "3.2", "latest"},
	"default_query_exec_mode": {"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"},
	"sslsni":                  {"0", "1"},
}

// applyPGSetting records one setting in c, translating or dropping it with
// a note where it belongs to another tool.
func (v *validation) applyPGSetting(c *pgCore, key, val string) error {
	switch key {
	case "host":
		c.host, c.hasHost = val, val != ""
		return nil
	case "hostaddr":
		c.hostaddr, c.hasHostaddr = val, val != ""
		return nil
	case "port":
		c.port, c.hasPort = val, val != ""
		return nil
	case "dbname", "database":
		c.dbname = val
		return nil
	case "user":
		c.user = val
		return nil
	case "password":
		// An empty password is no password, as in libpq and pgx (which
		// then look in the password file).
		c.password, c.hasPassword = val, val != ""
		return nil
	}
	if tool, ok := foreignParams[key]; ok {
		if tool == "libpq" {
			v.note("removed %s, a libpq setting pgx does not support (the server would reject it)", key)
		} else {
			v.note("removed %s, a %s setting the server would reject", key, tool)
		}
		return nil
	}
	switch key {
	case "ssl":
		switch strings.ToLower(val) {
		case "true", "1", "require":
			return v.setParam(c, "sslmode", "require", "translated ssl="+strings.ToLower(val)+" to sslmode=require")
		case "false", "0", "disable":
			return v.setParam(c, "sslmode", "disable", "translated ssl="+strings.ToLower(val)+" to sslmode=disable")
		case "prefer", "allow", "verify-ca", "verify-full":
			return v.setParam(c, "sslmode", strings.ToLower(val), "translated asyncpg's ssl= to sslmode=")
		}
		return v.fail(CodeBadSSLMode, "the ssl parameter is neither true nor false",
			"use sslmode=disable, require, verify-ca or verify-full")
	case "requiressl":
		if val == "1" {
			return v.setParam(c, "sslmode", "require", "translated requiressl=1 to sslmode=require")
		}
		v.note("removed requiressl=%s (obsolete; sslmode=prefer is the default)", boolWord(val))
		return nil
	case "schema", "currentSchema", "search_path":
		if key != "search_path" {
			if _, has := c.params["search_path"]; has {
				v.note("removed %s: search_path is already set", key)
				return nil
			}
			v.note("translated %s=%s to search_path (a PostgreSQL server has no %q parameter)", key, safeValue(val), key)
		}
		c.set("search_path", val)
		return nil
	case "pgbouncer":
		if strings.EqualFold(val, "true") || val == "1" {
			return v.setParam(c, "default_query_exec_mode", "exec",
				"translated Prisma's pgbouncer=true to default_query_exec_mode=exec (no named prepared statements)")
		}
		v.note("removed Prisma's pgbouncer=%s", boolWord(val))
		return nil
	case "fallback_application_name", "ApplicationName", "applicationName":
		if _, has := c.params["application_name"]; has {
			v.note("removed %s: application_name is already set", key)
			return nil
		}
		v.note("translated %s to application_name", key)
		c.set("application_name", val)
		return nil
	case "loginTimeout", "connectTimeout":
		if n, err := strconv.Atoi(val); err == nil && n >= 0 {
			v.note("translated JDBC's %s to connect_timeout", key)
			c.set("connect_timeout", strconv.Itoa(n))
			return nil
		}
		v.note("removed JDBC's %s: not a whole number of seconds", key)
		return nil
	case "targetServerType":
		m := map[string]string{"primary": "primary", "master": "primary", "secondary": "standby",
			"slave": "standby", "preferSecondary": "prefer-standby", "preferSlave": "prefer-standby", "any": "any"}
		if tsa, ok := m[val]; ok {
			return v.setParam(c, "target_session_attrs", tsa, "translated JDBC's targetServerType to target_session_attrs")
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
		return v.setParam(c, "client_encoding", val, "translated Rails' encoding to client_encoding")
	case "gssencmode":
		if val == "require" {
			return v.fail(CodeBadParam, "gssencmode=require asks for GSSAPI encryption, which pgx does not support",
				"use sslmode=require or verify-full for an encrypted connection")
		}
		v.note("removed gssencmode (pgx does not use GSSAPI encryption)")
		return nil
	case "connect_timeout", "statement_cache_capacity", "description_cache_capacity":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			if key == "connect_timeout" {
				return v.fail(CodeBadConnectTimeout, "connect_timeout is not a whole number of seconds",
					"write connect_timeout=10 (seconds, no unit)")
			}
			return v.fail(CodeBadParam, key+" is not a non-negative whole number", "write "+key+"=512")
		}
		c.set(key, strconv.Itoa(n))
		return nil
	case "require_auth":
		if !validRequireAuth(val) {
			return v.fail(CodeBadParam, "require_auth lists an unknown authentication method",
				"use a comma list of password, md5, gss, sspi, scram-sha-256, oauth, none (all or none prefixed with !)")
		}
	}
	if allowed, ok := enumParams[key]; ok {
		lower := strings.ToLower(val)
		if !slices.Contains(allowed, lower) {
			code := CodeBadParam
			switch key {
			case "sslmode":
				code = CodeBadSSLMode
			case "target_session_attrs":
				code = CodeBadTargetSessionAttr
			}
			return v.fail(code, fmt.Sprintf("%s has an unknown value", key),
				fmt.Sprintf("use one of: %s", strings.Join(allowed, ", ")))
		}
		if lower != val {
			v.note("lower-cased the value of %s", key)
		}
		val = lower
	}
	c.set(key, val)
	return nil
}

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

func isSecretKey(k string) bool {
	switch strings.ToLower(k) {
	case "password", "sslpassword", "_auth_pass", "pass", "pwd":
		return true
	}
	return false
}

// commonSettings are server run-time parameters often put in URLs.
var commonSettings = []string{"search_path", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
	"timezone", "TimeZone", "datestyle", "DateStyle", "intervalstyle", "IntervalStyle", "work_mem", "role",
	"default_transaction_isolation", "default_transaction_read_only", "standard_conforming_strings", "extra_float_digits",
	"application_name", "client_encoding", "options", "ssl", "schema", "currentSchema", "pgbouncer", "user", "unix_sock",
	"ApplicationName", "applicationName", "loginTimeout", "connectTimeout", "targetServerType", "encoding",
	"_auth", "_auth_user", "_auth_crypt", "_auth_salt", "mode", "cache", "vfs", "immutable", "nolock", "psow",
	"_busy_timeout", "_journal_mode", "_txlock", "_fk", "_foreign_keys", "_synchronous", "_loc", "uri"}

// isKnownParam reports a parameter name this package recognises.
func isKnownParam(k string) bool {
	if _, ok := knownKeyword[k]; ok {
		return true
	}
	if _, ok := foreignParams[k]; ok {
		return true
	}
	return slices.Contains(commonSettings, k) || slices.Contains(pythonSQLiteParams, k)
}
