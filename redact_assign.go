package dbfallback

import "strings"

// Finding "key = secret" in text of any format. A key is a run of
// keyChars, possibly quoted ("password": in JSON, 'pwd': in a Python
// dict); it names a secret when isSecretKey says so, whatever its case
// and percent-encoding ("pass%77ord"). It is assigned with '=' or ':'
// (YAML, JSON), with any spacing around.
//
// Where the value ends depends on the format, told by what comes before
// the key:
//
//   - after '?' or '&' (a URL query, or a query whose '?' was forgotten):
//     at an '&';
//   - after ';' (JDBC properties, ADO.NET, ODBC): at a ';';
//   - anywhere else (libpq keyword/value, YAML, .env, JSON): at
//     whitespace not escaped by a backslash.
//
// and a separator ends the value only when a known key (or the end of the
// text) follows it, so a separator inside the secret does not expose its
// tail. A quoted value ('…', "…", `…`, with backslash escapes or doubled
// quotes) and an ODBC braced value ({…}, with "}}") end at their closing
// quote or brace, when what follows is the end, a separator, or a known
// key. Anything else runs to the end of the line: over-masking malformed
// text is the safe side.

// keyChar reports the bytes of a parameter name as written: letters,
// digits, '_', '.', '-', '%' (for percent-encoded names) and '+' (a
// space in a URL query: "pass+word").
func keyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '%' || c == '+'
}

// secretAssignments returns the [start, end) ranges of the secret values
// assigned in s.
func secretAssignments(s string) [][2]int {
	if strings.IndexByte(s, '=') < 0 && strings.IndexByte(s, ':') < 0 {
		return nil
	}
	var out [][2]int
	for i := 0; i < len(s); {
		if !keyChar(s[i]) {
			i++
			continue
		}
		ks := i
		for i < len(s) && keyChar(s[i]) {
			i++
		}
		ke := i
		v, ok := assignedValue(s, ks, ke) // cheaper than isSecretKey: most runs are values
		if !ok {
			continue
		}
		if key := lenientDecode(s[ks:ke]); !isSecretKey(key) {
			if isUserKey(key) && s[skipBlanks(s, ke)] == '=' {
				// "user=app:pw": what follows the user name's ':' is a
				// password pasted with it. ("user:pw@host" is URL user
				// information, masked as such.)
				end := secretValueEnd(s, v, contextBefore(s, ks))
				if c, w := userColon(s[v:end]); c >= 0 {
					out = append(out, [2]int{v + c + w, end})
					i = max(end, ke)
				}
			}
			continue
		}
		end := secretValueEnd(s, v, contextBefore(s, ks))
		out = append(out, [2]int{v, end})
		i = max(end, ke)
	}
	return out
}

// isUserKey reports a key that names the user in some format: its value
// never holds a ':' but when a password was pasted with it.
func isUserKey(k string) bool {
	switch strings.ToLower(k) {
	case "user", "username", "user_name", "userid", "uid", "login", "_auth_user":
		return true
	}
	return false
}

// assignedValue returns where the value assigned to the key s[ks:ke]
// starts: past a closing quote matching one before the key, spaces, '='
// or ':', and spaces. ok is false when no assignment follows.
func assignedValue(s string, ks, ke int) (int, bool) {
	j := ke
	if ks > 0 && j < len(s) && isQuote(s[ks-1]) && s[j] == s[ks-1] {
		j++
	}
	j = skipBlanks(s, j)
	if j >= len(s) || s[j] != '=' && s[j] != ':' || strings.HasPrefix(s[j:], "://") {
		return 0, false // "secret://" is a scheme, not an assignment
	}
	return skipBlanks(s, j+1), true
}

// Separators that end a secret value, by the format around it.
const (
	querySeparators = "&"
	semiSeparators  = ";"
	blankSeparators = " \t"
)

