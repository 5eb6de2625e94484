package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
	"github.com/sessiongate/caddy-session/store/storetest"
)

func newStore(t testing.TB, opts ...memstore.Options) *memstore.Store {
	s := memstore.New(opts...)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// TestConformanceShared runs the suite against one store shared by every
// subtest, as a shared database would be, to check the suite's keys do
// not collide.
func TestConformanceShared(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	storetest.Run(t, func(*testing.T) store.Store { return s })
}

// TestSubjectIndex insists on the interface, so losing it fails instead
// of being logged.
func TestSubjectIndex(t *testing.T) {
	t.Parallel()
	storetest.RunSubjectIndex(t, func(t *testing.T) store.Store { return newStore(t) })
}

// fakeClock is a clock the test moves by hand; the sweeper reads it from
// its own goroutine, hence the lock.
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

var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func record(subject string, expires time.Time) *store.Record {
	return &store.Record{Data: []byte(`{"a":1}`), Subject: subject, Created: base, Updated: base, Expires: expires}
}

func mustCreate(t testing.TB, s *memstore.Store, key string, rec *store.Record) {
	t.Helper()
	if err := s.Create(context.Background(), key, rec); err != nil {
		t.Fatalf("Create %s: %v", key, err)
	}
}

func TestSweeper(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: base}
	s := memstore.New(memstore.Options{SweepInterval: time.Millisecond, Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()

	mustCreate(t, s, "short", record("ann", base.Add(time.Minute)))
	mustCreate(t, s, "long", record("ann", base.Add(time.Hour)))
	mustCreate(t, s, "rotated", record("ann", base.Add(time.Hour)))
	if err := s.Rotate(ctx, "rotated", 1, "succ", base.Add(time.Minute), base); err != nil {
		t.Fatal(err)
	}

	// The sweeper runs many times while the clock stands still: nothing
	// is dead yet, so nothing may go.
	time.Sleep(20 * time.Millisecond)
	if n := s.Len(); n != 3 {
		t.Fatalf("before expiry: Len = %d, want 3", n)
	}

	// Move the clock to exactly the short session's expiry and the
	// tombstone's end: both are dead.
	clock.Set(base.Add(time.Minute))
	waitFor(t, func() bool { return s.Len() == 1 })
	// Gone for real, not just hidden: Find at an earlier instant misses,
	// and the subject map forgot the swept session.
	for _, key := range []string{"short", "rotated"} {
		if _, err := s.Find(ctx, key, base); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Find swept %s: %v, want ErrNotFound", key, err)
		}
	}
	if got, err := s.FindBySubject(ctx, "ann", base); err != nil || len(got) != 1 {
		t.Fatalf("FindBySubject after the sweep: %+v, %v; want the long session only", got, err)
	}
	// The keys are free again.
	mustCreate(t, s, "short", record("", base.Add(2*time.Hour)))
	mustCreate(t, s, "rotated", record("", base.Add(2*time.Hour)))

	// After Close the sweeper stops: expiring everything removes nothing.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Set(base.Add(10 * time.Hour))
	time.Sleep(20 * time.Millisecond)
	if n := s.Len(); n != 3 {
		t.Fatalf("after Close: Len = %d, want 3", n)
	}
	// Sweep still works by hand.
	if n := s.Sweep(clock.Now()); n != 3 {
		t.Fatalf("Sweep removed %d, want 3", n)
	}
}

func TestSweeperDisabled(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Options{SweepInterval: -1})
	mustCreate(t, s, "k", &store.Record{Expires: time.Unix(1, 0)})
	time.Sleep(5 * time.Millisecond)
	if n := s.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1 (no sweeper)", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSweepWhileWriting sweeps a store larger than one scan chunk while
// another goroutine creates and deletes sessions: the sweep lets it in
// between chunks, and still removes every dead session exactly once.
func TestSweepWhileWriting(t *testing.T) {
	t.Parallel()
	s := newStore(t, memstore.Options{SweepInterval: -1})
	const dead = 5000
	for i := range dead {
		mustCreate(t, s, fmt.Sprint("dead-", i), record("", base.Add(time.Minute)))
		mustCreate(t, s, fmt.Sprint("live-", i), record("", base.Add(time.Hour)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mustCreate(t, s, fmt.Sprint("new-", i), record("", base.Add(time.Hour)))
			if err := s.Delete(context.Background(), fmt.Sprint("live-", i%dead)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	n := s.Sweep(base.Add(time.Minute))
	close(stop)
	wg.Wait()
	if n != dead {
		t.Fatalf("Sweep removed %d, want %d", n, dead)
	}
	for i := range dead {
		if _, err := s.Find(t.Context(), fmt.Sprint("dead-", i), base); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("dead-%d survived the sweep: %v", i, err)
		}
	}
}

// TestBound creates ten times the bound while a few sessions are kept in
// use, and checks that the store never holds more than the bound, that
// every eviction is reported, and that exactly the most recently used
// sessions survive.
func TestBound(t *testing.T) {
	t.Parallel()
	const maxSessions, hot = 100, 10
	var evicted atomic.Int64
	var s *memstore.Store
	s = newStore(t, memstore.Options{
		MaxSessions: maxSessions,
		OnEvict: func(n int) {
			evicted.Add(int64(n))
			_ = s.Len() // the hook runs outside the lock
		},
	})
	if s.MaxSessions() != maxSessions {
		t.Fatalf("MaxSessions = %d, want %d", s.MaxSessions(), maxSessions)
	}
	ctx := t.Context()
	key := func(i int) string { return fmt.Sprintf("%064x", i) }
	const total = 10 * maxSessions
	for i := range total {
		mustCreate(t, s, key(i), record(fmt.Sprint("subject-", i%7), base.Add(time.Hour)))
		// The first hot sessions are used after every create.
		for h := range min(hot, i+1) {
			if _, err := s.Find(ctx, key(h), base); err != nil {
				t.Fatalf("after %d creates, hot session %d: %v", i+1, h, err)
			}
		}
		if n := s.Len(); n > maxSessions {
			t.Fatalf("after %d creates: Len = %d, above the bound %d", i+1, n, maxSessions)
		}
	}
	if n := s.Len(); n != maxSessions {
		t.Fatalf("Len = %d, want %d", n, maxSessions)
	}
	if n := evicted.Load(); n != total-maxSessions {
		t.Fatalf("OnEvict reported %d evictions, want %d", n, total-maxSessions)
	}
	for i := range total {
		_, err := s.Find(ctx, key(i), base)
		survives := i < hot || i >= total-(maxSessions-hot)
		if survives != (err == nil) {
			t.Fatalf("session %d: Find error %v, want it to survive: %v", i, err, survives)
		}
	}
	// The subject map was kept in step: it lists exactly the survivors.
	listed := 0
	for sub := range 7 {
		got, err := s.FindBySubject(ctx, fmt.Sprint("subject-", sub), base)
		if err != nil {
			t.Fatal(err)
		}
		listed += len(got)
	}
	if listed != maxSessions {
		t.Fatalf("subjects list %d sessions, want %d", listed, maxSessions)
	}
}

// TestSetMaxSessions checks that lowering the bound evicts the least
// recently used records at once, and raising it makes room.
func TestSetMaxSessions(t *testing.T) {
	t.Parallel()
	var evicted atomic.Int64
	s := newStore(t, memstore.Options{MaxSessions: 4, OnEvict: func(n int) { evicted.Add(int64(n)) }})
	for _, key := range []string{"a", "b", "c", "d"} {
		mustCreate(t, s, key, record("", base.Add(time.Hour)))
	}
	if _, err := s.Find(t.Context(), "a", base); err != nil {
		t.Fatal(err)
	}
	s.SetMaxSessions(2)
	if s.Len() != 2 || s.MaxSessions() != 2 || evicted.Load() != 2 {
		t.Fatalf("after SetMaxSessions(2): Len %d, MaxSessions %d, evicted %d; want 2, 2, 2", s.Len(), s.MaxSessions(), evicted.Load())
	}
	for key, alive := range map[string]bool{"a": true, "b": false, "c": false, "d": true} {
		if _, err := s.Find(t.Context(), key, base); (err == nil) != alive {
			t.Fatalf("%s: Find error %v, want alive %v", key, err, alive)
		}
	}
	s.SetMaxSessions(0)
	if s.MaxSessions() != memstore.DefaultMaxSessions {
		t.Fatalf("SetMaxSessions(0): MaxSessions = %d, want the default", s.MaxSessions())
	}
	mustCreate(t, s, "e", record("", base.Add(time.Hour)))
	if s.Len() != 3 || evicted.Load() != 2 {
		t.Fatalf("after raising the bound: Len %d, evicted %d; want 3, 2", s.Len(), evicted.Load())
	}
}

// TestUseOrder checks which operations count as a use: with room for two
// sessions, a third evicts the one not used last.
func TestUseOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		use     func(s *memstore.Store, key string) error
		evicted string
	}{
		{"no use", func(*memstore.Store, string) error { return nil }, "a"},
		{"Find", func(s *memstore.Store, key string) error {
			_, err := s.Find(ctx, key, base)
			return err
		}, "b"},
		{"Touch", func(s *memstore.Store, key string) error {
			return s.Touch(ctx, key, base.Add(2*time.Hour), base)
		}, "b"},
		{"Update", func(s *memstore.Store, key string) error {
			rec := record("", base.Add(time.Hour))
			rec.Version = 1
			return s.Update(ctx, key, rec, base)
		}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, memstore.Options{MaxSessions: 2})
			mustCreate(t, s, "a", record("", base.Add(time.Hour)))
			mustCreate(t, s, "b", record("", base.Add(time.Hour)))
			if err := tc.use(s, "a"); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, s, "c", record("", base.Add(time.Hour)))
			for _, key := range []string{"a", "b", "c"} {
				_, err := s.Find(ctx, key, base)
				if gone := errors.Is(err, store.ErrNotFound); gone != (key == tc.evicted) {
					t.Fatalf("%s: Find error %v; want only %s evicted", key, err, tc.evicted)
				}
			}
		})
	}
}

