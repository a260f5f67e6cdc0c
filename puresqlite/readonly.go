//go:build !cgo || dbfallback_puresqlite

package puresqlite

import (
	"context"
	"database/sql/driver"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// readonly.go answers sqlite3_stmt_readonly, which modernc.org/sqlite does
// not expose: dbfallback's write gate asks it of every statement it cannot
// tell from its first word. SQLite clears a statement's read-only flag
// when its program holds an OP_Transaction that starts a write (p2 ≠ 0),
// or an OP_Checkpoint, OP_Vacuum or OP_JournalMode (resolveP2Values in
// vdbeaux.c); EXPLAIN lists that program, so reading it gives the same
// answer. The verdict depends on the statement's text alone, so it is
// cached: EXPLAIN runs once per distinct statement.

// maxCachedStatements bounds the cache; it starts over when full.
const maxCachedStatements = 4096

type readonlyCache struct {
	mu sync.Mutex
	m  map[string]bool
}

func newReadonlyCache() *readonlyCache { return &readonlyCache{m: map[string]bool{}} }

// readonly reports whether query, a single statement with numInput
// parameters (-1 when unknown), makes no direct change to the database.
// A statement EXPLAIN cannot read counts as a write.
func (c *readonlyCache) readonly(ctx context.Context, q driver.QueryerContext, query string, numInput int) bool {
	c.mu.Lock()
	ro, ok := c.m[query]
	c.mu.Unlock()
	if ok {
		return ro
	}
	ro, ok = explainReadonly(ctx, q, query, numInput)
	if !ok {
		return false
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedStatements {
		clear(c.m)
	}
	c.m[query] = ro
	c.mu.Unlock()
	return ro
}

// explainReadonly reads the program of query; ok is false when EXPLAIN
// fails.
func explainReadonly(ctx context.Context, q driver.QueryerContext, query string, numInput int) (readonly, ok bool) {
	if rest, ok := cutExplain(query); ok {
		// EXPLAIN EXPLAIN is an error; SQLite judges an EXPLAIN by the
		// statement it explains.
		return explainReadonly(ctx, q, rest, numInput)
	}
	// Parameters are bound to NULL: EXPLAIN compiles, it does not run.
	// modernc does not count them (NumInput is -1), so there are as many
	// positional ones as '?' could mean, and named ones (:a, @a, $a) by
	// name; the ones the statement does not have bind nothing.
	n := max(numInput, positionalParams(query))
	args := make([]driver.NamedValue, n)
	for i := range args {
		args[i] = driver.NamedValue{Ordinal: i + 1}
	}
	for _, name := range paramNames(query) {
		args = append(args, driver.NamedValue{Name: name, Ordinal: len(args) + 1})
	}
	rows, err := q.QueryContext(ctx, "EXPLAIN "+query, args)
	if err != nil {
		return false, false
	}
	defer rows.Close()
	// addr, opcode, p1, p2, p3, p4, p5, comment
	if len(rows.Columns()) < 4 {
		return false, false
	}
	row := make([]driver.Value, len(rows.Columns()))
	readonly = true
	for {
		err := rows.Next(row)
		if err == io.EOF {
			return readonly, true
		}
		if err != nil {
			return false, false
		}
		switch text(row[1]) {
		case "Transaction":
			if p2, _ := row[3].(int64); p2 != 0 {
				readonly = false
			}
		case "Checkpoint", "Vacuum", "JournalMode":
			readonly = false
		}
	}
}

// positionalParams returns an upper bound of the positional parameters
// of query: one per '?', or the largest ?NNN.
func positionalParams(query string) int {
	n := strings.Count(query, "?")
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			continue
		}
		j := i + 1
		for j < len(query) && query[j] >= '0' && query[j] <= '9' && j-i <= 5 {
			j++
		}
		if k, err := strconv.Atoi(query[i+1 : j]); err == nil && k > n && k <= 32766 {
			n = k
		}
	}
	return n
}

// cutExplain returns the statement after a leading EXPLAIN or EXPLAIN
// QUERY PLAN.
func cutExplain(query string) (string, bool) {
	words := strings.Fields(query)
	switch {
	case len(words) > 3 && strings.EqualFold(words[0], "EXPLAIN") && strings.EqualFold(words[1], "QUERY") && strings.EqualFold(words[2], "PLAN"):
		return strings.Join(words[3:], " "), true
	case len(words) > 1 && strings.EqualFold(words[0], "EXPLAIN"):
		return strings.Join(words[1:], " "), true
	}
	return "", false
}

// paramNames returns the names after ':', '@' and '$' in query, without
// the sign.
func paramNames(query string) []string {
	var names []string
	for i := 0; i < len(query); i++ {
		if c := query[i]; c != ':' && c != '@' && c != '$' {
			continue
		}
		j := i + 1
		for j < len(query) && (query[j] == '_' || query[j] >= 'a' && query[j] <= 'z' || query[j] >= 'A' && query[j] <= 'Z' || query[j] >= '0' && query[j] <= '9' || query[j] >= 0x80) {
			j++
		}
		if j > i+1 && !slices.Contains(names, query[i+1:j]) {
			names = append(names, query[i+1:j])
		}
		i = j - 1
	}
	return names
}

func text(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}
