package dbfallback

import "strings"

// looksKeywordValue reports whether s starts like libpq's keyword/value form
// ("host=… dbname=…"): a lower-case word, optional spaces, then '='.
func looksKeywordValue(s string) bool {
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i < len(s) && s[i] == '='
}

// keywordValue parses a libpq keyword/value string with libpq's rules:
// values are single-quoted or end at a space, and a backslash escapes the
// next character. Unlike pgx, unknown keywords are rejected (libpq does the
// same), so junk containing '=' is not mistaken for settings.
func (v *validation) keywordValue(s string) (Target, error) {
	var settings []setting
	s = strings.TrimLeft(s, " ")
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return Target{}, v.fail(CodeKeywordSyntax, "a word is not followed by '=' (a space inside an unquoted value?)",
				"quote values that contain spaces: password='my secret'")
		}
		key := strings.TrimRight(s[:eq], " ")
		if key == "" || strings.IndexByte(key, ' ') >= 0 {
			return Target{}, v.fail(CodeKeywordSyntax, "a word is not followed by '=' (a space inside an unquoted value?)",
				"quote values that contain spaces: password='my secret'")
		}
		s = strings.TrimLeft(s[eq+1:], " ")
		var val string
		switch {
		case s == "":
		case s[0] == '\'':
			end := closingQuote(s, 1, '\'', false) - 1
			if end < 0 {
				return Target{}, v.fail(CodeKeywordSyntax, "a quoted value is never closed",
					"close the value with ' and write a literal quote as \\'")
			}
			val = unescapeKeyword(s[1 : 1+end])
			s = strings.TrimLeft(s[end+2:], " ")
		default:
			end := 0
			for end < len(s) && s[end] != ' ' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end > len(s) {
				end = len(s)
			}
			val = unescapeKeyword(s[:end])
			s = strings.TrimLeft(s[end:], " ")
		}
		if key == "database" {
			v.note("read the keyword database as dbname")
			key = "dbname"
		}
		if !isKeyword(key) {
			return Target{}, v.fail(CodeUnknownKeyword, "a keyword is not a libpq connection setting",
				"use libpq keywords (host, port, dbname, user, password, sslmode, …); put server settings in options='-c name=value'")
		}
		if key == "user" && val == "" {
			continue
		}
		settings = append(settings, setting{key, val})
	}
	return v.buildPostgres(settings, "keyword/value string")
}

// unescapeKeyword drops each backslash and keeps the character after it.
func unescapeKeyword(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
