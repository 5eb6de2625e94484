package caddymodule

import (
	"net/http"
	"net/url"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/internal/wiretest"
)

// TestMongoGatewayOutageCodes: through a real Caddy, each outage a real
// deployment produces and FerretDB cannot (scripted on a wire-protocol
// server posing as a mongos) answers 503 with Retry-After, never 500.
func TestMongoGatewayOutageCodes(t *testing.T) {
	srv := wiretest.New(t)
	srv.HelloFields(bson.E{Key: "msg", Value: "isdbgrid"})
	srv.Handle("insert", func(wiretest.Command) wiretest.Reply { return wiretest.OK(bson.E{Key: "n", Value: int32(1)}) })
	g := startGateway(t, globalOptions(t), mongoSessionBody(srv.URI(), "app", "\t\t\ttimeout 500ms\n", ""), upstream(t))
	if r := g.get("/?patch=" + url.QueryEscape(`{"user":"ann"}`)); r.Status != http.StatusOK || g.sessionCookie("session") == "" {
		t.Fatalf("creating the session: status %d, cookie %q", r.Status, g.sessionCookie("session"))
	}
	inserts := srv.CommandsNamed("insert")
	if len(inserts) != 1 || len(inserts[0].Documents["documents"]) != 1 {
		t.Fatalf("inserts %+v", inserts)
	}
	stored := inserts[0].Documents["documents"][0]
	found := func(wiretest.Command) wiretest.Reply {
		return wiretest.OK(bson.E{Key: "cursor", Value: bson.D{
			{Key: "id", Value: int64(0)}, {Key: "ns", Value: "app.sessions"}, {Key: "firstBatch", Value: bson.A{stored}},
		}})
	}
	for _, tc := range []struct {
		name   string
		find   wiretest.Reply // the reply to the find
		update *wiretest.Reply
	}{
		{"MaxTimeMSExpired 50", wiretest.Error(50, "MaxTimeMSExpired"), nil},
		{"FailedToSatisfyReadPreference 133", wiretest.Error(133, "FailedToSatisfyReadPreference"), nil},
		{"ReadConcernMajorityNotAvailableYet 134", wiretest.Error(134, "ReadConcernMajorityNotAvailableYet"), nil},
		{"NetworkInterfaceExceededTimeLimit 202", wiretest.Error(202, "NetworkInterfaceExceededTimeLimit"), nil},
		{"ShutdownInProgress 91", wiretest.Error(91, "ShutdownInProgress"), nil},
		{"stalled primary", wiretest.Reply{Stall: true}, nil},
		{"write concern timeout 64", wiretest.Reply{}, ptr(wiretest.WriteConcernError(1, 64, "WriteConcernFailed"))},
		{"NotWritablePrimary 10107 on the write", wiretest.Reply{}, ptr(wiretest.Error(10107, "NotWritablePrimary", "RetryableWriteError"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/"
			if tc.update != nil {
				srv.Handle("find", found)
				srv.Handle("update", func(wiretest.Command) wiretest.Reply { return *tc.update })
				path = "/?patch=" + url.QueryEscape(`{"user":"bob"}`)
			} else {
				srv.Handle("find", func(wiretest.Command) wiretest.Reply { return tc.find })
			}
			r := g.get(path)
			if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After (%s)", r.Status, r.Header.Get("Retry-After"), r.Body)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
