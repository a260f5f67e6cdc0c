package dbfallback

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// The printed forms of what Resolve reports. Every field they show is
// redacted where it is built (Detail, Path, errors) or prints itself
// redacted (Target); these methods choose a readable shape and keep errors
// as their text, which encoding/json would otherwise drop or expand.

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// String returns one line: the source's name, what it held (redacted) and
// whether it was used, and why not.
func (s Source) String() string {
	switch {
	case !s.Found:
		return s.Name + ": not set"
	case s.Chosen:
		return fmt.Sprintf("%s: %s (used)", s.Name, s.Detail)
	case s.Err != nil:
		return fmt.Sprintf("%s: %s (not used: %s)", s.Name, s.Detail, s.Err)
	}
	return fmt.Sprintf("%s: %s", s.Name, s.Detail)
}

// GoString returns a Go-syntax form with the error as its text.
func (s Source) GoString() string {
	return fmt.Sprintf("dbfallback.Source{Name:%q, Found:%t, Detail:%q, Target:%#v, Err:%q, Chosen:%t}",
		s.Name, s.Found, s.Detail, s.Target, errText(s.Err), s.Chosen)
}

// LogValue logs a Source as a group of its fields, the error as text.
func (s Source) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", s.Name), slog.Bool("found", s.Found)}
	if s.Found {
		attrs = append(attrs, slog.String("detail", s.Detail), slog.Bool("chosen", s.Chosen))
	}
	if !s.Target.IsZero() {
		attrs = append(attrs, slog.String("target", s.Target.Redacted()))
	}
	if s.Err != nil {
		attrs = append(attrs, slog.String("error", s.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the fields under their Go names, Err as its text
// (null when nil).
func (s Source) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name   string
		Found  bool
		Detail string
		Target Target
		Err    *string
		Chosen bool
	}{s.Name, s.Found, s.Detail, s.Target, errPtr(s.Err), s.Chosen})
}

func errPtr(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

// String returns one line: where the location came from, its path, and
// whether it is usable.
func (p SQLitePath) String() string {
	switch {
	case p.Err != nil:
		return fmt.Sprintf("%s %s: skipped: %s", p.Origin, p.Path, p.Err)
	case p.Chosen:
		return fmt.Sprintf("%s %s: usable, chosen", p.Origin, p.Path)
	}
	return fmt.Sprintf("%s %s: usable", p.Origin, p.Path)
}

// GoString returns a Go-syntax form with the error as its text.
func (p SQLitePath) GoString() string {
	return fmt.Sprintf("dbfallback.SQLitePath{Path:%q, Origin:%q, Persistent:%t, Err:%q, Chosen:%t}",
		p.Path, p.Origin, p.Persistent, errText(p.Err), p.Chosen)
}

// LogValue logs a SQLitePath as a group of its fields, the error as text.
func (p SQLitePath) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("path", p.Path), slog.String("origin", p.Origin),
		slog.Bool("persistent", p.Persistent), slog.Bool("chosen", p.Chosen)}
	if p.Err != nil {
		attrs = append(attrs, slog.String("error", p.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the fields under their Go names, Err as its text
// (null when nil).
func (p SQLitePath) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Path       string
		Origin     string
		Persistent bool
		Err        *string
		Chosen     bool
	}{p.Path, p.Origin, p.Persistent, errPtr(p.Err), p.Chosen})
}

// String summarises the resolution in one line: the primary and where it
// came from (or why there is none), then the fallback chain.
func (r Resolution) String() string {
	var b strings.Builder
	if r.Primary.IsZero() {
		b.WriteString("no primary (")
		b.WriteString(r.Reason())
		b.WriteString(")")
	} else {
		b.WriteString("primary ")
		b.WriteString(r.Primary.Redacted())
		for _, s := range r.Sources {
			if s.Chosen {
				b.WriteString(" from ")
				b.WriteString(s.Name)
			}
		}
	}
	b.WriteString("; fallbacks ")
	for i, t := range r.Fallbacks {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Redacted())
	}
	return b.String()
}

// GoString returns a Go-syntax form built from the GoString of each part.
func (r Resolution) GoString() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dbfallback.Resolution{Primary:%#v, Sources:[]dbfallback.Source{", r.Primary)
	for i, s := range r.Sources {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.GoString())
	}
	b.WriteString("}, Fallbacks:[]dbfallback.Target{")
	for i, t := range r.Fallbacks {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.GoString())
	}
	b.WriteString("}, Paths:[]dbfallback.SQLitePath{")
	for i, p := range r.Paths {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.GoString())
	}
	fmt.Fprintf(&b, "}, SpaceID:%q, ConnectTimeout:%d}", r.SpaceID, r.ConnectTimeout)
	return b.String()
}

// LogValue logs a Resolution as a group: the primary (or the reason there
// is none), its source, and the fallback chain.
func (r Resolution) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 4)
	if r.Primary.IsZero() {
		attrs = append(attrs, slog.String("reason", r.Reason()))
	} else {
		attrs = append(attrs, slog.String("primary", r.Primary.Redacted()))
		for _, s := range r.Sources {
			if s.Chosen {
				attrs = append(attrs, slog.String("source", s.Name))
			}
		}
	}
	chain := make([]string, len(r.Fallbacks))
	for i, t := range r.Fallbacks {
		chain[i] = t.Redacted()
	}
	attrs = append(attrs, slog.String("fallbacks", strings.Join(chain, ", ")))
	if r.SpaceID != "" {
		attrs = append(attrs, slog.String("space_id", r.SpaceID))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the fields under their Go names; every part encodes
// itself redacted (see Target, Source and SQLitePath).
func (r Resolution) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Primary        Target
		Sources        []Source
		Fallbacks      []Target
		Paths          []SQLitePath
		SpaceID        string
		ConnectTimeout time.Duration
	}{r.Primary, r.Sources, r.Fallbacks, r.Paths, r.SpaceID, r.ConnectTimeout})
}