// TestFoundDataIsClipped checks the sharing invariant of the package
// documentation: an append to found Data reallocates.
func TestFoundDataIsClipped(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for _, data := range []string{`{"a":"aaa"}`, ``} {
		rec := record("", base.Add(time.Hour))
		rec.Data = append(make([]byte, 0, 64), data...)
		key := fmt.Sprintf("key-%q", data)
		mustCreate(t, s, key, rec)
		got, err := s.Find(t.Context(), key, base)
		if err != nil {
			t.Fatal(err)
		}
		if cap(got.Data) != len(got.Data) {
			t.Fatalf("Data %s has capacity %d beyond its length %d", got.Data, cap(got.Data), len(got.Data))
		}
	}
}

// TestDeleteByHandleRefusesPrefixes checks that a handle that is not 12
// hex digits deletes nothing: an empty one would match every key.
func TestDeleteByHandleRefusesPrefixes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	key := fmt.Sprintf("%064x", 0xabcdef)
	mustCreate(t, s, key, record("", base.Add(time.Hour)))
	for _, handle := range []string{"", "0", key[:11], key[:13], "00000000000G", "0000000000AB"} {
		n, err := s.DeleteByHandle(t.Context(), handle)
		if err == nil || n != 0 {
			t.Fatalf("DeleteByHandle(%q) = %d, %v; want 0 and an error", handle, n, err)
		}
	}
	if s.Len() != 1 {
		t.Fatal("a refused DeleteByHandle deleted a session")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// benchData is a session shaped like a typical one: a handful of small
// keys and one nested object, canonically encoded.
var benchData = []byte(`{"cart":[{"qty":2,"sku":"A1"},{"qty":1,"sku":"B2"}],"csrf":"c2VjcmV0LXRva2Vu","flash":"saved","user":{"id":42,"name":"Zo\u00eb","roles":["admin","dev"]},"views":17}`)

const benchSessions = 10_000

func benchKey(i int) string { return fmt.Sprintf("%064x", i) }

// benchStore holds benchSessions sessions, so lookups are not in a toy
// map.
func benchStore(b *testing.B, n int) (*memstore.Store, time.Time) {
	s := newStore(b, memstore.Options{MaxSessions: n})
	now := time.Now()
	for i := range n {
		rec := &store.Record{Data: benchData, Subject: fmt.Sprint(i % 1000), Expires: now.Add(time.Hour)}
		mustCreate(b, s, benchKey(i), rec)
	}
	return s, now
}

func BenchmarkFind(b *testing.B) {
	s, now := benchStore(b, benchSessions)
	key := benchKey(4242)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Find(ctx, key, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindParallel measures Find under contention, to show whether
// the single mutex needs sharding.
func BenchmarkFindParallel(b *testing.B) {
	s, now := benchStore(b, benchSessions)
	ctx := context.Background()
	keys := make([]string, benchSessions)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if _, err := s.Find(ctx, keys[i%benchSessions], now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUpdate(b *testing.B) {
	s, now := benchStore(b, benchSessions)
	ctx := context.Background()
	rec := &store.Record{Data: benchData, Subject: "42", Expires: now.Add(time.Hour), Version: 1}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Update(ctx, benchKey(42), rec, now); err != nil {
			b.Fatal(err)
		}
		rec.Version++
	}
}

// BenchmarkUpdateParallel updates a different session per goroutine, so
// it measures the lock, not conflicts.
func BenchmarkUpdateParallel(b *testing.B) {
	s, now := benchStore(b, benchSessions)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := benchKey(int(next.Add(1)))
		rec := &store.Record{Data: benchData, Subject: "42", Expires: now.Add(time.Hour), Version: 1}
		for pb.Next() {
			if err := s.Update(ctx, key, rec, now); err != nil {
				b.Fatal(err)
			}
			rec.Version++
		}
	})
}

// BenchmarkCreateEvicting creates sessions in a full store, so every
// Create evicts one.
func BenchmarkCreateEvicting(b *testing.B) {
	s, now := benchStore(b, benchSessions)
	ctx := context.Background()
	keys := make([]string, 0, 1<<16)
	for i := range cap(keys) {
		keys = append(keys, benchKey(benchSessions+i))
	}
	rec := &store.Record{Data: benchData, Expires: now.Add(time.Hour)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Create(ctx, keys[i%len(keys)], rec); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSweep measures one sweep of a full default-size store that
// finds nothing to remove: how long the sweeper holds the lock.
func BenchmarkSweep(b *testing.B) {
	s, now := benchStore(b, memstore.DefaultMaxSessions)
	b.ReportAllocs()
	for b.Loop() {
		if n := s.Sweep(now); n != 0 {
			b.Fatalf("swept %d", n)
		}
	}
}

// BenchmarkDeleteByHandle measures the scan DeleteByHandle makes in a
// full default-size store.
func BenchmarkDeleteByHandle(b *testing.B) {
	s, _ := benchStore(b, memstore.DefaultMaxSessions)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if n, err := s.DeleteByHandle(ctx, "ffffffffffff"); n != 0 || err != nil {
			b.Fatal(n, err)
		}
	}
}

// TestFloodKeepsLoggedIn is issue 17 item 2 at the store: a flood of
// three times max_sessions anonymous sessions evicts only anonymous ones.
// Sessions with a subject, sessions created by a regenerate (Login) and
// tombstones in their window survive it; ended tombstones go first.
func TestFloodKeepsLoggedIn(t *testing.T) {
	t.Parallel()
	const maxSessions = 10
	var evicted, loggedOut atomic.Int64
	s := newStore(t, memstore.Options{
		MaxSessions:     maxSessions,
		OnEvict:         func(n int) { evicted.Add(int64(n)) },
		OnEvictLoggedIn: func(n int) { loggedOut.Add(int64(n)) },
	})
	ctx := t.Context()
	far := base.Add(time.Hour)
	mustCreate(t, s, "subject", record("alice", far))
	login := record("", far)
	login.Login = true
	mustCreate(t, s, "login", login)
	// An anonymous session that gains a subject by an update.
	mustCreate(t, s, "gains", record("", far))
	gained := record("bob", far)
	gained.Version = 1
	if err := s.Update(ctx, "gains", gained, base); err != nil {
		t.Fatal(err)
	}
	// A regenerated-away session: its tombstone lasts two minutes.
	mustCreate(t, s, "rotated", record("", far))
	if err := s.Rotate(ctx, "rotated", 1, "0123456789ab", base.Add(2*time.Minute), base); err != nil {
		t.Fatal(err)
	}
	// A destroyed session: its tombstone ends at once.
	mustCreate(t, s, "destroyed", record("", far))
	if err := s.Rotate(ctx, "destroyed", 1, "", base, base); err != nil {
		t.Fatal(err)
	}

	for i := range 3 * maxSessions {
		mustCreate(t, s, fmt.Sprintf("anon-%d", i), record("", far))
		if n := s.Len(); n > maxSessions {
			t.Fatalf("after %d anonymous creates: Len = %d, above the bound %d", i+1, n, maxSessions)
		}
	}
	for _, key := range []string{"subject", "login", "gains"} {
		if _, err := s.Find(ctx, key, base); err != nil {
			t.Errorf("logged-in session %q after the flood: %v", key, err)
		}
	}
	if _, err := s.Find(ctx, "rotated", base); !errors.Is(err, store.ErrRotated) {
		t.Errorf("tombstone in its window after the flood: Find error %v, want ErrRotated", err)
	}
	if err := s.Create(ctx, "destroyed", record("", far)); err != nil {
		t.Errorf("the ended tombstone was not evicted first: Create on its key: %v", err)
	}
	if n := loggedOut.Load(); n != 0 {
		t.Errorf("OnEvictLoggedIn reported %d logged-in sessions evicted, want 0", n)
	}
	if anon, users := s.Evictions(); anon != uint64(evicted.Load()) || users != 0 {
		t.Errorf("Evictions() = %d, %d; want %d, 0", anon, users, evicted.Load())
	}
	// 30 floods + the re-created key: 31 creates into a store of 10 that
	// held 5 records.
	if n := evicted.Load(); n != 5+31-maxSessions {
		t.Errorf("OnEvict reported %d evictions, want %d", n, 5+31-maxSessions)
	}

	// Once the window ends, the tombstone goes like any dead record.
	later := record("", far)
	later.Created = base.Add(3 * time.Minute)
	mustCreate(t, s, "later", later)
	if _, err := s.Find(ctx, "rotated", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ended tombstone after a create at its end: Find error %v, want ErrNotFound", err)
	}
}

// TestOnlyLoggedInLeft checks the last resorts: with only logged-in
// sessions left, a new session evicts the least recently used of them and
// OnEvictLoggedIn hears of it; the new session itself is never evicted;
// with only tombstones in their window left the store goes over its bound
// instead of cutting a window short.
func TestOnlyLoggedInLeft(t *testing.T) {
	t.Parallel()
	var loggedOut atomic.Int64
	s := newStore(t, memstore.Options{MaxSessions: 2, OnEvictLoggedIn: func(n int) { loggedOut.Add(int64(n)) }})
	ctx := t.Context()
	far := base.Add(time.Hour)
	mustCreate(t, s, "a", record("alice", far))
	mustCreate(t, s, "b", record("bob", far))
	mustCreate(t, s, "anon-1", record("", far))
	mustCreate(t, s, "anon-2", record("", far))
	for key, alive := range map[string]bool{"a": false, "b": true, "anon-1": false, "anon-2": true} {
		if _, err := s.Find(ctx, key, base); (err == nil) != alive {
			t.Errorf("%s: Find error %v, want alive %v", key, err, alive)
		}
	}
	if n := loggedOut.Load(); n != 1 {
		t.Errorf("OnEvictLoggedIn reported %d, want 1", n)
	}
	if anon, users := s.Evictions(); anon != 1 || users != 1 {
		t.Errorf("Evictions() = %d, %d; want 1, 1", anon, users)
	}

	tombs := newStore(t, memstore.Options{MaxSessions: 2})
	for _, key := range []string{"x", "y"} {
		mustCreate(t, tombs, key, record("", far))
		if err := tombs.Rotate(ctx, key, 1, "0123456789ab", base.Add(2*time.Minute), base); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, tombs, "new", record("", far))
	if n := tombs.Len(); n != 3 {
		t.Errorf("Len = %d, want 3: two tombstones in their window and the new session", n)
	}
	if _, err := tombs.Find(ctx, "new", base); err != nil {
		t.Errorf("the created session: %v", err)
	}
}
