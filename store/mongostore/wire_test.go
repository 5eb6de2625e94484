package mongostore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/caddy-session/internal/wiretest"
	"github.com/sessiongate/caddy-session/store"
)

// openWire opens a store on a scripted server; the URI asks for
// secondary reads, which the store must ignore.
func openWire(t *testing.T, srv *wiretest.Server, opts Options) *Store {
	t.Helper()
	opts.URI = srv.URI() + "&readPreference=secondaryPreferred"
	opts.Database = "app"
	if opts.OpTimeout == 0 {
		opts.OpTimeout = 500 * time.Millisecond
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	waitReady(t, s)
	return s
}

// TestOutageCodes: each outage a real deployment produces and FerretDB
// cannot (codes 50, 133, 134, 202, 262, 91, 10107, a write-concern
// timeout, a stalled primary, a dropped connection) reaches the gateway as
// store.ErrUnavailable, which it answers with 503 and Retry-After.
func TestOutageCodes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	find := func(s *Store) error { _, err := s.Find(t.Context(), "k", now); return err }
	update := func(s *Store) error {
		return s.Update(t.Context(), "k", &store.Record{Data: raw(`{"a":1}`), Expires: now.Add(time.Hour), Version: 1}, now)
	}
	create := func(s *Store) error { return s.Create(t.Context(), "k", &store.Record{Expires: now.Add(time.Hour)}) }
	touch := func(s *Store) error { return s.Touch(t.Context(), "k", now.Add(time.Hour), now) }
	del := func(s *Store) error { return s.Delete(t.Context(), "k") }
	for _, tc := range []struct {
		name   string
		mongos bool
		cmd    string
		reply  wiretest.Reply
		call   func(*Store) error
	}{
		{"MaxTimeMSExpired 50", false, "find", wiretest.Error(50, "MaxTimeMSExpired"), find},
		{"FailedToSatisfyReadPreference 133 from mongos", true, "find", wiretest.Error(133, "FailedToSatisfyReadPreference"), find},
		{"NetworkInterfaceExceededTimeLimit 202 from mongos", true, "update", wiretest.Error(202, "NetworkInterfaceExceededTimeLimit"), update},
		{"ReadConcernMajorityNotAvailableYet 134", false, "find", wiretest.Error(134, "ReadConcernMajorityNotAvailableYet"), find},
		{"ExceededTimeLimit 262", false, "update", wiretest.Error(262, "ExceededTimeLimit"), touch},
		{"ShutdownInProgress 91", false, "insert", wiretest.Error(91, "ShutdownInProgress"), create},
		{"NotWritablePrimary 10107", false, "delete", wiretest.Error(10107, "NotWritablePrimary", "RetryableWriteError"), del},
		{"write concern timeout 64", false, "update", wiretest.WriteConcernError(1, 64, "WriteConcernFailed"), update},
		{"stalled primary", false, "find", wiretest.Reply{Stall: true}, find},
		{"dropped connection", false, "update", wiretest.Reply{Close: true}, update},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := wiretest.New(t)
			if tc.mongos {
				srv.HelloFields(bson.E{Key: "msg", Value: "isdbgrid"})
			}
			srv.Handle(tc.cmd, func(wiretest.Command) wiretest.Reply { return tc.reply })
			s := openWire(t, srv, Options{})
			err := tc.call(s)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if len(srv.CommandsNamed(tc.cmd)) == 0 {
				t.Fatalf("no %s reached the server", tc.cmd)
			}
		})
	}
}

// TestReadsFromPrimary: with readPreference=secondaryPreferred in the URI,
// a mongos is still asked to read from the primary.
func TestReadsFromPrimary(t *testing.T) {
	t.Parallel()
	srv := wiretest.New(t)
	srv.HelloFields(bson.E{Key: "msg", Value: "isdbgrid"})
	srv.Handle("find", func(wiretest.Command) wiretest.Reply {
		return wiretest.OK(bson.E{Key: "cursor", Value: bson.D{
			{Key: "id", Value: int64(0)}, {Key: "ns", Value: "app.sessions"}, {Key: "firstBatch", Value: bson.A{}},
		}})
	})
	s := openWire(t, srv, Options{})
	if _, err := s.Find(t.Context(), "k", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find: %v, want ErrNotFound", err)
	}
	finds := srv.CommandsNamed("find")
	if len(finds) != 1 {
		t.Fatalf("%d finds", len(finds))
	}
	if mode, err := finds[0].Body.LookupErr("$readPreference", "mode"); err == nil && mode.StringValue() != "primary" {
		t.Fatalf("find sent with read preference %s, want primary", mode)
	}
	if lvl, err := finds[0].Body.LookupErr("readConcern", "level"); err != nil || lvl.StringValue() != "local" {
		t.Fatalf("find sent with read concern %v (%v), want local", lvl, err)
	}
}

