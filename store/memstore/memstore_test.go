package memstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
	"github.com/sessiongate/caddy-session/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestConformanceShared runs the suite against one store shared by every
// subtest, as a shared database would be, to check the suite's keys do
// not collide.
func TestConformanceShared(t *testing.T) {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	storetest.Run(t, func(*testing.T) store.Store { return s })
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

func TestSweeper(t *testing.T) {
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := &fakeClock{now: base}
	s := memstore.New(memstore.Options{SweepInterval: time.Millisecond, Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()

	rec := func(expires time.Time) *store.Record {
		return &store.Record{Created: base, Updated: base, Expires: expires}
	}
	if err := s.Create(ctx, "short", rec(base.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "long", rec(base.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}

	// The sweeper runs many times while the clock stands still: nothing
	// is live-expired yet, so nothing may go.
	time.Sleep(20 * time.Millisecond)
	if n := s.Len(); n != 2 {
		t.Fatalf("before expiry: Len = %d, want 2", n)
	}

	// Move the clock to exactly the short session's expiry: it is dead.
	clock.Set(base.Add(time.Minute))
	waitFor(t, func() bool { return s.Len() == 1 })
	// Gone for real, not just hidden: Find at an earlier instant misses.
	if _, err := s.Find(ctx, "short", base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find swept session: %v, want ErrNotFound", err)
	}
	if _, err := s.Find(ctx, "long", base); err != nil {
		t.Fatalf("Find live session: %v", err)
	}
	// The key is free again.
	if err := s.Create(ctx, "short", rec(base.Add(2*time.Hour))); err != nil {
		t.Fatalf("Create on swept key: %v", err)
	}

	// After Close the sweeper stops: expiring everything removes nothing.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Set(base.Add(10 * time.Hour))
	time.Sleep(20 * time.Millisecond)
	if n := s.Len(); n != 2 {
		t.Fatalf("after Close: Len = %d, want 2", n)
	}
	// Sweep still works by hand.
	if n := s.Sweep(clock.Now()); n != 2 {
		t.Fatalf("Sweep removed %d, want 2", n)
	}
}

func TestSweeperDisabled(t *testing.T) {
	s := memstore.New(memstore.Options{SweepInterval: -1})
	if err := s.Create(t.Context(), "k", &store.Record{Expires: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if n := s.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1 (no sweeper)", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAppendToFoundValue checks the documented sharing invariant: an
// append to a value returned by Find must not reach stored bytes.
func TestAppendToFoundValue(t *testing.T) {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	now := time.Now()
	data := map[string]json.RawMessage{"a": json.RawMessage(`"aaa"`), "b": json.RawMessage(`"bbb"`)}
	if err := s.Create(t.Context(), "k", &store.Record{Data: data, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Find(t.Context(), "k", now)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range got.Data {
		_ = append(v, "XXXXXXXX"...)
		got.Data[k] = v
	}
	again, err := s.Find(t.Context(), "k", now)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Data["a"]) != `"aaa"` || string(again.Data["b"]) != `"bbb"` {
		t.Fatalf("stored values changed: a=%s b=%s", again.Data["a"], again.Data["b"])
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

// benchStore holds one session shaped like a typical one: a handful of
// small keys and one nested object.
func benchStore(b *testing.B) (*memstore.Store, time.Time) {
	s := memstore.New()
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	data := map[string]json.RawMessage{
		"user":  json.RawMessage(`{"id":42,"name":"Zoë","roles":["admin","dev"]}`),
		"cart":  json.RawMessage(`[{"sku":"A1","qty":2},{"sku":"B2","qty":1}]`),
		"flash": json.RawMessage(`"saved"`),
		"views": json.RawMessage(`17`),
		"csrf":  json.RawMessage(`"c2VjcmV0LXRva2Vu"`),
	}
	// Other sessions in the map, so lookups are not in a toy map.
	for i := range 10000 {
		if err := s.Create(context.Background(), fmt.Sprintf("%064x", i), &store.Record{Data: data, Expires: now.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	return s, now
}

func BenchmarkFind(b *testing.B) {
	s, now := benchStore(b)
	key := fmt.Sprintf("%064x", 4242)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Find(ctx, key, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindParallel measures Find under contention, to show whether
// the single RWMutex needs sharding.
func BenchmarkFindParallel(b *testing.B) {
	s, now := benchStore(b)
	ctx := context.Background()
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("%064x", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			key := keys[i%len(keys)]
			i++
			if _, err := s.Find(ctx, key, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
