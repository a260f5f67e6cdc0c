package dbfallback

import (
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// Helpers for attack_secrets_test.go: render a value on every channel a
// service may print it on, and look for a secret, or any recognisable part
// of it, in every rendering, decoded every way an output can encode it.

// atkRendering is one channel's output for one value.
type atkRendering struct {
	channel string
	out     string
}

// atkRender prints v on every generic channel: the fmt verbs, slog's text
// and JSON handlers (as a value and behind a pointer), encoding/json,
// encoding/xml and encoding/gob. Encoders that refuse v contribute their
// error text, which may quote v too.
func atkRender(name string, v any) []atkRendering {
	var out []atkRendering
	add := func(ch, s string) { out = append(out, atkRendering{name + " " + ch, s}) }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T%v"} {
		add(verb, fmt.Sprintf(verb, v))
	}
	add("Sprint", fmt.Sprint(v))
	add("Sprintln", fmt.Sprintln(v))
	add("ptr %+v", fmt.Sprintf("%+v", []any{&v}))
	add("in struct %+v", fmt.Sprintf("%+v", struct {
		V any
		w any
	}{v, v}))
	for _, h := range []struct {
		name string
		mk   func(*bytes.Buffer) slog.Handler
	}{
		{"slog text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"slog json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		var b bytes.Buffer
		l := slog.New(h.mk(&b))
		l.Info("x", "v", v)
		l.Info("x", slog.Any("v", v), slog.Group("g", "v", v))
		l.Error("x", "err", v)
		add(h.name, b.String())
	}
	if j, err := json.Marshal(v); err != nil {
		add("json error", err.Error())
	} else {
		add("json", string(j))
	}
	if j, err := json.Marshal(map[string]any{"v": v, "p": &v}); err == nil {
		add("json nested", string(j))
	}
	if x, err := xml.Marshal(v); err != nil {
		add("xml error", err.Error())
	} else {
		add("xml", string(x))
	}
	var g bytes.Buffer
	if err := gob.NewEncoder(&g).Encode(v); err != nil {
		add("gob error", err.Error())
	} else {
		add("gob", g.String())
	}
	return out
}

// atkFragments returns every part of secret of 4 runes or more worth
// looking for: every 4-rune window, except windows the benign text also
// holds (a password equal to a host name is printed as the host).
func atkFragments(secret string, benign ...string) []string {
	if !utf8.ValidString(secret) {
		// Non-UTF-8 bytes: windows of bytes.
		var out []string
		for i := 0; i+4 <= len(secret); i++ {
			out = append(out, secret[i:i+4])
		}
		return out
	}
	rs := []rune(secret)
	if strings.Trim(secret, "0123456789") == "" && len(secret) >= 8 {
		// A number: 4 digits turn up in every timestamp; look for 8.
		var out []string
		for i := 0; i+8 <= len(secret); i++ {
			out = append(out, secret[i:i+8])
		}
		return out
	}
	if len(rs) < 4 {
		return []string{secret}
	}
	seen := map[string]bool{}
	var out []string
	for i := 0; i+4 <= len(rs); i++ {
		f := string(rs[i : i+4])
		if seen[f] || atkBoring(f) {
			continue
		}
		skip := false
		for _, b := range benign {
			skip = skip || strings.Contains(b, f)
		}
		if !skip {
			seen[f] = true
			out = append(out, f)
		}
		if len(out) > 400 { // a 1 MB secret: a sample of windows is enough
			break
		}
	}
	return out
}

// atkBoring reports a window that is only punctuation, spaces or mask
// characters: it says nothing about the secret.
func atkBoring(f string) bool {
	for _, r := range f {
		if r != 'x' && (r > 0x7f || strings.ContainsRune("abcdefghijklmnopqrstuvwyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", r)) {
			return false
		}
	}
	return true
}

// atkViews decodes out every way an output can encode a secret: percent
// escapes (twice), backslash escapes (Go %q, JSON), hex (%x).
func atkViews(out string) []string {
	views := []string{out, atkPct(out), atkPct(atkPct(out)), atkUnbackslash(out), atkPct(atkUnbackslash(out))}
	views = append(views, atkUnhex(out))
	return views
}

func atkPct(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		if s[i] == '+' {
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func atkUnbackslash(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '0':
			b.WriteByte(0)
		case 'x':
			if i+2 < len(s) {
				if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
					b.WriteByte(byte(v))
					i += 2
					continue
				}
			}
			b.WriteByte('x')
		case 'u', 'U':
			n := 4
			if s[i] == 'U' {
				n = 8
			}
			if i+n < len(s) {
				if v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil {
					b.WriteRune(rune(v))
					i += n
					continue
				}
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// atkUnhex decodes every run of 8 or more hex digits.
func atkUnhex(s string) string {
	var b strings.Builder
	isHex := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
	}
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isHex(s[j]) {
			j++
		}
		if j-i >= 8 {
			run := s[i:j]
			if len(run)%2 == 1 {
				run = run[:len(run)-1]
			}
			if d, err := hex.DecodeString(run); err == nil {
				b.Write(d)
				b.WriteByte(' ')
			}
		}
		if j == i {
			j++
		}
		i = j
	}
	return b.String()
}

// atkCheck fails t for every rendering that shows a fragment of a secret.
// It returns how many renderings it checked.
func atkCheck(t *testing.T, secrets []string, benign []string, rs []atkRendering) int {
	t.Helper()
	var frags []string
	for _, s := range secrets {
		frags = append(frags, atkFragments(s, benign...)...)
	}
	for _, r := range rs {
		for _, v := range atkViews(r.out) {
			for _, f := range frags {
				if i := strings.Index(v, f); i >= 0 {
					lo, hi := max(i-60, 0), min(i+len(f)+60, len(v))
					t.Errorf("%s shows secret fragment %q: …%q…", r.channel, f, v[lo:hi])
					goto next
				}
			}
		}
	next:
	}
	return len(rs)
}