// contextBefore picks the separators of the format the key at ks sits in,
// from the byte before it (a quote around the key is looked through).
func contextBefore(s string, ks int) string {
	i := ks - 1
	if i >= 0 && isQuote(s[i]) {
		i--
	}
	if i < 0 {
		return blankSeparators
	}
	switch s[i] {
	case '?', '&':
		return querySeparators
	case ';':
		return semiSeparators
	}
	return blankSeparators
}

// secretValueEnd returns the end of the secret value starting at v, with
// seps the separators of its format.
func secretValueEnd(s string, v int, seps string) int {
	if v >= len(s) {
		return v
	}
	switch c := s[v]; {
	case isQuote(c):
		if e := closingQuote(s, v+1, c, true); e >= 0 && cleanAfter(s, e+1, seps) {
			return e + 1
		}
		return len(s)
	case c == '{':
		if e := closingBrace(s, v+1); e >= 0 && cleanAfter(s, e+1, seps) {
			return e + 1
		}
		return len(s)
	}
	for i := v; i < len(s); i++ {
		if s[i] == '\\' && seps == blankSeparators {
			i++ // an escaped space does not end a keyword/value value
			continue
		}
		if strings.IndexByte(seps, s[i]) >= 0 && boundaryAt(s, i+1) {
			return i
		}
	}
	return len(s)
}

// cleanAfter reports whether a quoted or braced value that closed just
// before i really ended there: the text ends (blanks aside), or a
// separator (of its format, a blank, or ',' in JSON) comes next followed
// by a known key or the end, or the JSON objects around it close ('}')
// and the text ends or goes on with ',' and a known key.
func cleanAfter(s string, i int, seps string) bool {
	if skipBlanks(s, i) >= len(s) {
		return true
	}
	if s[i] == '}' {
		for i < len(s) && (s[i] == '}' || s[i] == ' ' || s[i] == '\t') {
			i++
		}
		return i == len(s) || s[i] == ',' && boundaryAt(s, i+1)
	}
	if strings.IndexByte(seps, s[i]) < 0 && strings.IndexByte(blankSeparators+",", s[i]) < 0 {
		return false
	}
	return boundaryAt(s, i+1)
}

// boundaryAt reports whether, after blanks, s[i:] is the end of the text
// or starts a new assignment of a key the rules table knows (in any case,
// quoted or not). A key it does not know, even one named like a secret,
// ends nothing: "pw&xkey=…" may be one password.
func boundaryAt(s string, i int) bool {
	i = skipBlanks(s, i)
	if i >= len(s) {
		return true
	}
	if isQuote(s[i]) {
		i++
	}
	ks := i
	for i < len(s) && (keyChar(s[i]) || s[i] == ' ') {
		if s[i] == ' ' && (i+1 >= len(s) || !keyChar(s[i+1])) {
			break // "User Id" is one ADO.NET key; "sslmode =" ends at the space
		}
		i++
	}
	key := strings.ToLower(lenientDecode(s[ks:i]))
	if _, ok := foldedRules[key]; !ok {
		return false
	}
	_, ok := assignedValue(s, ks, i)
	return ok
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

func isQuote(c byte) bool { return c == '\'' || c == '"' || c == '`' }

// closingQuote returns the index of the quote q that closes a value whose
// text starts at from, honouring backslash escapes and, when doubled is
// set, doubled quotes (ADO.NET's ""), or -1. The keyword/value parser
// (libpq's rules: backslashes only) and the redactor (either) share it.
func closingQuote(s string, from int, q byte, doubled bool) int {
	for i := from; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			if doubled && i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i
		}
	}
	return -1
}

// closingBrace returns the index of the '}' that closes an ODBC braced
// value whose text starts at from ("}}" is a literal brace), or -1.
func closingBrace(s string, from int) int {
	for i := from; i < len(s); i++ {
		if s[i] == '}' {
			if i+1 < len(s) && s[i+1] == '}' {
				i++
				continue
			}
			return i
		}
	}
	return -1
}
