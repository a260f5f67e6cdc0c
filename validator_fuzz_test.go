package dbfallback

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzValidate checks that Validate never panics, that every error is a
// *ValidationError matching exactly one sentinel, that an accepted target
// validates again to itself from its DSN, and that no printed form of an
// accepted target depends on its password. Seeded from testdata/urls.tsv.
func FuzzValidate(f *testing.F) {
	for _, row := range loadCorpus(f) {
		f.Add(row.input)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := Validate(raw)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, not *ValidationError: %v", err, err)
			}
			n := 0
			for _, s := range []error{ErrEmpty, ErrPlaceholder, ErrUnsupported, ErrMalformed} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || ve.Hint == "" || ve.Reason == "" {
				t.Fatalf("malformed error (%d sentinels): %v", n, err)
			}
			if len(ve.Input) > maxShownInput+len("…") {
				t.Fatalf("error repeats %d bytes of input", len(ve.Input))
			}
			return
		}
		again, err := Validate(tg.dsnWithPool())
		if err != nil {
			t.Fatalf("DSN of an accepted target is rejected: %.300v\ninput %.300q\ntarget %.300s", err, raw, tg)
		}
		if !sameTarget(tg, again) {
			t.Fatalf("not idempotent:\ninput  %.300q\nfirst  %.300s %q\nsecond %.300s", raw, tg.GoString(), tg.Hosts, again.GoString())
		}
		// No printed form may depend on the password: the same target with
		// another password must print the same.
		other := tg
		other.secrets = tg.secrets.withPassword("Other-Password-0")
		for _, f := range []func(Target) string{
			Target.String, Target.Redacted, Target.GoString,
			func(t Target) string { return t.LogValue().String() },
		} {
			if f(tg) != f(other) {
				t.Fatalf("printed form depends on the password:\n%s\n%s", f(tg), f(other))
			}
		}
	})
}

// secretTokens stand in for the letters and digits of a fuzzed password:
// each is distinctive, so finding one in output is a leak, not chance.
var secretTokens = func() []string {
	out := make([]string, 64)
	for i := range out {
		out[i] = fmt.Sprintf("Qz%cW%02dX", 'A'+i%26, i) // fixed width: no token contains another
	}
	return out
}()

// tokenize turns fuzzed bytes into a password: each letter or digit becomes
// the next distinctive token, every other byte (the separators that split
// passwords in parsers) is kept as is.
func tokenize(b []byte) (string, []string, bool) {
	var sb strings.Builder
	var used []string
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			if len(used) == len(secretTokens) {
				return "", nil, false
			}
			tok := secretTokens[len(used)]
			used = append(used, tok)
			sb.WriteString(tok)
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String(), used, len(used) > 0
}

// FuzzValidateSecret places a hostile password in each of the shapes of
// hostileShapes and checks that no piece of it reaches an error, a note or
// a printed target. In a shape without a host of its own the value decides
// what is a password: for an accepted value the password as parsed must
// stay hidden; for a rejected one, the text after its last '@' (or a host
// list after an empty or numeric port) is the host as written.
func FuzzValidateSecret(f *testing.F) {
	for i := range hostileShapes {
		for _, pw := range hostilePasswords {
			f.Add(uint8(i), []byte(pw))
		}
	}
	f.Fuzz(func(t *testing.T, shapeIndex uint8, raw []byte) {
		shape := hostileShapes[int(shapeIndex)%len(hostileShapes)]
		secret, tokens, ok := tokenize(raw)
		if !ok {
			return
		}
		in := strings.Replace(shape, "%s", secret, 1)
		check := tokens
		hostless := !strings.Contains(shape, "@db.example.com") && !strings.Contains(shape, "//db.example.com")
		if hostless {
			// The shape names no host of its own, so the text after the
			// last '@' is, as written, the host: not a secret to hide.
			public := ""
			if at := strings.LastIndexByte(in, '@'); at >= 0 {
				public = in[at+1:]
			} else if i := strings.Index(in, "user:"); i >= 0 {
				// No '@' at all: after "user:" stands a port. When that port
				// is empty or numeric, a ',' makes the rest a host list.
				auth := in[i+len("user:"):]
				if j := strings.IndexAny(auth, "/?"); j >= 0 {
					auth = auth[:j]
				}
				if first, _, _ := strings.Cut(auth, ","); first == "" || isAllDigits(first) {
					public = auth
				}
			}
			check = nil
			for _, tok := range tokens {
				if !strings.Contains(public, tok) {
					check = append(check, tok)
				}
			}
		}
		tg, err := Validate(in)
		if err != nil {
			for _, tok := range check {
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("error leaks password piece %q\ninput %q\nerror %v", tok, in, err)
				}
			}
			return
		}
		if hostless {
			// Accepted as written: what the value calls a password is what
			// must stay hidden.
			pw, _ := tg.Password()
			check = nil
			for _, tok := range tokens {
				if strings.Contains(pw, tok) {
					check = append(check, tok)
				}
			}
		}
		out := strings.Join([]string{tg.String(), fmt.Sprintf("%#v", tg), tg.LogValue().String(), strings.Join(tg.Notes, " ")}, "\n")
		for _, tok := range check {
			if strings.Contains(out, tok) {
				t.Fatalf("target leaks password piece %q\ninput %q\noutput %s", tok, in, out)
			}
		}
	})
}
