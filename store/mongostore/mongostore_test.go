package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/sessiongate/caddy-session/store/cachestore"
	"github.com/sessiongate/caddy-session/store/storetest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// open returns a Store on a database of its own whose start-up work is
// done, closed at the end of the test. opts.URI and opts.Database are
// filled in.
func open(t testing.TB, opts Options) *Store {
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
	waitReady(t, s)
	return s
}

// waitReady waits until the background start-up work has settled, so it
// cannot add commands to a count or race a test's first write.
func waitReady(t testing.TB, s *Store) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("start-up work (checks, index builds) did not finish within 60s")
	}
}

// TestConformance runs the suite on stores that share one client (one
// connection pool), each subtest on a collection of its own: FerretDB's
// SQLite backend scans the whole collection for a compare-and-set write
// (it uses an index only for a filter on _id alone), so one collection
// that grows through the suite makes its concurrency tests slow there.
func TestConformance(t *testing.T) {
	shared := open(t, Options{})
	newStore := func(t *testing.T) store.Store {
		s, err := New(shared.client, Options{Database: shared.coll.Database().Name(), Collection: uniqueCollection(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		waitReady(t, s)
		return s
	}
	storetest.Run(t, newStore)
	t.Run("SubjectIndexRequired", func(t *testing.T) {
		storetest.RunSubjectIndex(t, newStore)
	})
	// The read cache in front of MongoDB is a valid Store too: its stale
	// entries may only cost conflicts, which the suite's CAS tests retry.
	t.Run("Cached", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return cachestore.New(newStore(t), cachestore.Options{}).Store()
		})
	})
}

// uniqueCollection names a collection after the test, unique in its
// database.
func uniqueCollection(t *testing.T) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	collections.Lock()
	defer collections.Unlock()
	collections.n++
	return fmt.Sprintf("s%d_%.40s", collections.n, b.String())
}

