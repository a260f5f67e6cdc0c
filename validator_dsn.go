package dbfallback

import (
	"slices"
	"strconv"
	"strings"
)

// buildPostgresURL renders the canonical postgres:// URL of t, with secrets
// masked when redact is set.
func buildPostgresURL(t Target, redact bool) string {
	password, hasPass := t.Password()
	var b strings.Builder
	b.Grow(64 + len(t.User) + len(password) + len(t.Database) + 24*len(t.Hosts) + 32*len(t.Params))
	b.WriteString("postgres://")
	if t.User != "" || hasPass {
		writeEscaped(&b, t.User)
		if hasPass {
			b.WriteByte(':')
			if redact {
				b.WriteString(redactedMask)
			} else {
				writeEscaped(&b, password)
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
	var extra map[string]string
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
		extra = map[string]string{"host": names.String(), "port": ports.String()}
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
	writeQuery(&b, t, extra, redact)
	return b.String()
}

const redactedMask = "xxxxx"

// writeQuery appends "?k=v&…" for the parameters of t and extra (which
// wins over t.Params), keys sorted, then its secret ones, keys sorted.
// When redact is set, the value of every secret parameter, and of any key
// named like a secret, is the mask.
func writeQuery(b *strings.Builder, t Target, extra map[string]string, redact bool) {
	var secret map[string]string
	if t.secrets != nil {
		secret = t.secrets.params
	}
	if len(t.Params)+len(extra)+len(secret) == 0 {
		return
	}
	var buf [16]string
	keys := buf[:0]
	for k := range t.Params {
		if _, dup := extra[k]; !dup {
			keys = append(keys, k)
		}
	}
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	public := len(keys)
	for k := range secret {
		_, dup1 := t.Params[k]
		_, dup2 := extra[k]
		if !dup1 && !dup2 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys[public:]) // secrets last: no unknown key follows one (see parseQuery)
	for i, k := range keys {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		writeEscaped(b, k)
		b.WriteByte('=')
		val, ok := extra[k]
		if !ok {
			val, ok = t.Params[k]
		}
		if !ok {
			val = secret[k]
		}
		if redact && (!ok || isSecretKey(k)) {
			b.WriteString(redactedMask)
		} else {
			writeEscaped(b, val)
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

// buildSQLiteDSN renders a go-sqlite3 "file:" URI for t.
func buildSQLiteDSN(t Target, redact bool) string {
	var extra map[string]string
	if t.Memory {
		if t.Path == "" && len(t.Params) == 0 && t.secrets == nil {
			return ":memory:"
		}
		extra = map[string]string{"mode": "memory"}
	}
	var b strings.Builder
	b.WriteString("file:")
	if t.Memory && t.Path == "" {
		b.WriteString(":memory:")
	} else {
		if strings.HasPrefix(t.Path, "//") {
			b.WriteString("//") // an empty authority, so the path's own "//" is not read as a host
		}
		b.WriteString(escapeSQLitePath(t.Path))
	}
	writeQuery(&b, t, extra, redact)
	return b.String()
}

// escapeSQLitePath escapes the characters a SQLite URI path cannot hold raw,
// quotes (so that no DSN looks quoted) and every non-ASCII byte (so that
// the DSN is valid UTF-8 whatever the path).
func escapeSQLitePath(p string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c == '%' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '`' || c >= 0x7f {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
