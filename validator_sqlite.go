package dbfallback

import (
	"fmt"
	"slices"
	"strings"
)

var sqliteSuffixes = []string{".db", ".sqlite", ".sqlite3"}

// hasSQLiteSuffix reports a bare path ending in .db, .sqlite or .sqlite3
// (before any query).
func hasSQLiteSuffix(s string) bool {
	path, _, _ := strings.Cut(s, "?")
	lower := strings.ToLower(path)
	for _, suf := range sqliteSuffixes {
		if strings.HasSuffix(lower, suf) && len(lower) > len(suf) {
			return true
		}
	}
	return false
}

// sqliteURL reads what follows "sqlite:" (or "sqlite3:"), the SQLAlchemy
// way: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (memory),
// plus the opaque forms sqlite:name.db and sqlite::memory:.
func (v *validation) sqliteURL(rest string) (Target, error) {
	path, query, _ := strings.Cut(rest, "?")
	if strings.HasPrefix(path, "//") {
		p := path[2:]
		switch {
		case p == "":
			return v.sqliteMemory("", query)
		case p == ":memory:":
			return v.sqliteMemory("", query)
		case p == "/":
			return Target{}, v.fail(CodeMissingTarget, "sqlite:/// names no file",
				"write sqlite:///relative/app.db or sqlite:////absolute/app.db")
		case strings.HasPrefix(p, "/"):
			p = p[1:]
			if p == ":memory:" {
				return v.sqliteMemory("", query)
			}
			if v.scheme3 && !strings.HasPrefix(p, "/") {
				v.note("read sqlite3:///%s as a relative path, as SQLAlchemy does (Rails reads it as absolute); write four slashes for an absolute path", "…")
			}
			return v.sqlitePath(p, query)
		}
		return Target{}, v.fail(CodeBadPath, "a SQLite URL has a host part (two slashes, then a name)",
			"write sqlite:///relative/app.db (three slashes) or sqlite:////absolute/app.db (four)")
	}
	switch path {
	case "":
		return Target{}, v.fail(CodeMissingTarget, "the sqlite: scheme names no file",
			"write sqlite:///app.db")
	case ":memory:":
		return v.sqliteMemory("", query)
	}
	return v.sqlitePath(path, query)
}

// sqliteFileURI reads what follows "file:" as a SQLite URI; its parameters
// are kept.
func (v *validation) sqliteFileURI(rest string) (Target, error) {
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
		v.note("removed a #fragment, which SQLite ignores")
	}
	path, query, _ := strings.Cut(rest, "?")
	if strings.HasPrefix(path, "//") {
		authority, p, _ := strings.Cut(path[2:], "/")
		if authority != "" && authority != "localhost" {
			return Target{}, v.fail(CodeBadPath, "a file: URI names a remote host",
				"SQLite opens local files only: write file:///absolute/app.db or file:relative.db")
		}
		if p == "" {
			return Target{}, v.fail(CodeMissingTarget, "the file: URI names no file",
				"write file:///absolute/app.db or file:relative.db")
		}
		path = "/" + p
	}
	if path == "" {
		if strings.Contains(query, "mode=memory") {
			return v.sqliteMemory("", query)
		}
		return Target{}, v.fail(CodeMissingTarget, "the file: URI names no file", "write file:app.db")
	}
	if path == ":memory:" {
		return v.sqliteMemory("", query)
	}
	return v.sqlitePath(path, query)
}

func (v *validation) sqliteMemory(name, query string) (Target, error) {
	params, err := v.sqliteParams(query)
	if err != nil {
		return Target{}, err
	}
	return sqliteTarget(name, true, params), nil
}

// sqliteTarget builds a SQLite target; mode=memory is implied by memory
// and dropped from the parameters, and secret-valued parameters (such as
// go-sqlite3's _auth_pass) move to the target's secrets.
func sqliteTarget(path string, memory bool, params map[string]string) Target {
	if memory {
		delete(params, "mode")
	}
	var public, secret map[string]string
	for k, val := range params {
		public, secret = putParam(public, secret, k, val, isSecretKey(k))
	}
	return Target{Dialect: SQLite, Path: path, Memory: memory, Params: public, secrets: newSecretSet("", false, secret)}
}

// sqlitePath validates a (still percent-encoded) file path and its query.
func (v *validation) sqlitePath(rawPath, query string) (Target, error) {
	if strings.IndexByte(rawPath, ' ') >= 0 {
		return Target{}, v.fail(CodeSpace, "the SQLite path contains a raw space",
			"percent-encode spaces as %20 in a URL, or choose a path without spaces")
	}
	path, err := uriDecode(rawPath)
	if err != nil {
		return Target{}, v.fail(CodeBadEscape, "the SQLite path has an invalid percent-escape",
			"write % as %25; a percent-escape is % followed by two hex digits")
	}
	params, err := v.sqliteParams(query)
	if err != nil {
		return Target{}, err
	}
	if params["uri"] == "true" {
		delete(params, "uri")
		path = strings.TrimPrefix(path, "file:")
	}
	switch {
	case path == ":memory:" && params["mode"] == "":
		return sqliteTarget("", true, params), nil
	case params["mode"] == "memory":
		return sqliteTarget(path, true, params), nil
	case componentPlaceholder(path) || strings.HasPrefix(path, "$"):
		return Target{}, v.fail(CodePlaceholder, "the SQLite path is a template placeholder",
			"replace it with the real path, for example ./data/app.db")
	case strings.HasSuffix(path, "/") || path == "." || path == "..":
		return Target{}, v.fail(CodeBadPath, "the SQLite path names a directory, not a file",
			"add a file name: data/app.db")
	case strings.HasPrefix(path, "~"):
		return Target{}, v.fail(CodeBadPath, "the SQLite path starts with ~, which is not expanded",
			"use an absolute path or one relative to the working directory")
	}
	return sqliteTarget(path, false, params), nil
}

// sqliteParams parses and checks SQLite URI and go-sqlite3 parameters.
func (v *validation) sqliteParams(query string) (map[string]string, error) {
	params := map[string]string{}
	if query == "" {
		return params, nil
	}
	settings, notes, err := v.parseQuery(query)
	if err != nil {
		return nil, err
	}
	v.notes = append(v.notes, notes...)
	for _, s := range settings {
		rule, known := ruleFor(s.key, SQLite)
		if known && rule.action == drop {
			v.note("removed %s, a %s setting (dbfallback tunes busy timeout and locking itself)", s.key, rule.tool)
			continue
		}
		if known && rule.values != nil && !slices.Contains(rule.values, s.value) {
			return nil, v.fail(CodeBadParam, fmt.Sprintf("the SQLite %s parameter has an unknown value", s.key),
				"use one of: "+strings.Join(rule.values, ", "))
		}
		params[s.key] = s.value
	}
	return params, nil
}