var collections struct {
	sync.Mutex
	n int
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

func wantAbsent(t *testing.T, doc bson.Raw, path string) {
	t.Helper()
	if _, err := doc.LookupErr(strings.Split(path, "/")...); err == nil {
		t.Fatalf("field %s present in %s", path, doc)
	}
}

// TestDocumentShape reads the stored document directly: the layout is an
// interface for operators (docs/storage.md), not an implementation detail.
func TestDocumentShape(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("ab", 32)
	data := `{"big":12345678901234567890,"count":7,"flag":true,"long":9007199254740993,"none":null,"pi":3.5,"user":{"id":42,"name":"Zo\u00eb \ud83d\ude80","roles":["a","b"]}}`
	rec := &store.Record{Data: raw(data), Subject: "ann", Created: now, Updated: now, Expires: now.Add(time.Hour), MaxAge: 90 * time.Second}
	if err := s.Create(t.Context(), key, rec); err != nil {
		t.Fatal(err)
	}
	doc := rawDoc(t, s, key)
	t.Run("create", func(t *testing.T) {
		if id := wantType(t, doc, "_id", bson.TypeString); id.StringValue() != key {
			t.Fatalf("_id = %q, want the key", id.StringValue())
		}
		if f := wantType(t, doc, "f", bson.TypeInt32); f.Int32() != 2 {
			t.Fatalf("f = %d, want 2", f.Int32())
		}
		if v := wantType(t, doc, "sub", bson.TypeString); v.StringValue() != "ann" {
			t.Fatalf("sub = %q", v.StringValue())
		}
		if v := wantType(t, doc, "data/user/id", bson.TypeInt32); v.Int32() != 42 {
			t.Fatalf("data.user.id = %d", v.Int32())
		}
		if v := wantType(t, doc, "data/user/name", bson.TypeString); v.StringValue() != "Zoë 🚀" {
			t.Fatalf("data.user.name = %q (stored as UTF-8, not as escapes)", v.StringValue())
		}
		wantType(t, doc, "data/user/roles", bson.TypeArray)
		if v := wantType(t, doc, "data/long", bson.TypeInt64); v.Int64() != 9007199254740993 {
			t.Fatalf("data.long = %d (precision lost)", v.Int64())
		}
		if s.noDecimal.Load() {
			wantType(t, doc, "data/big/"+bigIntKey, bson.TypeString)
		} else {
			wantType(t, doc, "data/big", bson.TypeDecimal128)
		}
		wantType(t, doc, "data/pi", bson.TypeDouble)
		wantType(t, doc, "data/flag", bson.TypeBoolean)
		wantType(t, doc, "data/none", bson.TypeNull)
		for _, f := range []string{"created", "updated", "expires"} {
			wantType(t, doc, f, bson.TypeDateTime)
		}
		if v := wantType(t, doc, "maxAge", bson.TypeInt64); v.Int64() != 90000 {
			t.Fatalf("maxAge = %d ms, want 90000", v.Int64())
		}
		if v := wantType(t, doc, "v", bson.TypeInt64); v.Int64() != 1 {
			t.Fatalf("v = %d, want 1", v.Int64())
		}
		wantAbsent(t, doc, "rot")
		// An operator can query the data.
		n, err := s.Collection().CountDocuments(t.Context(), bson.D{{Key: "data.user.id", Value: 42}})
		if err != nil || n != 1 {
			t.Fatalf("query on data.user.id: n=%d err=%v", n, err)
		}
	})
	t.Run("update without subject", func(t *testing.T) {
		up := &store.Record{Data: raw(`{"count":8}`), Expires: now.Add(2 * time.Hour), Version: 1}
		if err := s.Update(t.Context(), key, up, now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		doc := rawDoc(t, s, key)
		wantAbsent(t, doc, "sub")
		wantAbsent(t, doc, "data/user")
		if v := wantType(t, doc, "v", bson.TypeInt64); v.Int64() != 2 {
			t.Fatalf("v = %d, want 2", v.Int64())
		}
		if v := wantType(t, doc, "maxAge", bson.TypeInt64); v.Int64() != 0 {
			t.Fatalf("maxAge = %d, want 0", v.Int64())
		}
	})
	t.Run("tombstone", func(t *testing.T) {
		if err := s.Rotate(t.Context(), key, 2, "0123456789ab", now.Add(time.Minute), now.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		doc := rawDoc(t, s, key)
		if v := wantType(t, doc, "rot", bson.TypeString); v.StringValue() != "0123456789ab" {
			t.Fatalf("rot = %q", v.StringValue())
		}
		wantAbsent(t, doc, "data")
		wantAbsent(t, doc, "sub")
		if v := wantType(t, doc, "expires", bson.TypeDateTime); v.Time().UnixMilli() != now.Add(time.Minute).UnixMilli() {
			t.Fatalf("tombstone expires %v", v.Time())
		}
	})
}

// TestFormat1Documents: documents written before format 2 (no f, keys in
// any order, big integers as doubles, nested arrays wrapped, escaped
// keys) are read as canonical JSON; their next Update writes format 2;
// a Touch leaves them readable.
func TestFormat1Documents(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("f1", 32)
	old := bson.D{
		{Key: "_id", Value: key},
		{Key: "data", Value: bson.D{
			{Key: "user", Value: bson.D{{Key: "name", Value: "Zoë"}, {Key: "id", Value: int32(7)}}},
			{Key: "big", Value: 9223372036854775808.0},
			{Key: "grid", Value: bson.A{bson.D{{Key: nestedArrayKey, Value: bson.A{int32(1), int32(2)}}}}},
			{Key: "100%25", Value: "p"},
			{Key: "half", Value: 0.5},
		}},
		{Key: "created", Value: now},
		{Key: "updated", Value: now},
		{Key: "expires", Value: now.Add(time.Hour)},
		{Key: "maxAge", Value: int64(60000)},
		{Key: "v", Value: int64(3)},
	}
	if _, err := s.Collection().InsertOne(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	got, err := s.Find(t.Context(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	// Format 1 kept integers outside int64 as doubles: the precision was
	// lost when they were written, and they read as that double.
	want := `{"100%":"p","big":9223372036854776000,"grid":[[1,2]],"half":0.5,"user":{"id":7,"name":"Zo\u00eb"}}`
	if string(got.Data) != want || got.Version != 3 || got.MaxAge != time.Minute || got.Subject != "" {
		t.Fatalf("format 1 read as %s v%d maxAge %v; want %s v3 1m", got.Data, got.Version, got.MaxAge, want)
	}
	if err := s.Touch(t.Context(), key, now.Add(2*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	got.Subject = "ann"
	if err := s.Update(t.Context(), key, got, now); err != nil {
		t.Fatalf("Update of a format 1 document: %v", err)
	}
	doc := rawDoc(t, s, key)
	if f := wantType(t, doc, "f", bson.TypeInt32); f.Int32() != formatVersion {
		t.Fatalf("f = %d after Update", f.Int32())
	}
	again, err := s.Find(t.Context(), key, now)
	if err != nil || string(again.Data) != want || again.Version != 4 {
		t.Fatalf("after Update: %+v, %v", again, err)
	}
}

// commandCounter counts the commands the driver sends to one database.
type commandCounter struct {
	db    string
	mu    sync.Mutex
	names []string
	cmds  []bson.Raw
}

func (c *commandCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.DatabaseName != c.db {
			return
		}
		c.mu.Lock()
		c.names = append(c.names, e.CommandName)
		c.cmds = append(c.cmds, append(bson.Raw(nil), e.Command...))
		c.mu.Unlock()
	}}
}

func (c *commandCounter) take() ([]string, []bson.Raw) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names, cmds := c.names, c.cmds
	c.names, c.cmds = nil, nil
	return names, cmds
}

// TestRoundTrips asserts, with the driver's command monitor, that every
// store call is exactly one command, and that reads and writes ask the
// primary whatever the URI says.
func TestRoundTrips(t *testing.T) {
	uri, db := mongotest.Database(t)
	counter := &commandCounter{db: db}
	s, err := Open(Options{URI: uri + "?readPreference=secondaryPreferred", Database: db, Monitor: counter.monitor()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	waitReady(t, s)
	counter.take()

	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("12", 32)
	ctx := t.Context()
	rec := &store.Record{Data: raw(`{"a":1}`), Subject: "bob", Expires: now.Add(time.Hour)}
	steps := []struct {
		name string
		want string
		call func() error
	}{
		{"Create", "insert", func() error { return s.Create(ctx, key, rec) }},
		{"Create duplicate", "insert", func() error { return wantIs(s.Create(ctx, key, rec), store.ErrExists) }},
		{"Find", "find", func() error { _, err := s.Find(ctx, key, now); return err }},
		{"Find missing", "find", func() error { _, err := s.Find(ctx, "missing", now); return wantIs(err, store.ErrNotFound) }},
		{"Update", "update", func() error {
			return s.Update(ctx, key, &store.Record{Data: raw(`{"b":2}`), Subject: "bob", Expires: now.Add(time.Hour), Version: 1}, now)
		}},
		{"Update conflict", "update", func() error {
			return wantIs(s.Update(ctx, key, &store.Record{Expires: now.Add(time.Hour), Version: 1}, now), store.ErrConflict)
		}},
		{"Touch", "update", func() error { return s.Touch(ctx, key, now.Add(2*time.Hour), now) }},
		{"FindBySubject", "find", func() error {
			l, err := s.FindBySubject(ctx, "bob", now)
			if err == nil && len(l) != 1 {
				return errors.New("want one session")
			}
			return err
		}},
		{"DeleteBySubject", "delete", func() error { _, err := s.DeleteBySubject(ctx, "bob", key); return err }},
		{"DeleteByHandle", "delete", func() error { _, err := s.DeleteByHandle(ctx, key[:12]); return err }},
		{"Create again", "insert", func() error { return s.Create(ctx, key, rec) }},
		{"Rotate", "update", func() error { return s.Rotate(ctx, key, 1, "abcdefabcdef", now.Add(time.Minute), now) }},
		{"Find tombstone", "find", func() error { _, err := s.Find(ctx, key, now); return wantIs(err, store.ErrRotated) }},
		{"Delete", "delete", func() error { return s.Delete(ctx, key) }},
	}
	for _, st := range steps {
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		names, cmds := counter.take()
		if len(names) != 1 || names[0] != st.want {
			t.Fatalf("%s sent commands %v, want exactly [%s]", st.name, names, st.want)
		}
		if rp, err := cmds[0].LookupErr("$readPreference", "mode"); err == nil && rp.StringValue() != "primary" {
			t.Fatalf("%s sent read preference %s, want primary", st.name, rp)
		}
	}
}

func wantIs(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	if err == nil {
		return errors.New("no error, want " + target.Error())
	}
	return errors.New("error " + err.Error() + ", want " + target.Error())
}

// TestTouchNeverShortens: a late touch (a zombie write after a stall)
// cannot move expires or updated backwards.
func TestTouchNeverShortens(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("7a", 32)
	if err := s.Create(t.Context(), key, &store.Record{Created: now, Updated: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(t.Context(), key, now.Add(2*time.Hour), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(t.Context(), key, now.Add(90*time.Minute), now.Add(30*time.Second)); err != nil {
		t.Fatalf("late touch: %v", err)
	}
	got, err := s.Find(t.Context(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expires.Equal(now.Add(2*time.Hour)) || !got.Updated.Equal(now.Add(time.Minute)) {
		t.Fatalf("after a late touch: expires %v updated %v; want %v and %v", got.Expires, got.Updated, now.Add(2*time.Hour), now.Add(time.Minute))
	}
}

// TestBadDataRefused: data the store cannot convert is refused before any
// command, with an error that does not quote it, and the session stays.
func TestBadDataRefused(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("ef", 32)
	if err := s.Create(t.Context(), key, &store.Record{Data: raw(`{"a":1}`), Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"secret-key":`, `{"a":1} 2`, `{"secret-key":1e999}`, `["secret-key"]`} {
		t.Run(bad, func(t *testing.T) {
			err := s.Update(t.Context(), key, &store.Record{Data: raw(bad), Expires: now.Add(time.Hour), Version: 1}, now)
			if err == nil || errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "secret-key") {
				t.Fatalf("Update: err = %v, want a plain error not quoting the data", err)
			}
			if err := s.Create(t.Context(), strings.Repeat("01", 32), &store.Record{Data: raw(bad), Expires: now.Add(time.Hour)}); err == nil {
				t.Fatal("Create accepted it")
			}
		})
	}
	got, err := s.Find(t.Context(), key, now)
	if err != nil || got.Version != 1 || string(got.Data) != `{"a":1}` {
		t.Fatalf("session changed by refused writes: %+v %v", got, err)
	}
}

// TestOutage stops the server under a live store: calls fail fast with
// ErrUnavailable, and once the server is back the same store (same
// client) serves the old data again.
func TestOutage(t *testing.T) {
	const opTimeout = time.Second
	s := open(t, Options{OpTimeout: opTimeout})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("34", 32)
	if err := s.Create(t.Context(), key, &store.Record{Data: raw(`{"user":{"id":7}}`), Subject: "u", Created: now, Updated: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	mongotest.Stop(t)
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Find", func(ctx context.Context) error { _, err := s.Find(ctx, key, now); return err }},
		{"Create", func(ctx context.Context) error {
			return s.Create(ctx, strings.Repeat("56", 32), &store.Record{Expires: now.Add(time.Hour)})
		}},
		{"Update", func(ctx context.Context) error {
			return s.Update(ctx, key, &store.Record{Data: raw(`{"x":1}`), Expires: now.Add(time.Hour), Version: 1}, now)
		}},
		{"Touch", func(ctx context.Context) error { return s.Touch(ctx, key, now.Add(time.Hour), now) }},
		{"Rotate", func(ctx context.Context) error { return s.Rotate(ctx, key, 1, "abcdefabcdef", now.Add(time.Hour), now) }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "nothing") }},
		{"FindBySubject", func(ctx context.Context) error { _, err := s.FindBySubject(ctx, "u", now); return err }},
		{"DeleteBySubject", func(ctx context.Context) error { _, err := s.DeleteBySubject(ctx, "u", ""); return err }},
		{"DeleteByHandle", func(ctx context.Context) error { _, err := s.DeleteByHandle(ctx, "0123456789ab"); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(t.Context()); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("with the server down: err = %v, want ErrUnavailable", err)
			}
		})
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
	if string(got.Data) != `{"user":{"id":7}}` || got.Version != 1 {
		t.Fatalf("after restart: %+v, want the old session (the failed writes must not have landed)", got)
	}
	if err := s.Update(t.Context(), key, &store.Record{Data: raw(`{"y":2}`), Expires: now.Add(time.Hour), Version: 1}, now); err != nil {
		t.Fatalf("Update after restart: %v", err)
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

// TestSweep runs the sweeper the store uses while no TTL index exists,
// with a plain index on expires under it.
func TestSweep(t *testing.T) {
	t.Parallel()
	base := time.Now().Truncate(time.Millisecond)
	clock := &fakeClock{now: base}
	core, logs := observer.New(zap.DebugLevel)
	s := open(t, Options{DisableTTLIndex: true, SweepInterval: 10 * time.Millisecond, Now: clock.Now, Logger: zap.New(core)})
	if e := s.Expiry(); e != ExpirySweep {
		t.Fatalf("DisableTTLIndex set, expiry %v, want sweep", e)
	}
	if !hasIndex(t, s, "expires_sweep") {
		t.Fatal("no plain index on expires for the sweep")
	}
	if n := logs.FilterMessageSnippet("periodic sweep").Len(); n != 1 {
		t.Fatalf("state change logged %d times, want once", n)
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
	mk("short", base.Add(time.Hour)) // the key is free again
	n, err := s.Sweep(t.Context(), base.Add(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2, nil", n, err)
	}
}

func hasIndex(t *testing.T, s *Store, name string) bool {
	t.Helper()
	specs, err := s.Collection().Indexes().ListSpecifications(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		if sp.Name == name {
			return true
		}
	}
	return false
}

// TestIndexes: after start-up the store has the TTL index, or says once
// in the log that it sweeps and has a plain index on expires; either way
// the sub index exists. Which one depends on the server (FerretDB refuses
// TTL indexes with code 238).
func TestIndexes(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	s := open(t, Options{Logger: zap.New(core)})
	if !hasIndex(t, s, "sub_1") {
		t.Fatal("no index on sub")
	}
	switch s.Expiry() {
	case ExpirySweep:
		if logs.FilterMessageSnippet("refused the TTL index").Len() != 1 || logs.FilterMessageSnippet("periodic sweep").Len() != 1 {
			t.Fatalf("sweeping without saying why once; logs: %v", logs.All())
		}
		if !hasIndex(t, s, "expires_sweep") {
			t.Fatal("sweeping without a plain index on expires")
		}
		t.Log("server refused the TTL index; the store sweeps")
	case ExpiryTTLIndex:
		if !hasIndex(t, s, "expires_1") {
			t.Fatal("TTL state without the expires_1 index")
		}
		t.Log("TTL index in place")
	default:
		t.Fatalf("expiry %v after start-up", s.Expiry())
	}
}

// TestNoURIInErrors: a URI's password never shows in errors or logs,
// whether the URI is malformed or the server unreachable.
func TestNoURIInErrors(t *testing.T) {
	t.Parallel()
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
	_, err = s.Find(t.Context(), "k", time.Now())
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Find on a dead port: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), uri) {
		t.Fatalf("error leaks the URI: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("unavailable").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the start-up work logs its first failure
	}
	if logs.Len() == 0 {
		t.Fatal("no log line about the unreachable server")
	}
	for _, e := range logs.All() {
		line := e.Message
		for _, f := range e.Context {
			if err, ok := f.Interface.(error); ok {
				line += " " + err.Error()
			}
			line += " " + f.String
		}
		if strings.Contains(line, secret) {
			t.Fatalf("log line leaks the password: %s", line)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"w 0", Options{WriteConcern: "0"}, "write concern"},
		{"w -1", Options{WriteConcern: "-1"}, "write concern"},
		{"database dot", Options{Database: "a.b"}, "database name"},
		{"database long", Options{Database: strings.Repeat("d", 64)}, "database name"},
		{"collection system", Options{Collection: "system.x"}, "collection name"},
		{"collection dollar", Options{Collection: "a$b"}, "collection name"},
		{"negative timeout", Options{OpTimeout: -1}, "timeout"},
		{"negative connect timeout", Options{ConnectTimeout: -1}, "connect timeout"},
		{"negative sweep", Options{SweepInterval: -1}, "sweep interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error about %s", err, tc.want)
			}
			tc.opts.URI = "mongodb://127.0.0.1:1/"
			if _, err := Open(tc.opts); err == nil {
				t.Fatal("Open accepted it")
			}
		})
	}
	if err := (Options{Database: "app", Collection: "web.sessions", WriteConcern: "dc-east"}).Validate(); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
}

func TestParseWriteConcern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want any
	}{{"", "majority"}, {"majority", "majority"}, {"1", 1}, {"3", 3}, {"dc-east", "dc-east"}} {
		t.Run(tc.in, func(t *testing.T) {
			wc, err := ParseWriteConcern(tc.in)
			if err != nil || wc.W != tc.want {
				t.Fatalf("ParseWriteConcern(%q) = %v, %v; want W=%v", tc.in, wc, err, tc.want)
			}
		})
	}
}

// TestWriteConcernOne runs real writes with w:1, the common non-default.
func TestWriteConcernOne(t *testing.T) {
	t.Parallel()
	s := open(t, Options{WriteConcern: "1"})
	now := time.Now()
	if err := s.Create(t.Context(), "k", &store.Record{Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(t.Context(), "k", now.Add(2*time.Hour), now); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFind is the MongoDB read path: Find of a typical session,
// including the conversion to the X-Session value, against the test
// server. BenchmarkAppendJSON is the conversion alone.
func BenchmarkFind(b *testing.B) {
	s := open(b, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("be", 32)
	if err := s.Create(b.Context(), key, &store.Record{Data: raw(benchData), Expires: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec, err := s.Find(b.Context(), key, now)
		if err != nil || len(rec.Data) != len(benchData) {
			b.Fatalf("Find: %v", err)
		}
	}
}

// TestTimeoutDefaults: connecting and heartbeats get their own, longer
// timeout than a request (a slow heartbeat clears the pool).
func TestTimeoutDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		in          Options
		op, connect time.Duration
	}{
		{"defaults", Options{}, DefaultOpTimeout, DefaultConnectTimeout},
		{"short op timeout", Options{OpTimeout: time.Second}, time.Second, DefaultConnectTimeout},
		{"op timeout above the connect default", Options{OpTimeout: 20 * time.Second}, 20 * time.Second, 20 * time.Second},
		{"both set", Options{OpTimeout: time.Second, ConnectTimeout: 5 * time.Second}, time.Second, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.in.withDefaults()
			if o.OpTimeout != tc.op || o.ConnectTimeout != tc.connect {
				t.Fatalf("op %v connect %v, want %v and %v", o.OpTimeout, o.ConnectTimeout, tc.op, tc.connect)
			}
		})
	}
}

// TestBigIntegerRightAfterOpen: a write of an integer outside int64 made
// before the start-up check has found out whether the server takes
// Decimal128 waits for it, rather than sending a Decimal128 to a server
// that drops the connection on one (FerretDB 1.x).
func TestBigIntegerRightAfterOpen(t *testing.T) {
	t.Parallel()
	uri, db := mongotest.Database(t)
	s, err := Open(Options{URI: uri, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	now := time.Now().Truncate(time.Millisecond)
	data := raw(`{"big":-12345678901234567890123456789012}`)
	if err := s.Create(t.Context(), "k", &store.Record{Data: data, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Create right after Open: %v", err)
	}
	got, err := s.Find(t.Context(), "k", now)
	if err != nil || string(got.Data) != string(data) {
		t.Fatalf("Find: %v, %v", got, err)
	}
}
