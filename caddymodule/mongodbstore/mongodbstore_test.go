package mongodbstore

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/internal/wiretest"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/storetest"
)

// TestMain routes the package's tests through mongotest so the MongoDB
// tests share one server (FerretDB unless MONGODB_URI is set), started
// only if a test asks for it.
func TestMain(m *testing.M) {
	// The pool tests check the pool right after Cleanup.
	unloadDrain = -1
	mongotest.Main(m)
}

func TestMongoDBStoreCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`mongodb {
		uri             {env.MONGODB_URI}
		database        app
		collection      web_sessions
		timeout         1500ms
		connect_timeout 12s
		write_concern   1
		sweep_interval  30s
	}`)
	var m MongoDBStore
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := MongoDBStore{
		URI:            "{env.MONGODB_URI}",
		Database:       "app",
		Collection:     "web_sessions",
		Timeout:        caddy.Duration(1500 * time.Millisecond),
		ConnectTimeout: caddy.Duration(12 * time.Second),
		WriteConcern:   "1",
		SweepInterval:  caddy.Duration(30 * time.Second),
	}
	if !reflect.DeepEqual(m, want) {
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
		{"mongodb a b", "argument"},
	} {
		var m MongoDBStore
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.input, err, tc.wantErr)
		}
	}
}

// TestMongoDBStoreSealingOptions: encryption_key takes the sealing key
// and older ones, subject_key one key, require_sealed no argument; keys
// of the wrong length or encoding are config errors, in Validate for a
// literal key and in Provision for a placeholder, before any client is
// made, and no error quotes a key.
func TestMongoDBStoreSealingOptions(t *testing.T) {
	k1, k2, sk := strings.Repeat("ab", 32), "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", strings.Repeat("cd", 32)
	var m MongoDBStore
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mongodb db {\n encryption_key " + k1 + " " + k2 +
		"\n subject_key " + sk + "\n require_sealed\n}")); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.EncryptionKey, []string{k1, k2}) || m.SubjectKey != sk || !m.RequireSealed {
		t.Fatalf("parsed %+v", m)
	}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "given twice") {
		// k2 is k1 in base64: the same key twice.
		t.Fatalf("the same key twice: %v", err)
	}
	for _, in := range []string{"encryption_key", "subject_key", "subject_key a b", "require_sealed yes"} {
		var m MongoDBStore
		if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mongodb db {\n " + in + "\n}")); err == nil {
			t.Errorf("%q parsed", in)
		}
	}

	t.Setenv("CADDY_SESSION_TEST_SHORT_KEY", k1[:60])
	timeout := caddy.Duration(3456 * time.Millisecond)
	for _, tc := range []struct {
		m    MongoDBStore
		want string
	}{
		{MongoDBStore{EncryptionKey: []string{k1[:60]}, SubjectKey: sk}, "30 bytes"},
		{MongoDBStore{EncryptionKey: []string{"not base64 at all!"}, SubjectKey: sk}, "neither"},
		{MongoDBStore{EncryptionKey: []string{"{env.CADDY_SESSION_TEST_SHORT_KEY}"}, SubjectKey: sk}, "encryption_key"},
		{MongoDBStore{EncryptionKey: []string{k1}}, "needs subject_key"},
		{MongoDBStore{SubjectKey: sk}, "without encryption_key"},
		{MongoDBStore{RequireSealed: true}, "require_sealed"},
		{MongoDBStore{EncryptionKey: []string{k1}, SubjectKey: k1}, "differ"},
	} {
		tc.m.URI, tc.m.Timeout = "mongodb://127.0.0.1:1/", timeout
		err := provisionErr(&tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error mentioning %q", tc.m, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), k1[:16]) || strings.Contains(err.Error(), sk[:16])) {
			t.Errorf("the error quotes a key: %v", err)
		}
		if n, _ := mongoClients.References(mongoClientKey(tc.m.URI, time.Duration(timeout))); n != 0 {
			t.Errorf("%+v: a client was made before the keys were checked", tc.m)
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

// TestMongoDBStoreConformance runs the suite on modules sharing one pooled
// client, each subtest on a database of its own (FerretDB scans a whole
// collection for a compare-and-set write, see mongostore's tests).
func TestMongoDBStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		uri, db := mongotest.Database(t)
		return provisionMongo(t, &MongoDBStore{URI: uri, Database: db})
	})
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
	// So is a different connect_timeout (caddyfile.md: the pool key is
	// the URI, timeout and connect_timeout).
	otherConnect := provisionMongo(t, &MongoDBStore{URI: uri, Database: db, Timeout: timeout, ConnectTimeout: caddy.Duration(11 * time.Second)})
	if otherConnect.client == oldCfg.client {
		t.Fatal("stores with different connect timeouts share a client")
	}
	if err := otherConnect.Cleanup(); err != nil {
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

// provisionErr provisions m as Caddy would (Provision, then Validate) and
// cleans it up, returning the first error.
func provisionErr(m *MongoDBStore) error {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := m.Provision(ctx)
	if err == nil {
		err = m.Validate()
	}
	m.Cleanup()
	return err
}

// TestMongoDBStoreSameErrors: a bad setting gives the same error whether
// the config is JSON or a Caddyfile: the parser only assigns, the checks
// live in Validate and mongostore.Options.Validate.
func TestMongoDBStoreSameErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, json, caddyfile, want string
	}{
		{"no uri", `{}`, "mongodb", "uri is required"},
		{"database", `{"uri":"mongodb://127.0.0.1:1/","database":"a.b"}`, "mongodb mongodb://127.0.0.1:1/ {\n database a.b\n}", "invalid database name"},
		{"collection", `{"uri":"mongodb://127.0.0.1:1/","collection":"system.x"}`, "mongodb mongodb://127.0.0.1:1/ {\n collection system.x\n}", "invalid collection name"},
		{"write concern", `{"uri":"mongodb://127.0.0.1:1/","write_concern":"0"}`, "mongodb mongodb://127.0.0.1:1/ {\n write_concern 0\n}", "write concern"},
		{"negative timeout", `{"uri":"mongodb://127.0.0.1:1/","timeout":"-1s"}`, "mongodb mongodb://127.0.0.1:1/ {\n timeout -1s\n}", "timeout must not be negative"},
		{"negative sweep interval", `{"uri":"mongodb://127.0.0.1:1/","sweep_interval":"-1m"}`, "mongodb mongodb://127.0.0.1:1/ {\n sweep_interval -1m\n}", "sweep interval must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fromJSON, fromCaddyfile MongoDBStore
			if err := json.Unmarshal([]byte(tc.json), &fromJSON); err != nil {
				t.Fatal(err)
			}
			if err := fromCaddyfile.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.caddyfile)); err != nil {
				t.Fatalf("UnmarshalCaddyfile refused what it should only assign: %v", err)
			}
			errJSON, errCaddyfile := provisionErr(&fromJSON), provisionErr(&fromCaddyfile)
			if errJSON == nil || !strings.Contains(errJSON.Error(), tc.want) {
				t.Fatalf("JSON config: %v, want an error about %q", errJSON, tc.want)
			}
			if errCaddyfile == nil || errCaddyfile.Error() != errJSON.Error() {
				t.Fatalf("Caddyfile config: %v; JSON config: %v; want the same error", errCaddyfile, errJSON)
			}
		})
	}
	if err := (&MongoDBStore{ConnectTimeout: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "connect_timeout") {
		t.Fatalf("negative connect_timeout: %v", err)
	}
}

