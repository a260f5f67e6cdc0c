// The grammar of postgres:// URLs. Validate reads a URL the way libpq (and
// pgx 5.11+, which follows it) does, except where libpq's reading would
// hand the driver something other than what the operator meant, or would
// read the environment. These departures are deliberate:
//
//   - Unescaped reserved characters in a password. libpq ends the user
//     information at the first '@' before any '/'. When that reading gives
//     an invalid host or port and exactly one other '@' gives a valid URL,
//     that reading is taken and the canonical DSN percent-encodes the
//     password; two valid readings are rejected as ambiguous.
//   - A second '=' inside a query value is kept as part of the value and
//     re-encoded (libpq: "extra key/value separator"); an empty pair
//     ("&&", a trailing '&') is skipped with a note (libpq: "missing
//     key/value separator").
//   - Query keys follow one table of rules (validator_params.go): libpq and
//     pgx settings are checked, other tools' keys (Prisma, Rails, JDBC,
//     pgxpool, libpq settings pgx lacks) are dropped or translated with a
//     note, and unknown keys go to the server as run-time parameters, as
//     pgx sends them (libpq rejects them). An unknown key right after a
//     secret-valued one is rejected: the secret may hold a raw '&'.
//   - Hosts must be host names, IP addresses or socket directories; an
//     IPv6 zone must be an interface name. libpq leaves both to the
//     resolver.
//   - A database name holding '/' is rejected and one trailing '/' is
//     removed; libpq passes both to the server.
//   - Scheme aliases (pgsql, pg, any case), SQLAlchemy "+driver" suffixes,
//     a jdbc: prefix and JDBC's keys are read; libpq knows postgres and
//     postgresql only.
//   - connect_timeout=1 means one second, as in pgx; older libpq releases
//     raised it to two.
//   - Nothing is read from PG* variables, service or password files: the
//     answer depends on the input alone.

package dbfallback

import (
	"fmt"
	"net/netip"
	"strings"
)

// setting is one decoded key/value pair of a PostgreSQL connection string,
// in the order it was written (later ones win, as in libpq).
type setting struct{ key, value string }

// urlParts is one structural reading of a postgres:// URL.
type urlParts struct {
	settings      []setting
	notes         []string
	userPlausible bool
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
	if aErr == nil && a.userPlausible {
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
		// A reading whose user information holds "password=…" took a
		// query for credentials: the text after its '@' is a secret.
		if p, err := v.parseURLParts(rest[:i], true, rest[i+1:], nil); err == nil && p.userPlausible &&
			secretAssignments(rest[:i]) == nil {
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

// holdsParams reports a database name that goes on with "&name=" or
// ";name=": parameters whose '?' was forgotten, or JDBC's ';' properties.
// Read as a name, they would carry a password into every printed form.
func holdsParams(db string) bool {
	if strings.IndexByte(db, '&') < 0 && strings.IndexByte(db, ';') < 0 {
		return false
	}
	for i := strings.IndexAny(db, "&;"); i >= 0; {
		j := i + 1
		for j < len(db) && keyChar(db[j]) {
			j++
		}
		if j > i+1 && j < len(db) && db[j] == '=' {
			return true
		}
		k := strings.IndexAny(db[i+1:], "&;")
		if k < 0 {
			break
		}
		i += 1 + k
	}
	return false
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
		if hasPass && !strings.ContainsAny(user, "/?") && plausibleTail(rest[j+1:]) {
			return true
		}
	}
	return false
}

// libpqSplit finds the user information the way libpq does: up to the first
// '@' that comes before any '/'.
func libpqSplit(rest string) (userinfo string, ok bool, after string) {
	at, slash := strings.IndexByte(rest, '@'), strings.IndexByte(rest, '/')
	if at >= 0 && (slash < 0 || at < slash) {
		return rest[:at], true, rest[at+1:]
	}
	return "", false, rest
}

// parseURLParts reads user information and "hosts[/db][?query]" into
// settings. Its notes are returned, not recorded, for the caller to keep if
// it chooses this reading; the only state it touches is v.checkedHosts, a
// cache of the hosts that passed checkHost.
func (v *validation) parseURLParts(userinfo string, hasUserinfo bool, after string, buf []setting) (urlParts, error) {
	p := urlParts{userPlausible: true, settings: buf[:0]}
	add := func(k, val string) { p.settings = append(p.settings, setting{k, val}) }

	if hasUserinfo {
		rawUser, rawPass, hasPass := strings.Cut(userinfo, ":")
		if strings.IndexByte(rawUser, '/') >= 0 || strings.IndexByte(rawUser, '?') >= 0 {
			p.userPlausible = false
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
			i := strings.IndexAny(s, ":/?,")
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
			i := strings.IndexAny(s, "/?,")
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
		if holdsParams(db) {
			return p, v.fail(CodeBadDatabase, "the database name holds parameters (name=value after '&' or ';'): a '?' forgotten, or JDBC properties",
				"parameters go after a '?': postgres://host:5432/dbname?sslmode=require&password=…")
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
	any := false
	for i := 0; i < len(s) && !any; i++ {
		switch s[i] {
		case '@', '#', '/', '?', ':', '[', ']':
			any = true
		}
	}
	if !any {
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
	out := make([]setting, 0, strings.Count(q, "&")+1)
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
			if isKnownParam(key) {
				what = fmt.Sprintf("the %s parameter", key)
			} else if isSecretKey(key) {
				what = "a secret parameter"
			}
			return nil, nil, v.fail(CodeBadEscape, what+" has an invalid percent-escape",
				"write % as %25; a percent-escape is % followed by two hex digits, never %00")
		}
		if strings.IndexByte(rawVal, '=') >= 0 {
			notes = append(notes, "percent-encoded an '=' inside a query parameter value")
		}
		// A raw '&' may have split a secret: an unknown key after a secret
		// one is rejected, unless it names a secret too (then both are
		// masked however it reads; the DSN writer puts secrets last).
		if len(out) > 0 && !isKnownParam(key) && !isSecretKey(key) && isSecretKey(out[len(out)-1].key) {
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
func uriDecode(s string) (string, error) { return percentDecode(s, true) }

// lenientDecode percent-decodes the valid escapes of s and keeps the rest,
// so that the redactor recognises "pass%77ord" as a password key, as pgx
// does, even in a value that is malformed elsewhere.
func lenientDecode(s string) string {
	d, _ := percentDecode(s, false)
	return d
}

// percentDecode decodes "%XX" escapes. When strict, an escape that is not
// '%' and two hex digits, or that encodes NUL, is an error; otherwise it
// is kept as written.
func percentDecode(s string, strict bool) (string, error) {
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
		var hi, lo byte
		ok := i+2 < len(s)
		if ok {
			var ok1, ok2 bool
			hi, ok1 = unhex(s[i+1])
			lo, ok2 = unhex(s[i+2])
			ok = ok1 && ok2 && (hi<<4|lo != 0 || !strict)
		}
		switch {
		case ok:
			b.WriteByte(hi<<4 | lo)
			i += 2
		case strict:
			return "", errBadEscape
		default:
			b.WriteByte('%')
		}
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
