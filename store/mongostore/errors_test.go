package mongostore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/sessiongate/caddy-session/store"
)

// TestIsUnavailable classifies real driver error values: every outage as
// MongoDB documents it (codes, labels, the driver's topology and pool
// errors) is unavailable (503); a refused request is not (500).
func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	cmd := func(code int32, name string, labels ...string) error {
		return mongo.CommandError{Code: code, Name: name, Message: "m", Labels: labels}
	}
	wce := func(code int) error {
		return mongo.WriteException{WriteConcernError: &mongo.WriteConcernError{Code: code, Message: "m"}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"MaxTimeMSExpired 50", cmd(50, "MaxTimeMSExpired"), true},
		{"NetworkTimeout 89", cmd(89, "NetworkTimeout"), true},
		{"ShutdownInProgress 91", cmd(91, "ShutdownInProgress"), true},
		{"FailedToSatisfyReadPreference 133", cmd(133, "FailedToSatisfyReadPreference"), true},
		{"ReadConcernMajorityNotAvailableYet 134", cmd(134, "ReadConcernMajorityNotAvailableYet"), true},
		{"PrimarySteppedDown 189", cmd(189, "PrimarySteppedDown"), true},
		{"NetworkInterfaceExceededTimeLimit 202", cmd(202, "NetworkInterfaceExceededTimeLimit"), true},
		{"ExceededTimeLimit 262", cmd(262, "ExceededTimeLimit"), true},
		{"NotWritablePrimary 10107", cmd(10107, "NotWritablePrimary"), true},
		{"InterruptedAtShutdown 11600", cmd(11600, "InterruptedAtShutdown"), true},
		{"InterruptedDueToReplStateChange 11602", cmd(11602, "InterruptedDueToReplStateChange"), true},
		{"NotPrimaryNoSecondaryOk 13435", cmd(13435, "NotPrimaryNoSecondaryOk"), true},
		{"NotPrimaryOrSecondary 13436", cmd(13436, "NotPrimaryOrSecondary"), true},
		{"HostUnreachable 6", cmd(6, "HostUnreachable"), true},
		{"label RetryableWriteError", cmd(1, "", "RetryableWriteError"), true},
		{"label NetworkError", cmd(0, "", "NetworkError"), true},
		{"label SystemOverloadedError", cmd(462, "", driver.ErrSystemOverloadedError), true},
		{"write concern timeout 64", wce(64), true},
		{"write concern MaxTimeMSExpired", wce(50), true},
		{"write exception labelled retryable", mongo.WriteException{Labels: []string{"RetryableWriteError"}}, true},
		{"server selection", topology.ServerSelectionError{Wrapped: errors.New("no primary")}, true},
		{"connection closed", topology.ConnectionError{ConnectionID: "c1", Wrapped: io.EOF}, true},
		{"closed connection", topology.ErrConnectionClosed, true},
		{"wait queue timeout", topology.WaitQueueTimeoutError{Wrapped: context.DeadlineExceeded}, true},
		{"pool closed", topology.ErrPoolClosed, true},
		{"server closed", topology.ErrServerClosed, true},
		{"topology closed", topology.ErrTopologyClosed, true},
		{"client disconnected", mongo.ErrClientDisconnected, true},
		{"deadline", context.DeadlineExceeded, true},
		{"deadline would be exceeded", driver.ErrDeadlineWouldBeExceeded, true},
		{"wrapped", fmt.Errorf("op: %w", cmd(189, "PrimarySteppedDown")), true},

		{"nil", nil, false},
		{"duplicate key", mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 11000, Message: "dup"}}}, false},
		{"BadValue 2", cmd(2, "BadValue"), false},
		{"Unauthorized 13", cmd(13, "Unauthorized"), false},
		{"NotImplemented 238", cmd(238, "NotImplemented"), false},
		{"write concern unsatisfiable 100", wce(100), false},
		{"no documents", mongo.ErrNoDocuments, false},
		{"canceled by the client", context.Canceled, false},
		{"plain", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isUnavailable(tc.err); got != tc.want {
				t.Fatalf("isUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
			if tc.err == nil {
				return
			}
			err := (&Store{}).opError("find", tc.err)
			if errors.Is(err, store.ErrUnavailable) != tc.want {
				t.Fatalf("opError: %v, ErrUnavailable %v, want %v", err, !tc.want, tc.want)
			}
			if !errors.Is(err, tc.err) && !strings.Contains(err.Error(), tc.err.Error()) {
				t.Fatalf("opError lost the cause: %v", err)
			}
		})
	}
}
