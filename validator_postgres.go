package dbfallback

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// setting is one decoded key/value pair of a PostgreSQL connection string,
// in the order it was written (later ones win, as in libpq).
type setting struct{ key, value string }

// urlParts is one structural reading of a postgres:// URL.
type urlParts struct {
	settings     []setting
	notes        []string
	userPlausibe bool
}

// maxAts bounds the '@' characters a URL may hold, and so the readings
// postgresURL tries: real credentials have a handful.
const maxAts = 16

const reservedHint = "percent-encode reserved characters in the user name and password: @ as %40, / as %2F, # as %23, ? as %3F, : as %3A, % as %25"

// postgresURL reads the part of a PostgreSQL URL after "scheme://".
//
// It first reads the URL as libpq (and pgx 5.11+) do: the user information
// ends at the first '@' before any '/'. When that reading is invalid (its
// host is not a host, its port not a port) and exactly one other '@' gives a
// valid reading, the password evidently holds unescaped reserved characters:
// that reading is taken and the canonical DSN percent-encodes them, so the
// driver sees the intended split. Two valid readings are rejected as
// ambiguous.
func (v *validation) postgresURL(rest string) (Target, error) {
	if strings.IndexByte(rest, ' ') >= 0 {
		return Target{}, v.fail(CodeSpace, "the URL contains a raw space",
			"percent-encode spaces as %20 (in a password too), or use libpq's keyword/value form")
	}
	if rest == "" || rest == "/" || rest == "@" || rest == "@/" {
		return Target{}, v.fail(CodeMissingTarget, "nothing follows the scheme",
			"write postgres://user:password@host:5432/dbname")
	}
	if strings.Count(rest, "@") > maxAts {
		return Target{}, v.fail(CodeAmbiguous, fmt.Sprintf("the URL holds more than %d '@' characters", maxAts),
			reservedHint)
	}
	userinfo, hasUserinfo, after := libpqSplit(rest)
	var buf [12]setting
	a, aErr := v.parseURLParts(userinfo, hasUserinfo, after, buf[:])
	if aErr == nil && a.userPlausibe {
		split := -1
		if hasUserinfo {
			split = len(userinfo)
		}
		if laterReading(rest, split) {
			return Target{}, v.fail(CodeAmbiguous,
				"the URL can be read in more than one way: '@' appears both in the credentials and after the host",
				reservedHint)
		}
		v.notes = append(v.notes, a.notes...)
		return v.buildPostgres(a.settings, "URL")
	}

	// The libpq reading fails: look for the one '@' that gives a valid URL.
	var alts []urlParts
	for i := 0; i < len(rest); i++ {
		if rest[i] != '@' || (hasUserinfo && i == len(userinfo)) {
			continue
		}
		if p, err := v.parseURLParts(rest[:i], true, rest[i+1:], nil); err == nil && p.userPlausibe {
			if laterReading(rest, i) {
				return Target{}, v.fail(CodeAmbiguous,
					"the URL can be read in more than one way: '@' appears both in the credentials and after the host",
					reservedHint)
			}
			alts = append(alts, p)
		}
	}
	if hasUserinfo {
		// libpq took "h?k=a" of "postgres://h?k=a@b" as a user name; when
		// that cannot be a user, try the URL without user information.
		if user, _, _ := strings.Cut(userinfo, ":"); strings.ContainsAny(user, "/?") {
			if p, err := v.parseURLParts("", false, rest, nil); err == nil {
				alts = append(alts, p)
			}
		}
	}
	var chosen urlParts
	switch {
	case len(alts) > 1:
		return Target{}, v.fail(CodeAmbiguous,
			"the URL can be read in more than one way: '@' or '/' appear both in the credentials and after the host",
			reservedHint)
	case len(alts) == 1:
		chosen = alts[0]
	case aErr != nil:
		return Target{}, aErr
	default:
		return Target{}, v.fail(CodeBadHost, "the part before '@' does not look like user:password",
			reservedHint)
	}
	v.notes = append(v.notes, chosen.notes...)
	return v.buildPostgres(chosen.settings, "URL")
}

