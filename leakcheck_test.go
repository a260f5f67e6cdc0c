package dbfallback

import (
	"bytes"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// printVerbs are the fmt verbs a program might print a value with. %d and
// %x print a struct field by field, without calling String: they show
// what reflection can reach.
var printVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X"}

// renderAll prints v through every channel an application might use: each
// fmt verb (on v and on a pointer to it), slog's text and JSON handlers,
// encoding/json, encoding.TextMarshaler and, for an error, its text.
func renderAll(v any) map[string]string {
	out := map[string]string{}
	for _, verb := range printVerbs {
		out["fmt "+verb] = fmt.Sprintf(verb, v)
		if rv := reflect.ValueOf(v); rv.IsValid() && rv.Kind() != reflect.Pointer {
			p := reflect.New(rv.Type())
			p.Elem().Set(rv)
			out["fmt "+verb+" of a pointer"] = fmt.Sprintf(verb, p.Interface())
		}
	}
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"slog text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"slog JSON", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		var b bytes.Buffer
		slog.New(h.new(&b)).Info("msg", "value", v, slog.Group("g", "nested", v))
		out[h.name] = b.String()
	}
	if js, err := json.Marshal(v); err == nil {
		out["encoding/json"] = string(js)
	} else {
		out["encoding/json error"] = err.Error()
	}
	if js, err := json.Marshal(map[string]any{"v": []any{v}}); err == nil {
		out["encoding/json nested"] = string(js)
	}
	if tm, ok := v.(encoding.TextMarshaler); ok {
		txt, _ := tm.MarshalText()
		out["encoding.TextMarshaler"] = string(txt)
	}
	if err, ok := v.(error); ok {
		out["Error"] = err.Error()
	}
	return out
}

// secretForms returns the ways a secret can appear in output: as is,
// percent-encoded, quoted, and in lower- and upper-case hex.
func secretForms(secret string) []string {
	q := strings.Trim(fmt.Sprintf("%q", secret), `"`)
	return []string{secret, url.QueryEscape(secret), url.PathEscape(secret), q,
		hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret)))}
}

// assertNoSecretIn fails when any channel of v shows any form of any
// secret. Secrets shorter than 6 bytes are not checked: they match
// ordinary text.
func assertNoSecretIn(tb testing.TB, what string, v any, secrets ...string) {
	tb.Helper()
	for channel, text := range renderAll(v) {
		assertNoSecretText(tb, what+" via "+channel, text, secrets...)
	}
	for _, s := range walkStrings(v) {
		assertNoSecretText(tb, what+" (a string field reflection reaches)", s, secrets...)
	}
}

// assertNoSecretText fails when text holds any form of any secret.
func assertNoSecretText(tb testing.TB, where, text string, secrets ...string) {
	tb.Helper()
	for _, secret := range secrets {
		if len(secret) < 6 {
			continue
		}
		for _, form := range secretForms(secret) {
			if strings.Contains(text, form) {
				tb.Errorf("%s leaks %q: %.400s", where, secret, text)
				return
			}
		}
	}
}

var secretSetType = reflect.TypeOf(secretSet{})

// walkStrings returns every string reflection can reach from v: exported
// and unexported fields, map keys and values, slice elements, interface
// values and this package's pointers; it stops at a secretSet (where
// secrets are meant to be) and at pointers to other packages' types
// (fmt prints those as addresses below the top level, and they are not
// this package's to shape: a *sql.DB holds its driver's configuration).
func walkStrings(v any) []string {
	var out []string
	seen := map[uintptr]bool{}
	var walk func(reflect.Value, int)
	walk = func(rv reflect.Value, depth int) {
		if !rv.IsValid() || depth > 32 {
			return
		}
		switch rv.Kind() {
		case reflect.String:
			out = append(out, rv.String())
		case reflect.Pointer:
			if rv.IsNil() || rv.Type().Elem() == secretSetType || seen[rv.Pointer()] {
				return
			}
			if depth > 0 && rv.Type().Elem().PkgPath() != secretSetType.PkgPath() {
				return
			}
			seen[rv.Pointer()] = true
			walk(rv.Elem(), depth+1)
		case reflect.Interface:
			walk(rv.Elem(), depth+1)
		case reflect.Struct:
			if rv.Type() == secretSetType {
				return
			}
			for i := 0; i < rv.NumField(); i++ {
				walk(rv.Field(i), depth+1)
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < rv.Len(); i++ {
				walk(rv.Index(i), depth+1)
			}
		case reflect.Map:
			it := rv.MapRange()
			for it.Next() {
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
			}
		}
	}
	walk(reflect.ValueOf(v), 0)
	return out
}

// TestWalkStringsFindsPlainSecrets shows that the reflective check can
// fail: a secret in a plain string field, however deep and unexported, is
// found; the same secret in a secretSet is not.
func TestWalkStringsFindsPlainSecrets(t *testing.T) {
	type inner struct{ s string }
	type outer struct {
		m map[string][]inner
	}
	v := outer{m: map[string][]inner{"k": {{s: "Zq9SecretValue"}}}}
	found := strings.Join(walkStrings(&v), " ")
	if !strings.Contains(found, "Zq9SecretValue") {
		t.Fatalf("walkStrings missed a plain secret: %q", found)
	}
	tg := Target{Dialect: Postgres, secrets: newSecretSet("Zq9SecretValue", true, nil)}
	if strings.Contains(strings.Join(walkStrings(tg), " "), "Zq9SecretValue") {
		t.Fatal("walkStrings looked inside a secretSet")
	}
	// A field of the old shape (the password as a plain string in an
	// unexported field) is what %d and %+v printed by reflection.
	old := struct {
		Dialect  Dialect
		password string
	}{Postgres, "Zq9SecretValue"}
	if !strings.Contains(fmt.Sprintf("%+v", old), "Zq9SecretValue") {
		t.Fatal("fmt no longer prints unexported fields: the premise of this check changed")
	}
}
