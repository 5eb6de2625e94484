package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/storetest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// open returns a Store on a database of its own, closed at the end of the
// test. opts.URI and opts.Database are filled in.
func open(t *testing.T, opts Options) *Store {
	t.Helper()
	uri, db := mongotest.Database(t)
	opts.URI = uri
	opts.Database = db
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// waitReady waits until the background TTL index work has settled, so it
// cannot add commands to a count.
func waitReady(t *testing.T, s *Store) {
	t.Helper()
	select {
	case <-s.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("TTL index / sweeper setup did not finish within 30s")
	}
}

func TestConformance(t *testing.T) {
	s := open(t, Options{})
	storetest.Run(t, func(*testing.T) store.Store { return s })
}

// TestConformanceOwnStores gives every subtest a store (and client) of its
// own, the way separate Caddy instances would be.
func TestConformanceOwnStores(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, Options{}) })
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func rawDoc(t *testing.T, s *Store, key string) bson.Raw {
	t.Helper()
	d, err := s.Collection().FindOne(t.Context(), bson.D{{Key: "_id", Value: key}}).Raw()
	if err != nil {
		t.Fatalf("reading document %s: %v", key, err)
	}
	return d
}

func wantType(t *testing.T, doc bson.Raw, path string, want bson.Type) bson.RawValue {
	t.Helper()
	v, err := doc.LookupErr(strings.Split(path, "/")...)
	if err != nil {
		t.Fatalf("field %s: %v (document %s)", path, err, doc)
	}
	if v.Type != want {
		t.Fatalf("field %s has BSON type %v, want %v (document %s)", path, v.Type, want, doc)
	}
	return v
}

