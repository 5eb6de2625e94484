package mongostore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/sessiongate/caddy-session/store"
)

// unavailableCodes are server error codes that mean "no usable primary
// right now" (shutdown, election, network trouble seen by the server)
// rather than anything wrong with the request.
var unavailableCodes = []int{
	6,     // HostUnreachable
	7,     // HostNotFound
	64,    // WriteConcernFailed (wtimeout)
	89,    // NetworkTimeout
	91,    // ShutdownInProgress
	189,   // PrimarySteppedDown
	262,   // ExceededTimeLimit
	9001,  // SocketException
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11602, // InterruptedDueToReplStateChange
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
}

// isUnavailable reports whether err means the server could not be reached
// or did not answer in time, as opposed to refusing the request.
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || mongo.IsTimeout(err) || mongo.IsNetworkError(err) ||
		errors.Is(err, mongo.ErrClientDisconnected) {
		return true
	}
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) {
		return true
	}
	var ce topology.ConnectionError
	if errors.As(err, &ce) {
		return true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, c := range unavailableCodes {
			if se.HasErrorCode(c) {
				return true
			}
		}
		// The driver already retried a retryable write once; if it still
		// carries the label, the replica set has no primary for now.
		if se.HasErrorLabel("RetryableWriteError") {
			return true
		}
	}
	return false
}

// redactor scrubs a MongoDB URI and its credentials out of error text.
// The driver does not put the URI in its errors today, but a connection
// string may hold a password and a single careless error message would
// leak it into logs, so everything the store returns or logs goes
// through here.
type redactor struct {
	secrets []string
}

func newRedactor(uri string) redactor {
	if uri == "" {
		return redactor{}
	}
	secrets := []string{uri}
	rest := uri
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		secrets = append(secrets, userinfo)
		if c := strings.Index(userinfo, ":"); c >= 0 {
			pw := userinfo[c+1:]
			secrets = append(secrets, pw)
			if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
				secrets = append(secrets, dec)
			}
		}
	}
	var keep []string
	for _, s := range secrets {
		if s != "" {
			keep = append(keep, s)
		}
	}
	return redactor{secrets: keep}
}

// redactedError carries err for errors.Is/As but prints a scrubbed text.
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (r redactor) wrap(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range r.secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	return &redactedError{err: err, msg: msg}
}

// opError turns a driver error from operation op into the store's error:
// it wraps store.ErrUnavailable when the server could not be reached, and
// its text never contains the URI.
func (s *Store) opError(op string, err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("mongostore: %s: %w: %w", op, store.ErrUnavailable, s.redact.wrap(err))
	}
	return fmt.Errorf("mongostore: %s: %w", op, s.redact.wrap(err))
}
