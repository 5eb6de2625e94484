package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/storetest"
)

// TestMain routes the package's tests through mongotest so the MongoDB
// tests share one server (FerretDB unless MONGODB_URI is set), started
// only if a test asks for it.
//
// With CADDY_SESSION_TEST_CADDY=1 the binary is a second Caddy process
// for TestMongoGatewayTwoProcesses instead (see mongo_gateway_test.go).
func TestMain(m *testing.M) {
	maybeRunTestCaddy()
	mongotest.Main(m)
}

func TestMongoDBStoreCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`mongodb {
		uri            {env.MONGODB_URI}
		database       app
		collection     web_sessions
		timeout        1500ms
		write_concern  1
		sweep_interval 30s
	}`)
	var m MongoDBStore
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := MongoDBStore{
		URI:           "{env.MONGODB_URI}",
		Database:      "app",
		Collection:    "web_sessions",
		Timeout:       caddy.Duration(1500 * time.Millisecond),
		WriteConcern:  "1",
		SweepInterval: caddy.Duration(30 * time.Second),
	}
	if m != want {
		t.Fatalf("parsed %+v, want %+v", m, want)
	}

	// The session handler hands the store's tokens over with
	// UnmarshalModule, starting at the module name.
	d = caddyfile.NewTestDispenser(`store mongodb mongodb://db.example:27017`)
	d.Next() // "store"
	d.Next() // "mongodb"
	mod, err := caddyfile.UnmarshalModule(d, "http.session.stores.mongodb")
	if err != nil {
		t.Fatal(err)
	}
	if got := mod.(*MongoDBStore).URI; got != "mongodb://db.example:27017" {
		t.Fatalf("inline uri = %q", got)
	}

	for _, tc := range []struct{ input, wantErr string }{
		{"mongodb {\n uri a\n colour blue\n}", "colour"},
		{"mongodb {\n uri\n}", "argument"},
		{"mongodb {\n uri a b\n}", "argument"},
		{"mongodb {\n uri a\n timeout soon\n}", "timeout"},
		{"mongodb {\n uri a\n timeout -1s\n}", "timeout"},
		{"mongodb {\n uri a\n sweep_interval 0s\n}", "sweep_interval"},
		{"mongodb {\n database x\n}", "uri"},
		{"mongodb a b", "argument"},
	} {
		var m MongoDBStore
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.input, err, tc.wantErr)
		}
	}
}

// provisionMongo provisions a MongoDBStore the way Caddy would, with
// Validate and a Cleanup at the end of the test (a second Cleanup by the
// test itself is harmless).
func provisionMongo(t *testing.T, m *MongoDBStore) *MongoDBStore {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	err := m.Provision(ctx)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		m.Cleanup()
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return m
}

func TestMongoDBStoreConformance(t *testing.T) {
	uri, db := mongotest.Database(t)
	m := provisionMongo(t, &MongoDBStore{URI: uri, Database: db})
	storetest.Run(t, func(*testing.T) store.Store { return m })
}

// TestMongoDBStoreSharedClient: two modules with the same URI (two
// handlers, or the old and new config of a reload) share one client;
// cleaning up one keeps the other working; the last cleanup disconnects.
func TestMongoDBStoreSharedClient(t *testing.T) {
	uri, db := mongotest.Database(t)
	// Through a placeholder, as a Caddyfile would write it.
	t.Setenv("CADDY_SESSION_TEST_MONGODB_URI", uri)
	// A timeout unique to this test keeps its pool entry apart from other
	// tests using the same server.
	timeout := caddy.Duration(2345 * time.Millisecond)
	newModule := func() *MongoDBStore {
		return provisionMongo(t, &MongoDBStore{URI: "{env.CADDY_SESSION_TEST_MONGODB_URI}", Database: db, Timeout: timeout})
	}
	oldCfg := newModule()
	newCfg := newModule()
	if oldCfg.client != newCfg.client {
		t.Fatal("two stores with the same URI got different clients")
	}
	key := mongoClientKey(uri, time.Duration(timeout))
	if n, _ := mongoClients.References(key); n != 2 {
		t.Fatalf("pool references = %d, want 2", n)
	}
	if strings.Contains(key, uri) {
		t.Fatal("pool key holds the URI")
	}

	// A different timeout is a different client setting: its own pool.
	other := provisionMongo(t, &MongoDBStore{URI: uri, Database: db, Timeout: timeout + caddy.Duration(time.Millisecond)})
	if other.client == oldCfg.client {
		t.Fatal("stores with different timeouts share a client")
	}
	if err := other.Cleanup(); err != nil {
		t.Fatal(err)
	}

	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	rec := &store.Record{
		Data:    json.RawMessage(`{"user":"ann"}`),
		Created: now, Updated: now, Expires: now.Add(time.Hour),
	}
	if err := oldCfg.Create(ctx, "k", rec); err != nil {
		t.Fatal(err)
	}

	// The old config goes away (twice, to check a repeated Cleanup does
	// not drop the new config's reference); the new one keeps serving.
	client := oldCfg.client
	if err := oldCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := oldCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, _ := mongoClients.References(key); n != 1 {
		t.Fatalf("pool references after one cleanup = %d, want 1", n)
	}
	got, err := newCfg.Find(ctx, "k", now)
	if err != nil {
		t.Fatalf("Find through the remaining module: %v", err)
	}
	if string(got.Data) != `{"user":"ann"}` {
		t.Fatalf("data = %s", got.Data)
	}
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("shared client unusable after the first cleanup: %v", err)
	}

	// The last user goes: the client is disconnected and the pool empty.
	if err := newCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, ok := mongoClients.References(key); ok || n != 0 {
		t.Fatalf("pool still holds the client (%d references)", n)
	}
	if err := client.Ping(ctx, nil); !errors.Is(err, mongo.ErrClientDisconnected) {
		t.Fatalf("Ping after the last cleanup: %v, want ErrClientDisconnected", err)
	}
}

func TestMongoDBStoreProvisionErrors(t *testing.T) {
	const secret = "pa55w0rd-s3cret"
	t.Setenv("CADDY_SESSION_TEST_EMPTY", "")
	for _, tc := range []struct {
		m       MongoDBStore
		wantErr string
	}{
		{MongoDBStore{}, "uri is required"},
		{MongoDBStore{URI: "{env.CADDY_SESSION_TEST_EMPTY}"}, "environment variable"},
		{MongoDBStore{URI: "mongodb://u:" + secret + "@localhost:notaport/"}, "mongostore"},
		{MongoDBStore{URI: "mongodb://127.0.0.1:1/", WriteConcern: "0"}, "write concern"},
		{MongoDBStore{URI: "mongodb://127.0.0.1:1/", Database: "a.b"}, "database name"},
		{MongoDBStore{URI: "mongodb://127.0.0.1:1/", Collection: "system.x"}, "collection name"},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		m := tc.m
		err := m.Provision(ctx)
		m.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: error %v, want one mentioning %q", tc.m, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the URI's password: %v", err)
		}
	}
	if err := (&MongoDBStore{Timeout: -1}).Validate(); err == nil {
		t.Error("negative timeout validated")
	}
}