// laterReading reports whether an '@' after position split (-1: none)
// gives another URL-shaped reading: "user:…" before it and hosts,
// database and parameters after it, even with a bad port. A raw '@' in a
// database name or a query value may then belong to the password, and
// guessing where the password ends could expose part of it.
func laterReading(rest string, split int) bool {
	for j := split + 1; j < len(rest); j++ {
		if rest[j] != '@' {
			continue
		}
		user, _, hasPass := strings.Cut(rest[:j], ":")
		if hasPass && indexAnyOf(user, '/', '?', '?', '?') < 0 && plausibleTail(rest[j+1:]) {
			return true
		}
	}
	return false
}

// libpqSplit finds the user information the way libpq does: up to the first
// '@' that comes before any '/'.
func libpqSplit(rest string) (userinfo string, ok bool, after string) {
	if i := indexAnyOf(rest, '@', '/', '/', '/'); i >= 0 && rest[i] == '@' {
		return rest[:i], true, rest[i+1:]
	}
	return "", false, rest
}

// parseURLParts reads user information and "hosts[/db][?query]" into
// settings. It has no side effects: notes are returned for the caller to
// keep if it chooses this reading.
func (v *validation) parseURLParts(userinfo string, hasUserinfo bool, after string, buf []setting) (urlParts, error) {
	p := urlParts{userPlausibe: true, settings: buf[:0]}
	add := func(k, val string) { p.settings = append(p.settings, setting{k, val}) }

	if hasUserinfo {
		rawUser, rawPass, hasPass := strings.Cut(userinfo, ":")
		if strings.ContainsAny(rawUser, "/?") {
			p.userPlausibe = false
		}
		if rawUser != "" {
			user, err := uriDecode(rawUser)
			if err != nil {
				return p, v.fail(CodeBadEscape, "the user name has an invalid percent-escape",
					"write % as %25; a percent-escape is % followed by two hex digits, never %00")
			}
			add("user", user)
			if c := reservedIn(rawUser); c != "" {
				p.notes = append(p.notes, fmt.Sprintf("the user name contains unescaped %s; it was percent-encoded", c))
			}
		}
		if hasPass && rawPass != "" {
			pass, err := uriDecode(rawPass)
			if err != nil {
				return p, v.fail(CodeBadEscape, "the password has an invalid percent-escape",
					"write % in a password as %25; a percent-escape is % followed by two hex digits, never %00")
			}
			add("password", pass)
			if c := reservedIn(rawPass); c != "" {
				p.notes = append(p.notes, fmt.Sprintf("the password contains unescaped %s; it was percent-encoded", c))
			}
		}
	}

	var hosts, ports []string
	emptyPort := false
	s := after
	for {
		var host string
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return p, v.fail(CodeBadHost, "an IPv6 address opens '[' but never closes it",
					"write an IPv6 host as [2001:db8::1]:5432")
			}
			raw := s[1:end]
			h, err := uriDecode(raw)
			if err != nil || h == "" {
				return p, v.fail(CodeBadHost, "the bracketed IPv6 address is empty or badly escaped",
					"write an IPv6 host as [2001:db8::1]:5432; a zone is written %25eth0")
			}
			if a, err := netip.ParseAddr(h); err != nil || !a.Is6() || !isParamName("z"+a.Zone()) {
				return p, v.fail(CodeBadHost, "the text in brackets is not an IPv6 address (with an interface name as zone)",
					"write an IPv6 host as [2001:db8::1]:5432, or [fe80::1%25eth0]:5432 with a zone")
			}
			host = h
			s = s[end+1:]
			if s != "" && !strings.ContainsRune(":/?,", rune(s[0])) {
				return p, v.fail(CodeBadHost, "unexpected text after the IPv6 address",
					"write [2001:db8::1]:5432/dbname")
			}
		} else {
			i := indexAnyOf(s, ':', '/', '?', ',')
			if i < 0 {
				i = len(s)
			}
			raw := s[:i]
			s = s[i:]
			h, err := uriDecode(raw)
			if err != nil {
				return p, v.fail(CodeBadEscape, "the host has an invalid percent-escape",
					"write a socket directory as %2Fvar%2Frun%2Fpostgresql, or put it in ?host=")
			}
			host = h
		}
		port := ""
		if strings.HasPrefix(s, ":") {
			s = s[1:]
			i := indexAnyOf(s, '/', '?', ',', ',')
			if i < 0 {
				i = len(s)
			}
			port = s[:i]
			s = s[i:]
			if strings.IndexByte(port, ':') >= 0 {
				if looksIPv6(host + ":" + port) {
					return p, v.fail(CodeUnbracketedIPv6, "an IPv6 address is written without brackets",
						"put IPv6 addresses in brackets: postgres://user@[2001:db8::1]:5432/dbname")
				}
				return p, v.fail(CodeBadPort, "the port position holds more than a number (a ':' in the password with no '@' after it?)",
					reservedHint)
			}
			if port == "" {
				emptyPort = true
			} else if d, err := uriDecode(port); err != nil {
				return p, v.fail(CodeBadPort, "the port has an invalid percent-escape", "write the port as digits")
			} else if _, err := v.parsePort(d); err != nil {
				return p, err
			}
		}
		if err := v.checkHost(host); err != nil {
			return p, err
		}
		hosts = append(hosts, host)
		ports = append(ports, port)
		if !strings.HasPrefix(s, ",") {
			break
		}
		s = s[1:]
	}
	if len(hosts) > 1 || hosts[0] != "" {
		add("host", strings.Join(hosts, ","))
	}
	anyPort := false
	for i, raw := range ports {
		d, err := uriDecode(raw)
		if err != nil {
			return p, v.fail(CodeBadPort, "the port has an invalid percent-escape", "write the port as digits")
		}
		ports[i] = d
		anyPort = anyPort || d != ""
	}
	if anyPort {
		add("port", strings.Join(ports, ","))
	}
	if emptyPort {
		p.notes = append(p.notes, "an empty port was read as the default, 5432")
	}

	if strings.HasPrefix(s, "/") {
		s = s[1:]
		db := s
		s = ""
		if i := strings.IndexByte(db, '?'); i >= 0 {
			db, s = db[:i], db[i:]
		}
		if strings.HasSuffix(db, "/") && !strings.HasSuffix(db, "//") {
			db = db[:len(db)-1]
			p.notes = append(p.notes, "removed a trailing slash after the database name")
		}
		if strings.IndexByte(db, '/') >= 0 {
			return p, v.fail(CodeBadDatabase, "the database name contains '/'",
				"the path after the host is the database name; remove the extra path, or write a literal / as %2F")
		}
		if db != "" {
			name, err := uriDecode(db)
			if err != nil {
				return p, v.fail(CodeBadEscape, "the database name has an invalid percent-escape",
					"write % as %25; a percent-escape is % followed by two hex digits")
			}
			add("dbname", name)
		}
	}
	if strings.HasPrefix(s, "?") {
		q, notes, err := v.parseQuery(s[1:])
		if err != nil {
			return p, err
		}
		p.settings = append(p.settings, q...)
		p.notes = append(p.notes, notes...)
	}
	return p, nil
}

