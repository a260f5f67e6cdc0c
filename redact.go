package dbfallback

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// This file holds the one redaction path of the package. Every error,
// String method, log attribute and health field shows either a Target's
// Redacted form (built from parsed parts, see buildPostgresURL) or text
// passed through redactInput or scrubSecrets below.

// maxShownInput caps how much of a rejected value an error repeats.
const maxShownInput = 160

// redactInput masks every place a secret can hide in a raw, possibly
// malformed configuration value (see maskSecrets), then shortens it for
// display. A value of several lines (a secret file, a pasted .env or
// compose file) is not shown at all: a bare secret on a line of its own
// has no shape to recognise it by.
func redactInput(raw string) string {
	if n := lineCount(raw); n > 1 {
		return fmt.Sprintf("<%d lines, not shown>", n)
	}
	return shorten(maskSecrets(raw))
}

// lineCount counts the lines of raw once surrounding whitespace is
// trimmed: 1 for a value with a trailing newline.
func lineCount(raw string) int {
	t := strings.TrimSpace(raw)
	if !strings.ContainsAny(t, "\r\n") {
		return 1
	}
	return len(strings.FieldsFunc(t, func(r rune) bool { return r == '\n' || r == '\r' }))
}

// maskSecrets masks, without shortening:
//
//   - URL user information: from the first ':' after "://" (or after the
//     start when there is no scheme) to the last '@' in the whole value, so
//     unescaped '@', '/', '#' or '?' in a password cannot split it;
//   - without any '@', a non-numeric "port" (postgres://user:secret/db);
//   - the value of every key that names a secret (isSecretKey: the rules
//     table, then the name pattern), assigned with '=' or ':' in any
//     format: URL queries, keyword/value strings with any spacing, JDBC,
//     ADO.NET and ODBC strings, JSON, YAML and .env lines (see
//     secretValueEnd for where such a value ends).
//
// It fails safe: where it cannot tell where a secret ends, it masks to the
// end of the line, and text of several lines is masked whole. Text it
// leaves unchanged holds no secret this package can recognise.
func maskSecrets(raw string) string {
	if lineCount(raw) > 1 {
		return redactedMask
	}
	if !strings.ContainsAny(raw, "=:@") {
		return raw // no assignment, no user information
	}
	var mask []bool // allocated on the first secret found
	set := func(from, to int) {
		if from >= to || from >= len(raw) {
			return
		}
		if mask == nil {
			mask = make([]bool, len(raw))
		}
		for i := from; i < to && i < len(raw); i++ {
			mask[i] = true
		}
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && schemeBefore(raw, i) != "" {
		start = i + 3
		// A ':' before the scheme ("user: pw://…" or a YAML line, but not
		// "jdbc:") may open the password: mask from there too.
		prefix := raw[:i-len(schemeBefore(raw, i))]
		if len(prefix) >= 5 && strings.EqualFold(prefix[len(prefix)-5:], "jdbc:") {
			prefix = prefix[:len(prefix)-5]
		}
		if c := strings.IndexByte(prefix, ':'); c >= 0 {
			if at := strings.LastIndexByte(raw, '@'); at > c {
				set(c+1, at)
			}
		}
	}
	if at := strings.LastIndexByte(raw, '@'); at >= start && start > 0 && !knownScheme(schemeBefore(raw, strings.Index(raw, "://"))) {
		// An unknown scheme may be the front of a password ("user:" +
		// "//secret@host"): hide all of the user information.
		set(start, at)
		if !plausibleTail(raw[at+1:]) {
			set(at+1, len(raw))
		}
	} else if at >= start {
		if c := strings.IndexByte(raw[start:at], ':'); c >= 0 {
			set(start+c+1, at)
			// The last '@' may sit inside the password (its own '@host'
			// forgotten): then what follows it is password too, unless it
			// reads as hosts, a database and parameters.
			if !plausibleTail(raw[at+1:]) {
				set(at+1, len(raw))
			}
		}
	} else if start > 0 {
		// No '@': what follows "name:" is a port, unless a password was
		// written without its '@host'. Keep it only when it is a number and
		// the rest reads as hosts, database and parameters.
		end := len(raw)
		if i := strings.IndexAny(raw[start:], "/?"); i >= 0 {
			end = start + i
		}
		if c := strings.IndexByte(raw[start:end], ':'); c >= 0 {
			port := raw[start+c+1 : end]
			if j := strings.IndexByte(port, ','); j >= 0 {
				port = port[:j]
			}
			if !isAllDigits(port) || !plausibleTail(raw[start:]) {
				set(start+c+1, len(raw))
			}
		}
	}
	for _, a := range secretAssignments(raw) {
		set(a[0], a[1])
	}

	if mask == nil {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		if mask[i] {
			b.WriteString(redactedMask)
			for i < len(raw) && mask[i] {
				i++
			}
			continue
		}
		b.WriteByte(raw[i])
		i++
	}
	return b.String()
}

// holdsSecret reports whether maskSecrets would mask part of s.
func holdsSecret(s string) bool {
	// One pass over the short values Validate's hot path gives it costs
	// less than strings.ContainsAny, which builds its set on every call.
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '=', ':', '@':
			return maskSecrets(s) != s
		}
	}
	return false
}

