package dbfallback

import (
	"errors"
	"strings"
)

// Sentinels to branch on with errors.Is. Every *[ValidationError] matches
// exactly one of them.
var (
	// ErrEmpty reports a value that is empty once whitespace and quotes are
	// removed.
	ErrEmpty = errors.New("dbfallback: empty database URL")
	// ErrPlaceholder reports an unexpanded template such as ${DB_HOST},
	// $DB_PASS, <password> or a literal "PORT" where the port belongs.
	ErrPlaceholder = errors.New("dbfallback: database URL holds a template placeholder")
	// ErrUnsupported reports a database dbfallback does not drive (MySQL,
	// MongoDB, Prisma Accelerate, …) or an unknown SQLAlchemy driver suffix.
	ErrUnsupported = errors.New("dbfallback: unsupported database")
	// ErrMalformed reports a value a driver would misread or that cannot
	// name a database.
	ErrMalformed = errors.New("dbfallback: malformed database URL")
)

// Code identifies precisely why [Validate] rejected a value. Codes are
// stable strings, suitable for metrics and tests.
type Code string

// Codes, grouped by the sentinel they match.
const (
	CodeEmpty Code = "empty" // ErrEmpty

	CodePlaceholder Code = "placeholder" // ErrPlaceholder

	CodeUnsupportedScheme Code = "unsupported_scheme" // ErrUnsupported
	CodeUnsupportedDriver Code = "unsupported_driver" // ErrUnsupported

	CodeTooLong              Code = "too_long"                 // ErrMalformed
	CodeControlChar          Code = "control_character"        // ErrMalformed
	CodeNUL                  Code = "nul_byte"                 // ErrMalformed
	CodeSpace                Code = "raw_space"                // ErrMalformed
	CodeUnbalancedQuote      Code = "unbalanced_quote"         // ErrMalformed
	CodePastedAssignment     Code = "pasted_assignment"        // ErrMalformed
	CodeMissingScheme        Code = "missing_scheme"           // ErrMalformed
	CodeMissingTarget        Code = "missing_target"           // ErrMalformed
	CodeBadEscape            Code = "bad_escape"               // ErrMalformed
	CodeBadHost              Code = "bad_host"                 // ErrMalformed
	CodeUnbracketedIPv6      Code = "unbracketed_ipv6"         // ErrMalformed
	CodeBadPort              Code = "bad_port"                 // ErrMalformed
	CodePortRange            Code = "port_out_of_range"        // ErrMalformed
	CodePortCount            Code = "port_count"               // ErrMalformed
	CodeAmbiguous            Code = "ambiguous_userinfo"       // ErrMalformed
	CodeBadDatabase          Code = "bad_database"             // ErrMalformed
	CodeBadQuery             Code = "bad_query"                // ErrMalformed
	CodeBadSSLMode           Code = "bad_sslmode"              // ErrMalformed
	CodeBadTargetSessionAttr Code = "bad_target_session_attrs" // ErrMalformed
	CodeBadConnectTimeout    Code = "bad_connect_timeout"      // ErrMalformed
	CodeBadParam             Code = "bad_parameter"            // ErrMalformed
	CodeUnknownKeyword       Code = "unknown_keyword"          // ErrMalformed
	CodeKeywordSyntax        Code = "keyword_syntax"           // ErrMalformed
	CodeBadPath              Code = "bad_path"                 // ErrMalformed
	CodeBadJSON              Code = "bad_json"                 // ErrMalformed
)

// Sentinel returns the sentinel error c matches: ErrEmpty, ErrPlaceholder,
// ErrUnsupported or ErrMalformed.
func (c Code) Sentinel() error {
	switch c {
	case CodeEmpty:
		return ErrEmpty
	case CodePlaceholder:
		return ErrPlaceholder
	case CodeUnsupportedScheme, CodeUnsupportedDriver:
		return ErrUnsupported
	}
	return ErrMalformed
}

// ValidationError explains why [Validate] rejected a value.
//
// None of its fields, and not its Error text, contains the password or any
// fragment of it: Input is redacted, Reason and Hint never quote the input.
type ValidationError struct {
	// Code says precisely what is wrong.
	Code Code
	// Input is the offending value, redacted and shortened for display.
	Input string
	// Reason is one sentence on what is wrong.
	Reason string
	// Hint tells a person what to change.
	Hint string
}

// Error returns `dbfallback: validate "<input>": <reason> (hint: <hint>)`,
// with the redacted input quoted; the input part is left out when Input is
// empty and the hint part when Hint is.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("dbfallback: validate")
	if e.Input != "" {
		b.WriteString(" ")
		b.WriteString(quoteForMessage(e.Input))
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrMalformed) and the other sentinels work.
func (e *ValidationError) Is(target error) bool { return target == e.Code.Sentinel() }

// quoteForMessage quotes s like %q but keeps printable non-ASCII as is.
func quoteForMessage(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteString("\\x")
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
