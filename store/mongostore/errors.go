package mongostore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/sessiongate/caddy-session/store"
)

// unavailableCodes are the server error codes that mean "no usable
// primary, or no answer in time, right now" rather than anything wrong
// with the request: the codes MongoDB's retryable-writes and
// retryable-reads specifications list, plus the time limits and the mongos
// routing failures of an election or a network split.
var unavailableCodes = map[int]string{
	6:     "HostUnreachable",
	7:     "HostNotFound",
	50:    "MaxTimeMSExpired",
	64:    "WriteConcernFailed", // wtimeout: the outcome is unknown
	89:    "NetworkTimeout",
	91:    "ShutdownInProgress",
	133:   "FailedToSatisfyReadPreference", // mongos: no eligible member
	134:   "ReadConcernMajorityNotAvailableYet",
	189:   "PrimarySteppedDown",
	202:   "NetworkInterfaceExceededTimeLimit", // mongos to shard
	262:   "ExceededTimeLimit",
	9001:  "SocketException",
	10058: "LegacyNotPrimary",
	10107: "NotWritablePrimary",
	11600: "InterruptedAtShutdown",
	11602: "InterruptedDueToReplStateChange",
	13435: "NotPrimaryNoSecondaryOk",
	13436: "NotPrimaryOrSecondary",
}

// unavailableLabels are the error labels that mean the same: the server
// or the driver says trying again later may work.
var unavailableLabels = []string{
	"NetworkError",
	"RetryableWriteError",
	"ResetPool",
	driver.ErrSystemOverloadedError,
	driver.ErrRetryableError,
	"NetworkTimeoutError",
	"ExceededTimeLimitError",
}

// unavailableErrors are driver sentinel errors of a client, pool or
// server that is closing or closed: an outage from the request's point of
// view (a reload's disconnect, a server removed from the topology).
var unavailableErrors = []error{
	context.DeadlineExceeded,
	driver.ErrDeadlineWouldBeExceeded,
	mongo.ErrClientDisconnected,
	topology.ErrPoolClosed,
	topology.ErrServerClosed,
	topology.ErrTopologyClosed,
	topology.ErrConnectionClosed,
}

// isUnavailable reports whether err means the server could not be reached
// or did not answer in time, as opposed to refusing the request. The
// classification follows MongoDB's documented error labels and codes, so
// every outage answers 503 with Retry-After rather than 500.
//
// Writes are retried by the driver (retryable writes) until the call's
// deadline while the error is retryable; an error that still carries
// RetryableWriteError here means the deadline ran out first.
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range unavailableErrors {
		if errors.Is(err, target) {
			return true
		}
	}
	if mongo.IsTimeout(err) || mongo.IsNetworkError(err) {
		return true
	}
	var (
		sse topology.ServerSelectionError
		ce  topology.ConnectionError
		wqe topology.WaitQueueTimeoutError
		rpe driver.RetryablePoolError // a cleared or paused pool
	)
	if errors.As(err, &sse) || errors.As(err, &ce) || errors.As(err, &wqe) ||
		errors.As(err, &rpe) && rpe.Retryable() {
		return true
	}
	var le mongo.LabeledError
	if errors.As(err, &le) {
		for _, l := range unavailableLabels {
			if le.HasErrorLabel(l) {
				return true
			}
		}
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, c := range se.ErrorCodes() {
			if _, ok := unavailableCodes[c]; ok {
				return true
			}
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