// shorten cuts text for display to maxShownInput bytes, on a rune
// boundary, marking the cut with "…".
func shorten(out string) string {
	if len(out) > maxShownInput {
		cut := maxShownInput
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "…"
	}
	return out
}

// minScrubLen is the shortest secret scrubSecrets replaces: shorter ones
// match ordinary words and cannot be told apart from them.
const minScrubLen = 4

// scrubSecrets removes every occurrence of each secret (raw and
// percent-encoded) from text, such as a driver's error message.
func scrubSecrets(text string, secrets ...string) string {
	for _, s := range secrets {
		if len(s) < minScrubLen {
			continue
		}
		text = strings.ReplaceAll(text, s, redactedMask)
		if enc := escapeComponent(s); enc != s {
			text = strings.ReplaceAll(text, enc, redactedMask)
		}
	}
	return text
}

// plausibleTail reports whether s reads as what follows the user
// information of a URL: hosts[:ports][/database][?name=value&…]. It is
// structural only (a bad host or port is still a host or port): its job is
// to notice password text, which rarely has that shape.
func plausibleTail(s string) bool {
	s = stripTemplates(s)
	rest, query, hasQuery := strings.Cut(s, "?")
	hosts, db, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(db, "@:") {
		return false
	}
	for _, h := range strings.Split(hosts, ",") {
		if strings.HasPrefix(h, "[") {
			end := strings.IndexByte(h, ']')
			if end < 0 {
				h = "ipv6"
			} else {
				h = "ipv6" + h[end+1:]
			}
		}
		if strings.Trim(h, "0123456789abcdefABCDEF:.") == "" {
			continue // an unbracketed IPv6 address
		}
		name, port, _ := strings.Cut(h, ":")
		if strings.ContainsAny(name, "@[]") || !isParamName("p"+port) && port != "" {
			return false
		}
	}
	if hasQuery {
		for _, pair := range strings.Split(query, "&") {
			k, _, ok := strings.Cut(pair, "=")
			k = lenientDecode(k)
			if pair != "" && (!isParamName(k) || !ok && !isKnownParam(k)) {
				return false
			}
		}
	}
	return true
}

// stripTemplates replaces ${…}, {{…}} and <…> tokens with "T".
func stripTemplates(s string) string {
	for _, d := range [][2]string{{"${", "}"}, {"{{", "}}"}, {"<", ">"}} {
		for {
			i := strings.Index(s, d[0])
			if i < 0 {
				break
			}
			j := strings.Index(s[i+len(d[0]):], d[1])
			if j < 0 {
				break
			}
			s = s[:i] + "T" + s[i+len(d[0])+j+len(d[1]):]
		}
	}
	return s
}

func isSchemeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.' || c == '_'
}

// schemeBefore returns the scheme that ends at raw[end] (where "://"
// starts), or "" when the text there is not a scheme: a scheme is preceded
// by the start, a quote, '=' or a space, or by "jdbc:". In "user:pw://@h"
// the "pw" before "://" follows a ':' and is part of a password.
func schemeBefore(raw string, end int) string {
	begin := end
	for begin > 0 && isSchemeByte(raw[begin-1]) {
		begin--
	}
	if begin == end {
		return ""
	}
	if begin > 0 {
		switch raw[begin-1] {
		case ':':
			if begin < 5 || !strings.EqualFold(raw[begin-5:begin-1], "jdbc") {
				return ""
			}
		case '"', '\'', '`', '=', ' ', '\t', '\ufeff' & 0xff:
		default:
			if raw[begin-1] < 0x80 {
				return ""
			}
		}
	}
	return raw[begin:end]
}
