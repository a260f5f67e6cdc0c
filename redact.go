package dbfallback

import (
	"encoding/hex"
	"fmt"
	"strconv"
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
	mask := secretMask(raw)
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

// secretMask marks the bytes of raw that maskSecrets hides; nil when
// there are none. Text with percent-escapes is also read decoded (at
// every depth: "%2540" is an '@' encoded twice), and what is secret in
// the decoded text is masked where it was written: "options=-c%20
// password%3D…" and "u%3Apw@" hide their secrets as well as their
// plain forms do.
func secretMask(raw string) []bool {
	hasPct := strings.IndexByte(raw, '%') >= 0
	if !hasPct && !strings.ContainsAny(raw, "=:@") {
		return nil // no assignment, no user information
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
		if c, w := userColon(raw[start:at]); c >= 0 {
			set(start+c+w, at)
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
	} else if c := bareCredentials(raw); c >= 0 {
		set(c, len(raw))
	}
	for _, a := range secretAssignments(raw) {
		set(a[0], a[1])
	}
	if hasPct {
		if dec, at := decodeIndexed(raw); len(dec) < len(raw) {
			for i, secret := range secretMask(dec) {
				if secret {
					set(at[i], at[i+1])
				}
			}
		}
	}
	return mask
}

// userColon returns the index and width of the ':' that ends the user
// name in "user:password", or -1: an ASCII ':' or, as an input method
// types it, a fullwidth '：' (U+FF1A), which no reading should let
// through as part of a printed user name.
func userColon(s string) (int, int) {
	c := strings.IndexByte(s, ':')
	if f := strings.Index(s, "\uff1a"); f >= 0 && (c < 0 || f < c) {
		return f, len("\uff1a")
	}
	if c < 0 {
		return -1, 0
	}
	return c, 1
}

// bareCredentials returns where the secret starts in a value with no
// scheme, no '@' and no assignment that reads as credentials: "user:pw"
// or a .pgpass line "host:port:db:user:pw" pasted where a URL belongs.
// What follows the first ':' not followed by a port number is masked;
// "localhost:5432/app", a SQLite path ("app:v2.db") and a scheme
// ("file:x") are left alone. It returns -1 when nothing is.
func bareCredentials(raw string) int {
	if strings.ContainsAny(raw, "=@ \t{") || !strings.ContainsRune(raw, ':') && !strings.Contains(raw, "\uff1a") || raw == ":memory:" {
		return -1
	}
	if c, _ := userColon(raw); strings.ContainsAny(raw[:c], "/\\") {
		return -1 // a path: "/cloudsql/project:region:instance"
	}
	lower := strings.ToLower(raw)
	for _, ext := range []string{".db", ".sqlite", ".sqlite3"} {
		if strings.HasSuffix(lower, ext) {
			return -1
		}
	}
	i := 0 // past the schemes: "postgres:u:pw", "jdbc:postgresql:…"
	for c := strings.IndexByte(raw[i:], ':'); c >= 0 && knownScheme(raw[i:i+c]); c = strings.IndexByte(raw[i:], ':') {
		i += c + 1
	}
	for {
		c, w := userColon(raw[i:])
		if c < 0 {
			return -1
		}
		field := raw[i+c+w:]
		if j := strings.IndexAny(field, ":,/?"); j >= 0 {
			field = field[:j]
		}
		if !isAllDigits(field) || field == "" {
			return i + c + w
		}
		i += c + w
	}
}

// decodeIndexed decodes the "%XX" escapes of s (others are kept as
// written) and returns, for each byte of the result, where it starts in
// s: the byte i of the result comes from s[at[i]:at[i+1]].
func decodeIndexed(s string) (string, []int) {
	b := make([]byte, 0, len(s))
	at := make([]int, 0, len(s)+1)
	for i := 0; i < len(s); i++ {
		at = append(at, i)
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b), append(at, len(s))
}

// holdsSecret reports whether maskSecrets would mask part of s.
func holdsSecret(s string) bool {
	// One pass over the short values Validate's hot path gives it costs
	// less than strings.ContainsAny, which builds its set on every call.
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '=', ':', '@', '%':
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

// scrubSecrets removes each secret from text, such as a driver's error
// message or one a server sent: every occurrence, and every part of
// minScrubLen bytes or more, of the secret as written, percent-encoded,
// SQL-quoted (each quote doubled), Go- or JSON-quoted, and in hex. A server that
// quotes the password cut short or escaped shows no recognisable part of
// it. It fails safe: text that merely shares 4 bytes with a secret (a
// dictionary-word password and "password authentication failed") is
// masked too.
func scrubSecrets(text string, secrets ...string) string {
	var windows map[uint32]struct{}
	for _, s := range secrets {
		if len(s) < minScrubLen {
			continue
		}
		text = strings.ReplaceAll(text, s, redactedMask) // a long secret, whole
		if windows == nil {
			windows = make(map[uint32]struct{})
		}
		for _, form := range quotedForms(s) {
			addWindows(windows, form)
		}
	}
	if len(windows) == 0 || len(text) < minScrubLen {
		return text
	}
	var mask []bool
	for i := 0; i+minScrubLen <= len(text); i++ {
		if _, ok := windows[window(text[i:])]; ok {
			if mask == nil {
				mask = make([]bool, len(text))
			}
			for j := i; j < i+minScrubLen; j++ {
				mask[j] = true
			}
		}
	}
	if mask == nil {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if mask[i] {
			b.WriteString(redactedMask)
			for i < len(text) && mask[i] {
				i++
			}
			continue
		}
		b.WriteByte(text[i])
		i++
	}
	return b.String()
}

// quotedForms lists the ways a message may quote secret s.
func quotedForms(s string) []string {
	quoted := strconv.Quote(s)
	return []string{s, escapeComponent(s), strings.ReplaceAll(s, "'", "''"),
		quoted[1 : len(quoted)-1], strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`),
		hex.EncodeToString([]byte(s)), strings.ToUpper(hex.EncodeToString([]byte(s)))}
}

// maxWindowed bounds how much of each end of a long secret (a 1 MB
// password) scrubSecrets indexes in parts; the whole secret is still
// replaced where it appears whole.
const maxWindowed = 16 << 10

// addWindows adds every minScrubLen-byte part of form to set: all of
// them for a secret of ordinary length, those of its ends for a huge one.
func addWindows(set map[uint32]struct{}, form string) {
	add := func(part string) {
		for i := 0; i+minScrubLen <= len(part); i++ {
			set[window(part[i:])] = struct{}{}
		}
	}
	if len(form) <= 2*maxWindowed {
		add(form)
		return
	}
	add(form[:maxWindowed])
	add(form[len(form)-maxWindowed:])
}

// window packs the first minScrubLen (4) bytes of s.
func window(s string) uint32 {
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
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
