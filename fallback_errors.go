package dbfallback

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoDatabase is returned by [Open] when no candidate answered; it wraps
// the cause of every failed candidate.
var ErrNoDatabase = errors.New("dbfallback: no database available")

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// PostgreSQL SQLSTATEs that mean the configuration is wrong, not the
// server busy: bad password or authorization, unknown database or role,
// insufficient privilege, invalid parameter, protocol mismatch.
var permanentSQLStates = map[string]bool{
	"28P01": true, // invalid_password
	"28000": true, // invalid_authorization_specification (no pg_hba entry, unknown role)
	"3D000": true, // invalid_catalog_name: database does not exist
	"42704": true, // undefined_object (role does not exist, on some servers)
	"42501": true, // insufficient_privilege
	"22023": true, // invalid_parameter_value
	"42601": true, // syntax_error in options
	"0A000": true, // feature_not_supported (e.g. protocol version)
	"08P01": true, // protocol_violation, when PostgreSQL sends it (see protocolViolationPermanent)
}

// IsPermanent reports whether err says that connecting again cannot help:
// a bad password, an unknown database or role, a missing privilege, a
// certificate that does not verify, or a configuration pgx rejects. Refused
// and reset connections, timeouts, DNS failures and "the database system
// is starting up" (SQLSTATE 57P03) are transient. SQLSTATE 08P01 is
// permanent from PostgreSQL (a protocol violation) and from a pooler's
// configuration errors (PgBouncer's "no such database", "unsupported
// startup parameter"), and transient from a pooler otherwise: PgBouncer
// reports a database server that is down or busy with it
// ("client_login_timeout (server down)"). WithPrimaryWait retries only
// transient failures.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return true
	}
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if pg.Code == "08P01" {
			return protocolViolationPermanent(pg)
		}
		return permanentSQLStates[pg.Code]
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return true
	}
	return false
}

// describeFailure turns a driver error into the redacted error an Attempt
// keeps, adding what an operator needs: whether it is permanent, and on a
// Hugging Face Space, that most outbound ports are blocked.
func describeFailure(r Resolution, t Target, err error) error {
	msg := scrubSecrets(err.Error(), secretsOf(t)...)
	if t.Dialect == Postgres && poolerTarget(t) && isTimeout(err) {
		msg += " (" + poolerWaitHint + ")"
	}
	if t.Dialect == Postgres && strings.Contains(err.Error(), readOnlyTargetMessage) {
		msg += " (" + readOnlyTargetHint + ")"
	}
	if r.InSpace() && t.Dialect == Postgres && isTimeout(err) {
		for _, h := range t.Hosts {
			if !h.IsSocket() && h.Port != 80 && h.Port != 443 && h.Port != 8080 {
				msg += fmt.Sprintf(" (this is Hugging Face Space %s: outbound connections are allowed only to ports 80, 443 and 8080, so port %d is blocked)", r.SpaceID, h.Port)
				break
			}
		}
	}
	return &attemptError{msg: msg, err: err}
}

// attemptError is a redacted failure; Unwrap gives the driver's error for
// errors.Is and errors.As.
type attemptError struct {
	msg string
	err error
}

func (e *attemptError) Error() string { return e.msg }
func (e *attemptError) Unwrap() error { return e.err }

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// secretsOf lists the secrets of a target, to scrub from driver messages.
func secretsOf(t Target) []string {
	return t.secrets.values()
}

// sameTarget compares two targets, notes aside.
func sameTarget(a, b Target) bool {
	a.Notes, b.Notes = nil, nil
	return reflect.DeepEqual(a, b)
}

// readOnlyTargetMessage is how pgx reports a host that
// target_session_attrs=read-write (or primary) turned down.
const readOnlyTargetMessage = "read only connection"

// readOnlyTargetHint explains readOnlyTargetMessage to an operator.
const readOnlyTargetHint = "no host accepts writes: target_session_attrs asks for a primary and each host answered as a standby or read-only; " +
	"during a failover this lasts until a standby is promoted, otherwise list the primary's host in the URL"