// TestWriteConcernChecked: a write concern the server cannot meet is found
// at start-up from hello, logged once naming the option, and every write
// then answers ErrUnavailable (503) without reaching the server, instead
// of failing with a 500 each time. Reads still work.
func TestWriteConcernChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		w       string
		hello   []bson.E
		refused bool
	}{
		{"w 2 on a standalone", "2", nil, true},
		{"tag on a standalone", "dc-east", nil, true},
		{"majority on a standalone", "majority", nil, false},
		{"w 1 on a standalone", "1", nil, false},
		{"w 3 on a two-member set", "3", []bson.E{{Key: "setName", Value: "rs0"}, {Key: "hosts", Value: bson.A{"a:1", "b:1"}}}, true},
		{"w 2 on a two-member set", "2", []bson.E{{Key: "setName", Value: "rs0"}, {Key: "hosts", Value: bson.A{"a:1", "b:1"}}}, false},
		{"w 2 through mongos", "2", []bson.E{{Key: "msg", Value: "isdbgrid"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := wiretest.New(t)
			srv.HelloFields(tc.hello...)
			srv.Handle("insert", func(wiretest.Command) wiretest.Reply { return wiretest.OK(bson.E{Key: "n", Value: int32(1)}) })
			core, logs := observer.New(zap.DebugLevel)
			s := openWire(t, srv, Options{WriteConcern: tc.w, Logger: zap.New(core)})
			err := s.Create(t.Context(), "k", &store.Record{Expires: time.Now().Add(time.Hour)})
			inserts := len(srv.CommandsNamed("insert"))
			if !tc.refused {
				if err != nil || inserts != 1 {
					t.Fatalf("Create: %v, %d inserts; want it sent and accepted", err, inserts)
				}
				return
			}
			if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "write_concern") {
				t.Fatalf("Create: %v, want ErrUnavailable naming write_concern", err)
			}
			if inserts != 0 {
				t.Fatal("the write was sent anyway")
			}
			errs := logs.FilterLevelExact(zap.ErrorLevel).FilterField(zap.String("option", "write_concern"))
			if errs.Len() != 1 {
				t.Fatalf("want one error log naming the option; logs: %v", logs.All())
			}
		})
	}
}

// TestIndexBuildOutlivesOpTimeout: an index build that takes longer than
// the per-call timeout (a populated collection) is waited for, not
// interrupted and retried for ever; expired documents are swept while it
// runs; the TTL state is reached once and logged once.
func TestIndexBuildOutlivesOpTimeout(t *testing.T) {
	t.Parallel()
	const opTimeout = 200 * time.Millisecond
	srv := wiretest.New(t)
	swept := make(chan struct{})
	var once sync.Once
	srv.Handle("delete", func(c wiretest.Command) wiretest.Reply {
		if _, err := c.Documents["deletes"][0].LookupErr("q", "expires", "$lte"); err == nil {
			once.Do(func() { close(swept) })
		}
		return wiretest.OK(bson.E{Key: "n", Value: int32(0)})
	})
	srv.Handle("createIndexes", func(wiretest.Command) wiretest.Reply {
		<-swept                   // the store sweeps while no TTL index exists
		time.Sleep(3 * opTimeout) // and the build takes longer than a request may
		return wiretest.OK()
	})
	core, logs := observer.New(zap.DebugLevel)
	s := openWire(t, srv, Options{OpTimeout: opTimeout, SweepInterval: 20 * time.Millisecond, Logger: zap.New(core)})
	if e := s.Expiry(); e != ExpiryTTLIndex {
		t.Fatalf("expiry %v after the build, want ttl-index", e)
	}
	builds := srv.CommandsNamed("createIndexes")
	if len(builds) != 4 {
		t.Fatalf("%d createIndexes commands, want 4 (expires, sub, sid, isub): an interrupted build was retried", len(builds))
	}
	if _, err := builds[0].Body.LookupErr("indexes", "0", "expireAfterSeconds"); err != nil {
		t.Fatalf("first build is not the TTL index: %s", builds[0].Body)
	}
	if n := logs.FilterMessageSnippet("TTL index").Len(); n != 1 {
		t.Fatalf("TTL state logged %d times, want once", n)
	}
	// No sweep once the TTL index exists.
	before := len(srv.CommandsNamed("delete"))
	s.sweepOnceIfNeeded()
	if after := len(srv.CommandsNamed("delete")); after != before {
		t.Fatal("swept although the TTL index exists")
	}
}