// checkHost validates one host. An empty name is libpq's default local
// socket; the caller rejects empty entries in a list of several hosts.
func (v *validation) checkHost(host string) error {
	if host == "" || host == v.validHost {
		return nil
	}
	if componentPlaceholder(host) {
		return v.fail(CodePlaceholder, "the host is a template placeholder", "replace it with the real host name")
	}
	if !validHost(host) {
		hint := "use a host name such as db.example.com, an IPv4 address, or an IPv6 address in brackets"
		if strings.ContainsAny(host, "@#") {
			hint = reservedHint
		}
		if isAllDigits(host) {
			hint = "a number stands where the host belongs; write postgres://host:5432/dbname"
		}
		return v.fail(CodeBadHost, "the host is not a valid host name or address", hint)
	}
	v.validHost = host
	return nil
}

func looksIPv6(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return true
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		if a, err := netip.ParseAddr(s[:i]); err == nil && a.Is6() {
			return true
		}
	}
	return false
}

func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// reservedIn lists the URL-reserved characters that appear raw in s.
func reservedIn(s string) string {
	if indexAnyOf(s, '@', '#', '/', '?') < 0 && indexAnyOf(s, ':', '[', ']', ']') < 0 {
		return ""
	}
	var found []string
	for _, c := range "@#/?:[]" {
		if strings.ContainsRune(s, c) {
			found = append(found, fmt.Sprintf("'%c' (as %%%02X)", c, c))
		}
	}
	return strings.Join(found, ", ")
}