// TestDocumentShape reads the stored document directly: the layout is an
// interface for operators, not an implementation detail.
func TestDocumentShape(t *testing.T) {
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("ab", 32)
	rec := &store.Record{
		Data: map[string]json.RawMessage{
			"user":  raw(`{"id": 42, "name": "Zoë 🚀", "roles": ["a", "b"]}`),
			"count": raw(`7`),
			"big":   raw(`9007199254740993`),
			"pi":    raw(`3.5`),
			"flag":  raw(`true`),
			"none":  raw(`null`),
		},
		Created: now,
		Updated: now,
		Expires: now.Add(time.Hour),
		MaxAge:  90 * time.Second,
	}
	if err := s.Create(t.Context(), key, rec); err != nil {
		t.Fatal(err)
	}
	doc := rawDoc(t, s, key)
	if id := wantType(t, doc, "_id", bson.TypeString); id.StringValue() != key {
		t.Fatalf("_id = %q, want the key", id.StringValue())
	}
	wantType(t, doc, "data", bson.TypeEmbeddedDocument)
	wantType(t, doc, "data/user", bson.TypeEmbeddedDocument)
	if v := wantType(t, doc, "data/user/id", bson.TypeInt32); v.Int32() != 42 {
		t.Fatalf("data.user.id = %d", v.Int32())
	}
	if v := wantType(t, doc, "data/user/name", bson.TypeString); v.StringValue() != "Zoë 🚀" {
		t.Fatalf("data.user.name = %q", v.StringValue())
	}
	wantType(t, doc, "data/user/roles", bson.TypeArray)
	wantType(t, doc, "data/count", bson.TypeInt32)
	if v := wantType(t, doc, "data/big", bson.TypeInt64); v.Int64() != 9007199254740993 {
		t.Fatalf("data.big = %d (precision lost)", v.Int64())
	}
	wantType(t, doc, "data/pi", bson.TypeDouble)
	wantType(t, doc, "data/flag", bson.TypeBoolean)
	wantType(t, doc, "data/none", bson.TypeNull)
	for _, f := range []string{"created", "updated", "expires"} {
		wantType(t, doc, f, bson.TypeDateTime)
	}
	if v := wantType(t, doc, "expires", bson.TypeDateTime); v.Time().UnixMilli() != rec.Expires.UnixMilli() {
		t.Fatalf("expires = %v, want %v", v.Time(), rec.Expires)
	}
	if v := wantType(t, doc, "maxAge", bson.TypeInt64); v.Int64() != 90000 {
		t.Fatalf("maxAge = %d ms, want 90000", v.Int64())
	}
	if v := wantType(t, doc, "v", bson.TypeInt64); v.Int64() != 1 {
		t.Fatalf("v = %d, want 1", v.Int64())
	}

	// An operator can query the data.
	n, err := s.Collection().CountDocuments(t.Context(), bson.D{{Key: "data.user.id", Value: 42}})
	if err != nil || n != 1 {
		t.Fatalf("query on data.user.id: n=%d err=%v", n, err)
	}

	// Apply edits fields in place and keeps their kinds.
	ch := store.Change{
		Set:     map[string]json.RawMessage{"count": raw(`8`), "added": raw(`[1.5]`)},
		Unset:   []string{"flag"},
		Expires: now.Add(2 * time.Hour),
	}
	if err := s.Apply(t.Context(), key, ch, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	doc = rawDoc(t, s, key)
	if v := wantType(t, doc, "data/count", bson.TypeInt32); v.Int32() != 8 {
		t.Fatalf("data.count = %d, want 8", v.Int32())
	}
	wantType(t, doc, "data/added", bson.TypeArray)
	if _, err := doc.LookupErr("data", "flag"); err == nil {
		t.Fatal("data.flag still present after unset")
	}
	wantType(t, doc, "data/user/name", bson.TypeString) // untouched key intact
	if v := wantType(t, doc, "v", bson.TypeInt64); v.Int64() != 2 {
		t.Fatalf("v = %d, want 2", v.Int64())
	}
	if v := wantType(t, doc, "updated", bson.TypeDateTime); v.Time().UnixMilli() != now.Add(time.Second).UnixMilli() {
		t.Fatalf("updated = %v", v.Time())
	}
}

// TestAwkwardKeysStoredEscaped: keys MongoDB cannot take as field names
// are stored escaped, never interpreted as operators or paths, and come
// back exactly.
func TestAwkwardKeysStoredEscaped(t *testing.T) {
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("cd", 32)
	rec := &store.Record{
		Data: map[string]json.RawMessage{
			"a.b":       raw(`{"$inc": {"v": 100}, "c.d": 1}`),
			"":          raw(`"empty"`),
			"100%":      raw(`"percent"`),
			"nul\u0000": raw(`1`),
		},
		Expires: now.Add(time.Hour),
	}
	if err := s.Create(t.Context(), key, rec); err != nil {
		t.Fatal(err)
	}
	ch := store.Change{
		Set:     map[string]json.RawMessage{"$set": raw(`{"x": 1}`), "user.name": raw(`"n"`)},
		Unset:   []string{"a.b"},
		Expires: now.Add(time.Hour),
	}
	if err := s.Apply(t.Context(), key, ch, now); err != nil {
		t.Fatalf("Apply with $ and . keys: %v", err)
	}
	doc := rawDoc(t, s, key)
	wantType(t, doc, "data/%24set", bson.TypeEmbeddedDocument)
	wantType(t, doc, "data/user%2Ename", bson.TypeString)
	wantType(t, doc, "data/%", bson.TypeString)
	wantType(t, doc, "data/100%25", bson.TypeString)
	wantType(t, doc, "data/nul%00", bson.TypeInt32)
	if _, err := doc.LookupErr("data", "a%2Eb"); err == nil {
		t.Fatal("unset of an escaped key did not remove it")
	}
	// "$set" in the data did not act as an operator: v moved by one.
	if v := wantType(t, doc, "v", bson.TypeInt64); v.Int64() != 2 {
		t.Fatalf("v = %d, want 2", v.Int64())
	}
	got, err := s.Find(t.Context(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"":          `"empty"`,
		"100%":      `"percent"`,
		"nul\u0000": `1`,
		"$set":      `{"x":1}`,
		"user.name": `"n"`,
	}
	if len(got.Data) != len(want) {
		t.Fatalf("data = %v, want %v", got.Data, want)
	}
	for k, w := range want {
		if string(got.Data[k]) != w {
			t.Fatalf("data[%q] = %s, want %s", k, got.Data[k], w)
		}
	}

	// Nested awkward keys round-trip too.
	if err := s.Apply(t.Context(), key, store.Change{
		Set:     map[string]json.RawMessage{"n": raw(`{"$oid": "x", "a.b": {"": [{"$numberLong": "5"}]}}`)},
		Expires: now.Add(time.Hour),
	}, now); err != nil {
		t.Fatal(err)
	}
	got, err = s.Find(t.Context(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	if w := `{"$oid":"x","a.b":{"":[{"$numberLong":"5"}]}}`; string(got.Data["n"]) != w {
		t.Fatalf("nested: got %s, want %s", got.Data["n"], w)
	}
}

// TestApplyRejectsBadInput: input the store cannot apply is refused
// before any command is sent, and the session is left alone.
func TestApplyRejectsBadInput(t *testing.T) {
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("ef", 32)
	if err := s.Create(t.Context(), key, &store.Record{Data: map[string]json.RawMessage{"a": raw(`1`)}, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	bad := []store.Change{
		{Set: map[string]json.RawMessage{"a": raw(`{`)}},
		{Set: map[string]json.RawMessage{"a": raw(`1 2`)}},
		{Set: map[string]json.RawMessage{"a": raw(`1e999`)}},
		{Set: map[string]json.RawMessage{"a": raw(`2`)}, Unset: []string{"a"}},
	}
	for _, ch := range bad {
		ch.Expires = now.Add(time.Hour)
		if err := s.Apply(t.Context(), key, ch, now); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Apply(%v): err = %v, want a plain error", ch, err)
		}
	}
	if err := s.Create(t.Context(), strings.Repeat("01", 32), &store.Record{Data: map[string]json.RawMessage{"x": raw(`nope`)}, Expires: now.Add(time.Hour)}); err == nil {
		t.Fatal("Create with invalid JSON succeeded")
	}
	got, err := s.Find(t.Context(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || string(got.Data["a"]) != "1" {
		t.Fatalf("session changed by refused Apply: %+v", got)
	}
}

// commandCounter counts the commands the driver sends to one database.
type commandCounter struct {
	db    string
	mu    sync.Mutex
	names []string
}

func (c *commandCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.DatabaseName != c.db {
			return
		}
		c.mu.Lock()
		c.names = append(c.names, e.CommandName)
		c.mu.Unlock()
	}}
}

func (c *commandCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.names
	c.names = nil
	return out
}

// TestRoundTrips asserts, with the driver's command monitor, that every
// store call is exactly one command.
func TestRoundTrips(t *testing.T) {
	uri, db := mongotest.Database(t)
	counter := &commandCounter{db: db}
	s, err := Open(Options{URI: uri, Database: db, Monitor: counter.monitor()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	waitReady(t, s)
	counter.take()

	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("12", 32)
	ctx := t.Context()
	maxAge := time.Minute
	steps := []struct {
		name string
		want string
		call func() error
	}{
		{"Create", "insert", func() error {
			return s.Create(ctx, key, &store.Record{Data: map[string]json.RawMessage{"a": raw(`1`)}, Expires: now.Add(time.Hour)})
		}},
		{"Create duplicate", "insert", func() error {
			err := s.Create(ctx, key, &store.Record{Expires: now.Add(time.Hour)})
			if !errors.Is(err, store.ErrExists) {
				return errors.New("want ErrExists, got " + errString(err))
			}
			return nil
		}},
		{"Find", "find", func() error { _, err := s.Find(ctx, key, now); return err }},
		{"Find missing", "find", func() error {
			if _, err := s.Find(ctx, "missing", now); !errors.Is(err, store.ErrNotFound) {
				return errors.New("want ErrNotFound, got " + errString(err))
			}
			return nil
		}},
		{"Apply", "update", func() error {
			return s.Apply(ctx, key, store.Change{
				Set: map[string]json.RawMessage{"b": raw(`2`), "c": raw(`3`)}, Unset: []string{"a"},
				Expires: now.Add(time.Hour), MaxAge: &maxAge,
			}, now)
		}},
		{"Apply missing", "update", func() error {
			if err := s.Apply(ctx, "missing", store.Change{Expires: now.Add(time.Hour)}, now); !errors.Is(err, store.ErrNotFound) {
				return errors.New("want ErrNotFound, got " + errString(err))
			}
			return nil
		}},
		{"Touch", "update", func() error { return s.Touch(ctx, key, now.Add(2*time.Hour), now) }},
		{"Delete", "delete", func() error { return s.Delete(ctx, key) }},
	}
	for _, st := range steps {
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := counter.take(); len(got) != 1 || got[0] != st.want {
			t.Fatalf("%s sent commands %v, want exactly [%s]", st.name, got, st.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestOutage stops the server under a live store: calls fail fast with
// ErrUnavailable, and once the server is back the same store (same
// client) serves the old data again.
func TestOutage(t *testing.T) {
	const opTimeout = time.Second
	s := open(t, Options{OpTimeout: opTimeout})
	waitReady(t, s)
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("34", 32)
	data := map[string]json.RawMessage{"user": raw(`{"id": 7}`)}
	if err := s.Create(t.Context(), key, &store.Record{Data: data, Created: now, Updated: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	mongotest.Stop(t)
	calls := map[string]func(context.Context) error{
		"Find": func(ctx context.Context) error { _, err := s.Find(ctx, key, now); return err },
		"Create": func(ctx context.Context) error {
			return s.Create(ctx, strings.Repeat("56", 32), &store.Record{Expires: now.Add(time.Hour)})
		},
		"Apply": func(ctx context.Context) error {
			return s.Apply(ctx, key, store.Change{Set: map[string]json.RawMessage{"x": raw(`1`)}, Expires: now.Add(time.Hour)}, now)
		},
		"Touch":  func(ctx context.Context) error { return s.Touch(ctx, key, now.Add(time.Hour), now) },
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, "nothing") },
	}
	for name, call := range calls {
		start := time.Now()
		err := call(t.Context())
		took := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("%s with the server down: err = %v, want ErrUnavailable", name, err)
		}
		if took > opTimeout+time.Second {
			t.Fatalf("%s with the server down took %v, want about %v", name, took, opTimeout)
		}
		t.Logf("%s: %v after %v", name, err, took.Round(time.Millisecond))
	}

	mongotest.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	var got *store.Record
	for {
		var err error
		got, err = s.Find(t.Context(), key, now)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Find after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if string(got.Data["user"]) != `{"id":7}` || got.Version != 1 {
		t.Fatalf("after restart: %+v, want the old session (the failed Apply must not have landed)", got)
	}
	if err := s.Apply(t.Context(), key, store.Change{Set: map[string]json.RawMessage{"y": raw(`2`)}, Expires: now.Add(time.Hour)}, now); err != nil {
		t.Fatalf("Apply after restart: %v", err)
	}
}

// fakeClock is the sweeper's clock, moved by the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestSweepFallback runs the sweeper the store falls back to when the
// server refuses the TTL index.
func TestSweepFallback(t *testing.T) {
	base := time.Now().Truncate(time.Millisecond)
	clock := &fakeClock{now: base}
	s := open(t, Options{DisableTTLIndex: true, SweepInterval: 10 * time.Millisecond, Now: clock.Now})
	waitReady(t, s)
	if !s.sweeping.Load() {
		t.Fatal("DisableTTLIndex set but the store is not sweeping")
	}
	mk := func(key string, expires time.Time) {
		if err := s.Create(t.Context(), key, &store.Record{Created: base, Updated: base, Expires: expires}); err != nil {
			t.Fatal(err)
		}
	}
	mk("short", base.Add(time.Minute))
	mk("long", base.Add(time.Hour))
	count := func() int64 {
		n, err := s.Collection().CountDocuments(t.Context(), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	time.Sleep(100 * time.Millisecond)
	if n := count(); n != 2 {
		t.Fatalf("before expiry: %d documents, want 2", n)
	}
	clock.Set(base.Add(time.Minute)) // the short one's expiry instant: dead
	deadline := time.Now().Add(10 * time.Second)
	for count() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("sweeper did not delete the expired session within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.Find(t.Context(), "long", base); err != nil {
		t.Fatalf("live session swept: %v", err)
	}
	// The key is free again.
	mk("short", base.Add(time.Hour))

	// Sweep by hand.
	n, err := s.Sweep(t.Context(), base.Add(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2, nil", n, err)
	}
}

// TestExpiryMechanism: after start-up the store either has the TTL index
// or says in the log that it sweeps instead. Which one depends on the
// server, so both are accepted; what is not accepted is neither.
func TestExpiryMechanism(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := open(t, Options{Logger: zap.New(core)})
	waitReady(t, s)
	if s.sweeping.Load() {
		if logs.FilterMessageSnippet("refused the TTL index").Len() != 1 {
			t.Fatalf("sweeping without saying why; logs: %v", logs.All())
		}
		t.Log("server refused the TTL index; the store sweeps")
		return
	}
	cur, err := s.Collection().Indexes().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var idx []bson.M
	if err := cur.All(t.Context(), &idx); err != nil {
		t.Fatal(err)
	}
	for _, ix := range idx {
		if ix["name"] == "expires_1" {
			switch v := ix["expireAfterSeconds"].(type) {
			case int32:
				if v == 0 {
					t.Log("TTL index in place")
					return
				}
			case int64:
				if v == 0 {
					t.Log("TTL index in place")
					return
				}
			}
			t.Fatalf("expires_1 index without expireAfterSeconds 0: %v", ix)
		}
	}
	t.Fatalf("no TTL index and not sweeping; indexes: %v", idx)
}

// TestNoURIInErrors: a URI's password never shows in errors or logs,
// whether the URI is malformed or the server unreachable.
func TestNoURIInErrors(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	if _, err := NewClient(Options{URI: "mongodb://user:" + secret + "@localhost:notaport/"}); err == nil {
		t.Fatal("NewClient with a bad port succeeded")
	} else if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the password: %v", err)
	}

	core, logs := observer.New(zap.DebugLevel)
	// Port 1 on loopback: nothing listens, connections are refused.
	uri := "mongodb://user:" + secret + "@127.0.0.1:1/?authSource=admin"
	s, err := Open(Options{URI: uri, OpTimeout: 300 * time.Millisecond, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	start := time.Now()
	_, err = s.Find(t.Context(), "k", time.Now())
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Find on a dead port: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Find on a dead port took %v", took)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), uri) {
		t.Fatalf("error leaks the URI: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // let the index goroutine log its first failure
	for _, e := range logs.All() {
		line := e.Message
		for _, f := range e.Context {
			if f.Interface != nil {
				if err, ok := f.Interface.(error); ok {
					line += " " + err.Error()
				}
			}
			line += " " + f.String
		}
		if strings.Contains(line, secret) {
			t.Fatalf("log line leaks the password: %s", line)
		}
	}
}

func TestParseWriteConcern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{{"", "majority"}, {"majority", "majority"}, {"1", 1}, {"3", 3}, {"dc-east", "dc-east"}} {
		wc, err := ParseWriteConcern(tc.in)
		if err != nil || wc.W != tc.want {
			t.Fatalf("ParseWriteConcern(%q) = %v, %v; want W=%v", tc.in, wc, err, tc.want)
		}
	}
	for _, bad := range []string{"0", "-1"} {
		if _, err := ParseWriteConcern(bad); err == nil {
			t.Fatalf("ParseWriteConcern(%q) accepted", bad)
		}
	}
	if _, err := Open(Options{URI: "mongodb://127.0.0.1:1/", WriteConcern: "0"}); err == nil {
		t.Fatal("Open with w=0 succeeded")
	}
}

// TestWriteConcernOne runs real writes with w:1, the common non-default.
func TestWriteConcernOne(t *testing.T) {
	s := open(t, Options{WriteConcern: "1"})
	now := time.Now()
	if err := s.Create(t.Context(), "k", &store.Record{Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(t.Context(), "k", now.Add(2*time.Hour), now); err != nil {
		t.Fatal(err)
	}
}
