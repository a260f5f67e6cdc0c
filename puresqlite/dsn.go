//go:build !cgo || dbfallback_puresqlite

package puresqlite

import (
	"fmt"
	"net/url"
	"strings"
)

// dsn.go translates the DSN dbfallback writes, whose driver parameters
// are go-sqlite3's, into modernc.org/sqlite's. modernc reads most of them
// under the same names (_busy_timeout, _journal_mode, _synchronous,
// _foreign_keys, _txlock, _auto_vacuum, _query_only and their aliases),
// and SQLite itself reads its URI parameters (mode, cache, vfs, …).

// dsnRule says what becomes of one go-sqlite3 parameter.
type dsnRule struct {
	// pragma is the PRAGMA a parameter modernc lacks is run as (through
	// modernc's _pragma).
	pragma string
	// to renames the parameter.
	to string
	// drop removes it: modernc has no such setting and needs none.
	drop bool
	// unsupported fails the open: the setting asks for something modernc
	// cannot do, and ignoring it would weaken what the URL asked for.
	unsupported string
}

// goSQLite3Params are go-sqlite3's parameters that modernc.org/sqlite does
// not read under the same name. The others pass unchanged.
var goSQLite3Params = map[string]dsnRule{
	"_loc":                      {to: "_timezone"},
	"_mutex":                    {drop: true}, // modernc always opens in serialized mode
	"_locking_mode":             {pragma: "locking_mode"},
	"_locking":                  {pragma: "locking_mode"},
	"_cache_size":               {pragma: "cache_size"},
	"_case_sensitive_like":      {pragma: "case_sensitive_like"},
	"_cslike":                   {pragma: "case_sensitive_like"},
	"_defer_foreign_keys":       {pragma: "defer_foreign_keys"},
	"_defer_fk":                 {pragma: "defer_foreign_keys"},
	"_ignore_check_constraints": {pragma: "ignore_check_constraints"},
	"_recursive_triggers":       {pragma: "recursive_triggers"},
	"_rt":                       {pragma: "recursive_triggers"},
	"_secure_delete":            {pragma: "secure_delete"},
	"_writable_schema":          {pragma: "writable_schema"},
	"_auth":                     {unsupported: "SQLite's user authentication extension"},
	"_auth_user":                {unsupported: "SQLite's user authentication extension"},
	"_auth_pass":                {unsupported: "SQLite's user authentication extension"},
	"_auth_crypt":               {unsupported: "SQLite's user authentication extension"},
	"_auth_salt":                {unsupported: "SQLite's user authentication extension"},
}

// translateDSN rewrites dsn for modernc.org/sqlite. A repeated parameter
// keeps its first value, as both drivers read it; times are written in
// go-sqlite3's format unless the DSN names one (_time_format).
func translateDSN(dsn string) (string, error) {
	base, query, _ := strings.Cut(dsn, "?")
	var out []string
	seen := map[string]bool{}
	add := func(key, kv string) {
		if !seen[key] {
			seen[key] = true
			out = append(out, kv)
		}
	}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		rawKey, rawVal, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return "", fmt.Errorf("dbfallback/puresqlite: the SQLite DSN has a bad parameter name: %w", err)
		}
		rule, ok := goSQLite3Params[key]
		switch {
		case !ok:
			add(key, kv)
		case rule.drop:
		case rule.unsupported != "":
			return "", fmt.Errorf("dbfallback/puresqlite: the SQLite parameter %s needs %s, which the pure-Go engine (modernc.org/sqlite) lacks: remove it, or build with cgo for go-sqlite3", key, rule.unsupported)
		case rule.to != "":
			val, err := url.QueryUnescape(rawVal)
			if err != nil {
				return "", fmt.Errorf("dbfallback/puresqlite: the SQLite parameter %s has a bad value: %w", key, err)
			}
			if key == "_loc" && strings.EqualFold(val, "auto") {
				val = "Local"
			}
			add(rule.to, rule.to+"="+url.QueryEscape(val))
		default:
			val, err := url.QueryUnescape(rawVal)
			if err != nil || !pragmaValue(val) {
				return "", fmt.Errorf("dbfallback/puresqlite: the SQLite parameter %s has a value that is not a word or a number", key)
			}
			add(rule.pragma, "_pragma="+url.QueryEscape(rule.pragma+"("+val+")"))
		}
	}
	add("_time_format", "_time_format=sqlite")
	return base + "?" + strings.Join(out, "&"), nil
}

// pragmaValue reports a value that is safe to write into a PRAGMA: a word
// or a (signed) number, nothing that could end the statement.
func pragmaValue(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