// TestMongoDBStoreAfterCleanup: a request of an old config that outlives
// a reload gets store.ErrUnavailable (503) from every method, never a nil
// dereference.
func TestMongoDBStoreAfterCleanup(t *testing.T) {
	t.Parallel()
	srv := wiretest.New(t)
	m := provisionMongo(t, &MongoDBStore{URI: srv.URI()})
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	ctx, now := t.Context(), time.Now()
	var si store.SubjectIndex = m
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Find", func() error { _, err := m.Find(ctx, "k", now); return err }},
		{"Create", func() error { return m.Create(ctx, "k", &store.Record{}) }},
		{"Update", func() error { return m.Update(ctx, "k", &store.Record{}, now) }},
		{"Touch", func() error { return m.Touch(ctx, "k", now, now) }},
		{"Rotate", func() error { return m.Rotate(ctx, "k", 1, "abcdefabcdef", now, now) }},
		{"Delete", func() error { return m.Delete(ctx, "k") }},
		{"FindBySubject", func() error { _, err := si.FindBySubject(ctx, "s", now); return err }},
		{"DeleteBySubject", func() error { _, err := si.DeleteBySubject(ctx, "s", ""); return err }},
		{"DeleteByHandle", func() error { _, err := si.DeleteByHandle(ctx, "0123456789ab"); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("after Cleanup: %v, want ErrUnavailable", err)
			}
		})
	}
	if n := len(srv.CommandsNamed("find")) + len(srv.CommandsNamed("insert")); n != 0 {
		t.Fatalf("%d commands reached the server after Cleanup", n)
	}
}

// TestMongoDBStoreCleanupWaitsForCalls: Cleanup lets a call in flight
// finish on the client before it releases the client (here the last
// reference, so the client is disconnected after the call ended).
func TestMongoDBStoreCleanupWaitsForCalls(t *testing.T) {
	t.Parallel()
	srv := wiretest.New(t)
	srv.Handle("find", func(wiretest.Command) wiretest.Reply { return wiretest.Reply{Stall: true} })
	m := provisionMongo(t, &MongoDBStore{URI: srv.URI(), Timeout: caddy.Duration(300 * time.Millisecond)})
	client := m.client

	done := make(chan error, 1)
	go func() {
		_, err := m.Find(context.Background(), "k", time.Now())
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); len(srv.CommandsNamed("find")) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the find never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, mongo.ErrClientDisconnected) {
			t.Fatalf("the call in flight ended with %v, want its own timeout (ErrUnavailable), not a disconnect", err)
		}
	default:
		t.Fatal("Cleanup returned while a call was still in flight")
	}
	if err := client.Ping(t.Context(), nil); !errors.Is(err, mongo.ErrClientDisconnected) {
		t.Fatalf("Ping after the last Cleanup: %v, want ErrClientDisconnected", err)
	}
}
