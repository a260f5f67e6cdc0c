package dbfallback

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
)

// The printed forms of a Target. Each is built from the parsed parts with
// every secret masked; none reads the secretSet except to mask it.

// String returns the redacted form of t; see [Target.Redacted].
func (t Target) String() string { return t.Redacted() }

// GoString returns the redacted form, so %#v does not print the password.
func (t Target) GoString() string { return fmt.Sprintf("dbfallback.Target(%q)", t.Redacted()) }

// LogValue makes a Target log as its redacted form under log/slog.
func (t Target) LogValue() slog.Value { return slog.StringValue(t.Redacted()) }

// MarshalText returns the redacted form, for encoders that use
// encoding.TextMarshaler (and for a Target used as a JSON map key).
func (t Target) MarshalText() ([]byte, error) { return []byte(t.Redacted()), nil }

// MarshalJSON encodes the exported fields under their Go names, as
// encoding/json would, with the value of any key in Params that is named
// like a secret masked (Validate never puts one there; a Target built by
// hand might).
func (t Target) MarshalJSON() ([]byte, error) {
	params := t.Params
	for k := range t.Params {
		if isSecretKey(k) {
			params = maps.Clone(t.Params)
			break
		}
	}
	for k := range params {
		if isSecretKey(k) {
			params[k] = redactedMask
		}
	}
	return json.Marshal(struct {
		Dialect  Dialect
		Hosts    []Host
		Database string
		User     string
		Params   map[string]string
		Pool     map[string]string
		Path     string
		Memory   bool
		Notes    []string
	}{t.Dialect, t.Hosts, t.Database, t.User, params, t.Pool, t.Path, t.Memory, t.Notes})
}
