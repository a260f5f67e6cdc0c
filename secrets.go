package dbfallback

import (
	"fmt"
	"maps"
	"slices"
)

// secretSet holds the secrets of a Target: the password and the values of
// secret-valued parameters. A Target keeps it behind a pointer in an
// unexported field: fmt prints unexported fields by reflection, without
// calling their methods, but prints a pointer below the top level as an
// address, so no verb reaches what it points to; encoding/json skips
// unexported fields. Nothing else in this package stores a secret in a
// struct.
type secretSet struct {
	password string
	hasPass  bool
	params   map[string]string
}

// newSecretSet returns the set for a password and secret parameters, or
// nil when there is neither.
func newSecretSet(password string, hasPass bool, params map[string]string) *secretSet {
	if !hasPass && len(params) == 0 {
		return nil
	}
	return &secretSet{password: password, hasPass: hasPass, params: params}
}

// withPassword returns a copy of s with another password (and with other
// values for its secret parameters), for tests that compare a target's
// printed forms under two sets of secrets. A set without a password stays
// without one.
func (s *secretSet) withPassword(pw string) *secretSet {
	if s == nil {
		return nil
	}
	c := &secretSet{password: pw, hasPass: s.hasPass, params: maps.Clone(s.params)}
	if !s.hasPass {
		c.password = ""
	}
	for k := range c.params {
		c.params[k] = pw + "-" + k
	}
	return c
}

// values lists every secret in s, to scrub from text that did not come
// from this package, such as a driver's error message.
func (s *secretSet) values() []string {
	if s == nil {
		return nil
	}
	var out []string
	if s.hasPass {
		out = append(out, s.password)
	}
	for _, k := range slices.Sorted(maps.Keys(s.params)) {
		out = append(out, s.params[k])
	}
	return out
}

// Format prints the mask for every verb, should a secretSet ever be
// handed to fmt directly.
func (s *secretSet) Format(f fmt.State, verb rune) { fmt.Fprint(f, redactedMask) }
