// Package secretgen builds configuration inputs that carry a marker
// password, in every shape people put database credentials in: URLs,
// query strings, libpq keyword/value strings, JDBC, ADO.NET and ODBC
// strings, JSON secrets, YAML and .env lines, multi-line secret files,
// SQLITE_PATH and the libpq PG* variables.
//
// The marker is made of distinctive tokens joined by the characters that
// split passwords in parsers; finding any token in any output is a leak.
// Every shape writes the whole marker where a secret belongs, and names
// its host after it, so no token is ever legitimately public. Tests in
// the library, examples/doctor and examples/hfspace feed the cases to
// their own channels and call [Case.Leaks] on what comes out.
package secretgen

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Case is one generated configuration.
type Case struct {
	// Family names the shape, one of [Families].
	Family string
	// Shape describes the variant within the family, for failure messages.
	Shape string
	// Secret is the marker password as placed (before any escaping).
	Secret string
	// Tokens are the distinctive pieces of Secret. Any of them in output
	// is a leak.
	Tokens []string
	// Env holds the environment variables to set (DATABASE_URL,
	// SQLITE_PATH, PG*).
	Env map[string]string
	// File, when not empty, is the content of a secret file: set
	// DATABASE_URL_FILE to its path.
	File string
}

// Leaks returns the tokens of the marker that text contains.
func (c Case) Leaks(text string) []string {
	var out []string
	for _, t := range c.Tokens {
		if strings.Contains(text, t) {
			out = append(out, t)
		}
	}
	return out
}

// String describes the case for a failure message: family, shape and
// every input.
func (c Case) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s secret=%q", c.Family, c.Shape, c.Secret)
	for _, k := range sortedKeys(c.Env) {
		fmt.Fprintf(&b, " %s=%q", k, c.Env[k])
	}
	if c.File != "" {
		fmt.Fprintf(&b, " file=%q", c.File)
	}
	return b.String()
}

// Config says where generated cases point. Tests set Host and Port to a
// loopback address where nothing listens, so that opening a case costs a
// refused connection and never leaves the machine.
type Config struct {
	// Host is the database host every case names (default
	// "db.example.com").
	Host string
	// Port is its port (default "5432"); every shape writes it.
	Port string
}

func (c Config) withDefaults() Config {
	if c.Host == "" {
		c.Host = "db.example.com"
	}
	if c.Port == "" {
		c.Port = "5432"
	}
	return c
}

// Family is one kind of input shape.
type Family struct {
	// Name identifies the family.
	Name string
	// build makes a case of this family for the marker pw.
	build func(g *gen, pw string) Case
}

// Families lists every family, in a fixed order.
var Families = []Family{
	{"url-userinfo", urlUserinfo},
	{"query-secret", querySecret},
	{"keyword-value", keywordValue},
	{"jdbc", jdbc},
	{"forgotten-question-mark", forgottenQuestionMark},
	{"adonet", adoNet},
	{"odbc", odbc},
	{"json-secret", jsonSecret},
	{"yaml-env-line", yamlEnvLine},
	{"secret-file", secretFile},
	{"sqlite-path", sqlitePath},
	{"pg-variables", pgVariables},
	{"foreign-and-template", foreignAndTemplate},
	{"pasted-and-quoted", pastedAndQuoted},
}

// Generate builds one case of family f from the random source r.
func Generate(r *rand.Rand, f Family, cfg Config) Case {
	g := &gen{r: r, cfg: cfg.withDefaults()}
	pw, tokens := g.marker()
	c := f.build(g, pw)
	c.Family = f.Name
	c.Secret = pw
	c.Tokens = tokens
	return c
}

// FromBytes builds a case from fuzzer input: the first byte picks the
// family, the rest seed the random choices.
func FromBytes(data []byte, cfg Config) Case {
	var seed [2]uint64
	for i, b := range data {
		seed[i%2] = seed[i%2]*131 + uint64(b) + 1
	}
	fam := 0
	if len(data) > 0 {
		fam = int(data[0]) % len(Families)
	}
	return Generate(rand.New(rand.NewPCG(seed[0], seed[1])), Families[fam], cfg)
}

// gen carries the random source and the configuration of one case.
type gen struct {
	r   *rand.Rand
	cfg Config
}

func (g *gen) pick(options ...string) string { return options[g.r.IntN(len(options))] }

// hostPort is "host:port".
func (g *gen) hostPort() string { return g.cfg.Host + ":" + g.cfg.Port }

// tokenAlphabet has no look-alikes, so that a token never spells a word.
const tokenAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"

// separators are the characters that end, split or quote a password in
// some parser, plus ones that need escaping in some format.
var separators = []string{"@", "#", "/", "?", ":", "%", "&", "=", ";", "'", "\"", " ", "\\", "{", "}", "[", "]",
	"$", "<", ">", ",", "+", "!", "*", "(", ")", "`", "|", "~", "^", "@@", "%2", "%zz", "=;", "&=", "''", "\"\"", "}}"}

// marker returns a random password: one to four distinctive tokens (each
// "Mk" plus six letters and digits, with a digit and a lower-case letter
// so that none reads as an environment-variable name), with separators
// between, before or after them.
func (g *gen) marker() (string, []string) {
	n := 1 + g.r.IntN(4)
	var b strings.Builder
	var tokens []string
	if g.r.IntN(4) == 0 {
		b.WriteString(g.pick(separators...))
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(g.pick(separators...))
			if g.r.IntN(3) == 0 {
				b.WriteString(g.pick(separators...))
			}
		}
		tok := make([]byte, 8)
		tok[0], tok[1] = 'M', 'k'
		for j := 2; j < 8; j++ {
			tok[j] = tokenAlphabet[g.r.IntN(len(tokenAlphabet))]
		}
		tok[2+g.r.IntN(3)] = "23456789"[g.r.IntN(8)]
		tok[5+g.r.IntN(3)] = "abcdefghjkmnpqrstuvwxyz"[g.r.IntN(23)]
		tokens = append(tokens, string(tok))
		b.Write(tok)
	}
	if g.r.IntN(4) == 0 {
		b.WriteString(g.pick(separators...))
	}
	return b.String(), tokens
}

// maybe returns s half of the time.
func (g *gen) maybe(s string) string {
	if g.r.IntN(2) == 0 {
		return s
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