// parseQuery splits a URL query the way libpq does, but accepts an
// unescaped '=' inside a value (the first '=' separates) and skips empty
// pairs, noting both.
func (v *validation) parseQuery(q string) ([]setting, []string, error) {
	out := make([]setting, 0, 4)
	var notes []string
	for rest, more := q, true; more; {
		var pair string
		pair, rest, more = strings.Cut(rest, "&")
		if pair == "" {
			notes = appendOnce(notes, "ignored an empty query parameter (a stray '&' or '?')")
			continue
		}
		rawKey, rawVal, found := strings.Cut(pair, "=")
		if !found {
			return nil, nil, v.fail(CodeBadQuery, "a query parameter has no '=' (an '&' in a password?)",
				"write parameters as ?name=value&name=value; "+reservedHint)
		}
		key, err := uriDecode(rawKey)
		if err != nil {
			return nil, nil, v.fail(CodeBadEscape, "a query parameter name has an invalid percent-escape",
				"write % as %25; a percent-escape is % followed by two hex digits")
		}
		if !isParamName(key) {
			return nil, nil, v.fail(CodeBadQuery, "a query parameter name holds characters no parameter has (part of a password?)",
				"write parameters as ?name=value&name=value; "+reservedHint)
		}
		val, err := uriDecode(rawVal)
		if err != nil {
			what := "a query parameter value"
			if isSecretKey(key) {
				what = "the password parameter"
			} else if _, ok := knownKeyword[key]; ok {
				what = fmt.Sprintf("the %s parameter", key)
			}
			return nil, nil, v.fail(CodeBadEscape, what+" has an invalid percent-escape",
				"write % as %25; a percent-escape is % followed by two hex digits, never %00")
		}
		if strings.IndexByte(rawVal, '=') >= 0 {
			notes = append(notes, "percent-encoded an '=' inside a query parameter value")
		}
		if len(out) > 0 && isSecretKey(out[len(out)-1].key) && !isKnownParam(key) {
			return nil, nil, v.fail(CodeAmbiguous,
				"an unknown parameter follows the password parameter: the password may hold an unescaped '&'",
				"percent-encode the password's '&' as %26 (and '=' as %3D), or move the password parameter last")
		}
		out = append(out, setting{key, val})
	}
	return out, notes, nil
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// uriDecode percent-decodes like libpq: '%' and two hex digits, never %00.
func uriDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 || hi<<4|lo == 0 {
			return "", errBadEscape
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

var errBadEscape = fmt.Errorf("invalid percent-escape")

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// jdbcShortPostgres reads pgJDBC's jdbc:postgresql:dbname form, which means
// localhost:5432.
func (v *validation) jdbcShortPostgres(rest string) (Target, error) {
	v.note("read jdbc:postgresql:<database> as a database on localhost:5432")
	return v.postgresURL("localhost/" + strings.TrimPrefix(rest, "/"))
}

// pgCore collects the connection parts while settings are applied.
type pgCore struct {
	host, hostaddr, port, dbname, user, password string
	hasHost, hasHostaddr, hasPort, hasPassword   bool
	params                                       map[string]string
}

// set records a parameter, creating the map on first use.
func (c *pgCore) set(k, val string) {
	if c.params == nil {
		c.params = make(map[string]string, 4)
	}
	c.params[k] = val
}

// buildPostgres applies settings in order (later wins), translates
// parameters meant for other tools, checks every value and returns the
// Target with its canonical DSN. origin names the form for messages.
func (v *validation) buildPostgres(settings []setting, origin string) (Target, error) {
	c := pgCore{}
	for _, s := range settings {
		if err := v.applyPGSetting(&c, s.key, s.value); err != nil {
			return Target{}, err
		}
	}
	v.finishParams(&c)
	v.poolerParams(&c, settings)

	if !c.hasHost && c.hasHostaddr {
		c.host, c.hasHost = c.hostaddr, true
		v.note("used hostaddr as the host: pgx has no separate hostaddr")
	} else if c.hasHostaddr {
		v.note("removed hostaddr: pgx connects to host and resolves it itself")
	}
	var one [1]string
	hosts := one[:]
	if strings.IndexByte(c.host, ',') >= 0 {
		hosts = strings.Split(c.host, ",")
	} else {
		one[0] = c.host
	}
	if len(hosts) == 1 {
		if dir, port, ok := socketFile(hosts[0]); ok {
			hosts[0] = dir
			if !c.hasPort {
				c.port, c.hasPort = port, true
			}
			v.note("the host named the socket file; used its directory, as libpq expects")
		}
	}
	if len(hosts) > 1 {
		for _, h := range hosts {
			if h == "" {
				return Target{}, v.fail(CodeBadHost, "the host list has an empty entry",
					"list hosts as host1:5432,host2:5432 with no empty entries")
			}
		}
	}
	for _, h := range hosts {
		if err := v.checkHost(h); err != nil {
			return Target{}, err
		}
	}
	var onePort [1]string
	var ports []string
	switch {
	case strings.IndexByte(c.port, ',') >= 0:
		ports = strings.Split(c.port, ",")
	case c.hasPort:
		onePort[0] = c.port
		ports = onePort[:]
	}
	if len(ports) > 1 && len(ports) != len(hosts) {
		return Target{}, v.fail(CodePortCount,
			fmt.Sprintf("%d ports were given for %d hosts", len(ports), len(hosts)),
			"give one port for all hosts, or exactly one per host")
	}
	t := Target{Dialect: Postgres, Database: c.dbname, User: c.user, password: c.password, hasPass: c.hasPassword,
		Hosts: make([]Host, 0, len(hosts))}
	for i, h := range hosts {
		raw := ""
		switch len(ports) {
		case 1:
			raw = ports[0]
		case len(hosts):
			raw = ports[i]
		}
		port, err := v.parsePort(raw)
		if err != nil {
			return Target{}, err
		}
		t.Hosts = append(t.Hosts, Host{Name: h, Port: port})
	}
	if t.User != "" && componentPlaceholder(t.User) {
		return Target{}, v.fail(CodePlaceholder, "the user name is a template placeholder",
			"replace it with the real user name")
	}
	if t.hasPass && componentPlaceholder(t.password) {
		return Target{}, v.fail(CodePlaceholder, "the password is a template placeholder",
			"replace it with the real password (set it as a secret, not in the Dockerfile)")
	}
	if t.Database != "" && componentPlaceholder(t.Database) {
		return Target{}, v.fail(CodePlaceholder, "the database name is a template placeholder",
			"replace it with the real database name")
	}
	if !c.hasHost && !c.hasPort && t.Database == "" && t.User == "" && c.params["service"] == "" {
		return Target{}, v.fail(CodeMissingTarget, fmt.Sprintf("the %s names no host and no database", origin),
			"write postgres://user:password@host:5432/dbname")
	}
	if len(c.params) > 0 {
		t.Params = c.params
	}
	return t, nil
}

func (v *validation) parsePort(raw string) (uint16, error) {
	if raw == "" {
		return DefaultPort, nil
	}
	if !isAllDigits(raw) {
		if componentPlaceholder(raw) || isPlaceholderWord(raw) && strings.Contains(strings.ToLower(raw), "port") {
			return 0, v.fail(CodePlaceholder, "the port is a placeholder word, not a number",
				"replace it with the real port, usually 5432")
		}
		return 0, v.fail(CodeBadPort, "the port is not a number (a ':' in the password with no '@host' after it?)",
			"write the port as digits, usually 5432; "+reservedHint)
	}
	n, err := strconv.Atoi(strings.TrimLeft(raw, "0"))
	if raw != "" && strings.TrimLeft(raw, "0") == "" {
		n, err = 0, nil
	}
	if err != nil || n < 1 || n > 65535 {
		return 0, v.fail(CodePortRange, "the port is out of range", "use a port between 1 and 65535, usually 5432")
	}
	return uint16(n), nil
}

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
		if !contains(allowed, lower) {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func validRequireAuth(s string) bool {
	if s == "" {
		return true
	}
	methods := []string{"password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none"}
	parts := strings.Split(s, ",")
	neg := strings.HasPrefix(parts[0], "!")
	for _, p := range parts {
		if strings.HasPrefix(p, "!") != neg || !contains(methods, strings.TrimPrefix(p, "!")) {
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

// buildPostgresURL renders the canonical postgres:// URL of t, with secrets
// masked when redact is set.
func buildPostgresURL(t Target, redact bool) string {
	var b strings.Builder
	b.Grow(64 + len(t.User) + len(t.password) + len(t.Database) + 24*len(t.Hosts) + 32*len(t.Params))
	b.WriteString("postgres://")
	if t.User != "" || t.hasPass {
		writeEscaped(&b, t.User)
		if t.hasPass {
			b.WriteByte(':')
			if redact {
				b.WriteString(redactedMask)
			} else {
				writeEscaped(&b, t.password)
			}
		}
		b.WriteByte('@')
	}
	socket := false
	for _, h := range t.Hosts {
		if strings.HasPrefix(h.Name, "/") {
			socket = true
		}
	}
	var num [8]byte
	params := t.Params
	if socket {
		var names, ports strings.Builder
		for i, h := range t.Hosts {
			if i > 0 {
				names.WriteByte(',')
				ports.WriteByte(',')
			}
			names.WriteString(h.Name)
			ports.Write(strconv.AppendUint(num[:0], uint64(h.Port), 10))
		}
		params = make(map[string]string, len(t.Params)+2)
		for k, val := range t.Params {
			params[k] = val
		}
		params["host"] = names.String()
		params["port"] = ports.String()
	} else {
		for i, h := range t.Hosts {
			if i > 0 {
				b.WriteByte(',')
			}
			if strings.IndexByte(h.Name, ':') >= 0 {
				addr, zone, hasZone := strings.Cut(h.Name, "%")
				b.WriteByte('[')
				b.WriteString(addr)
				if hasZone {
					b.WriteString("%25")
					writeEscaped(&b, zone)
				}
				b.WriteByte(']')
			} else {
				b.WriteString(h.Name)
			}
			b.WriteByte(':')
			b.Write(strconv.AppendUint(num[:0], uint64(h.Port), 10))
		}
	}
	b.WriteByte('/')
	writeEscaped(&b, t.Database)
	writeQuery(&b, params, redact)
	return b.String()
}

const redactedMask = "xxxxx"

// writeQuery appends "?k=v&…" with keys sorted and secrets masked.
func writeQuery(b *strings.Builder, params map[string]string, redact bool) {
	if len(params) == 0 {
		return
	}
	var buf [16]string
	keys := buf[:0]
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		writeEscaped(b, k)
		b.WriteByte('=')
		if redact && isSecretKey(k) {
			b.WriteString(redactedMask)
		} else {
			writeEscaped(b, params[k])
		}
	}
}

// escapeComponent percent-encodes everything but RFC 3986 unreserved
// characters, so every parser reads the component the same way.
func escapeComponent(s string) string {
	var b strings.Builder
	writeEscaped(&b, s)
	return b.String()
}

func writeEscaped(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			continue
		}
		b.WriteString(s[start:i])
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
		start = i + 1
	}
	b.WriteString(s[start:])
}

// isParamName reports a plausible parameter name: letters, digits, '_',
// '.' and '-' (PostgreSQL's custom settings are "extension.name").
func isParamName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
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

// socketFile splits a path to a PostgreSQL socket file
// ("/cloudsql/x/.s.PGSQL.5432") into its directory and port.
func socketFile(path string) (dir, port string, ok bool) {
	if !strings.HasPrefix(path, "/") {
		return "", "", false
	}
	i := strings.LastIndex(path, "/.s.PGSQL.")
	if !strings.HasPrefix(path, "/") || i < 0 || !isAllDigits(path[i+len("/.s.PGSQL."):]) {
		return "", "", false
	}
	dir = path[:i]
	if dir == "" {
		dir = "/"
	}
	return dir, path[i+len("/.s.PGSQL."):], true
}

// indexAnyOf is strings.IndexAny for up to four ASCII bytes, without the
// set construction IndexAny pays on every call.
func indexAnyOf(s string, a, b, c, d byte) int {
	for i := 0; i < len(s); i++ {
		if x := s[i]; x == a || x == b || x == c || x == d {
			return i
		}
	}
	return -1
}
