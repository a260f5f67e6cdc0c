package dbfallback

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// pgCore collects the connection parts while settings are applied. It
// lives only for one Validate call; the Target keeps secrets in its
// secretSet.
type pgCore struct {
	host, hostaddr, port, dbname, user, password string
	hasHost, hasHostaddr, hasPort, hasPassword   bool
	params                                       map[string]string
	secret                                       map[string]string // secret-valued parameters
	pool                                         map[string]string // pgxpool's keys (see Target.Pool)
}

// set records a parameter, creating the map on first use; a secret-valued
// one goes to c.secret, never to c.params.
func (c *pgCore) set(k, val string) {
	c.params, c.secret = putParam(c.params, c.secret, k, val, isSecretKey(k))
}

// setRule is set for a key whose rule the caller holds. A value the rule
// checked (one of its values, a count) holds no secret.
func (c *pgCore) setRule(k, val string, rule paramRule) {
	if rule.values != nil || rule.count {
		if c.params == nil {
			c.params = make(map[string]string, 4)
		}
		c.params[k] = val
		return
	}
	c.params, c.secret = putParam(c.params, c.secret, k, val, rule.secret)
}

// oneHostTarget and fewHostsTarget let a Target's secret set and its
// hosts share one allocation. Nothing reaches the set through the host
// slice, whose capacity ends at the last host.
type oneHostTarget struct {
	secrets secretSet
	hosts   [1]Host
}

type fewHostsTarget struct {
	secrets secretSet
	hosts   [4]Host
}

// coreSettings counts the settings that go to a Target's fields rather
// than its parameters, to size the parameter map once.
func coreSettings(settings []setting) int {
	n := 0
	for _, s := range settings {
		switch s.key {
		case "host", "hostaddr", "port", "dbname", "database", "user", "password":
			n++
		}
	}
	return n
}

// putParam records k=val in params, or in secret when k names a secret
// (secretKey, from isSecretKey or the key's rule) or val reads like it
// holds one ("-c app.token=…" in options), creating the map on first use.
func putParam(params, secret map[string]string, k, val string, secretKey bool) (map[string]string, map[string]string) {
	if secretKey || holdsSecret(val) {
		if secret == nil {
			secret = make(map[string]string, 1)
		}
		secret[k] = val
		return params, secret
	}
	if params == nil {
		params = make(map[string]string, 4)
	}
	params[k] = val
	return params, secret
}

// buildPostgres applies settings in order (later wins), translates
// parameters meant for other tools, checks every value and returns the
// Target with its canonical DSN. origin names the form for messages.
func (v *validation) buildPostgres(settings []setting, origin string) (Target, error) {
	c := pgCore{}
	if n := len(settings) - coreSettings(settings); n > 0 {
		c.params = make(map[string]string, n)
	}
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
	t := Target{Dialect: Postgres, Database: c.dbname, User: c.user}
	secrets := secretSet{password: c.password, hasPass: c.hasPassword, params: c.secret}
	switch hasSecrets := c.hasPassword || len(c.secret) > 0; {
	case hasSecrets && len(hosts) == 1:
		// The usual targets, with a password and a few hosts: their
		// secrets and hosts share one allocation.
		st := &oneHostTarget{secrets: secrets}
		t.secrets, t.Hosts = &st.secrets, st.hosts[:0:1]
	case hasSecrets && len(hosts) <= 4:
		st := &fewHostsTarget{secrets: secrets}
		t.secrets, t.Hosts = &st.secrets, st.hosts[:0:len(hosts)]
	default:
		t.secrets, t.Hosts = newSecretSet(c.password, c.hasPassword, c.secret), make([]Host, 0, len(hosts))
	}
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
	if c.hasPassword && componentPlaceholder(c.password) {
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
	if len(c.pool) > 0 {
		t.Pool = c.pool
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

// checkHost validates one host. An empty name is libpq's default local
// socket; the caller rejects empty entries in a list of several hosts.
func (v *validation) checkHost(host string) error {
	if host == "" || slices.Contains(v.checkedHosts[:v.nChecked], host) {
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
	if v.nChecked < len(v.checkedHosts) {
		v.checkedHosts[v.nChecked] = host
		v.nChecked++
	}
	return nil
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

// validHost reports whether name is a host name, an IP address or a socket
// directory that a driver can use. IPv6 addresses come without brackets.
func validHost(name string) bool {
	if strings.HasPrefix(name, "/") {
		return true
	}
	if strings.IndexByte(name, ':') >= 0 {
		a, err := netip.ParseAddr(name)
		return err == nil && a.Is6() && (a.Zone() == "" || isParamName(a.Zone()))
	}
	allDigits := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '.' && (c < '0' || c > '9') {
			allDigits = false
			break
		}
	}
	if allDigits {
		a, err := netip.ParseAddr(name)
		return err == nil && a.Is4()
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for name != "" {
		label, rest, _ := strings.Cut(name, ".")
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
		if rest == "" && strings.HasSuffix(name, ".") {
			return false
		}
		name = rest
	}
	return true
}
