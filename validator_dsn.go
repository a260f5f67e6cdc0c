package dbfallback

import (
	"slices"
	"strconv"
	"strings"
)

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

// buildSQLiteDSN renders a go-sqlite3 "file:" URI for t.
func buildSQLiteDSN(t Target, redact bool) string {
	params := t.Params
	if t.Memory {
		if t.Path == "" && len(params) == 0 {
			return ":memory:"
		}
		params = make(map[string]string, len(t.Params)+1)
		for k, val := range t.Params {
			params[k] = val
		}
		params["mode"] = "memory"
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
	writeQuery(&b, params, redact)
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
