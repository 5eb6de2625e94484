package cachestore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
	"github.com/sessiongate/caddy-session/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		m := memstore.New()
		t.Cleanup(func() { m.Close() })
		return New(m, Options{}).Store()
	})
}

// counting counts the reads that reach the inner store; gate, when set,
// holds a Find after it has read, until the channel is closed.
type counting struct {
	*memstore.Store
	finds atomic.Int64
	gate  chan struct{}
}

func (s *counting) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	s.finds.Add(1)
	rec, err := s.Store.Find(ctx, key, now)
	if s.gate != nil {
		<-s.gate
	}
	return rec, err
}

var ctx = context.Background()

const key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func setup(t *testing.T, opts Options) (*Cache, *counting, time.Time) {
	t.Helper()
	m := memstore.New()
	t.Cleanup(func() { m.Close() })
	inner := &counting{Store: m}
	now := time.Now().Truncate(time.Millisecond)
	rec := &store.Record{Data: []byte(`{"n":1}`), Created: now, Updated: now, Expires: now.Add(time.Hour)}
	if err := m.Create(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	return New(inner, opts), inner, now
}

func find(t *testing.T, c *Cache, now time.Time) *store.Record {
	t.Helper()
	rec, err := c.Find(ctx, key, now)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	return rec
}

func TestHitsWithinTTL(t *testing.T) {
	c, inner, now := setup(t, Options{TTL: time.Second})
	find(t, c, now)
	find(t, c, now.Add(999*time.Millisecond))
	if n := inner.finds.Load(); n != 1 {
		t.Fatalf("inner finds within the ttl = %d, want 1", n)
	}
	find(t, c, now.Add(time.Second))
	if n := inner.finds.Load(); n != 2 {
		t.Fatalf("inner finds after the ttl = %d, want 2", n)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 2 || s.Aged != 1 || s.Entries != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestExpiredEntryIsNotServed(t *testing.T) {
	c, _, now := setup(t, Options{TTL: time.Minute})
	find(t, c, now)
	c.SetLive(true) // even with a live stream, expiry is checked
	if _, err := c.Find(ctx, key, now.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find past expiry: %v, want ErrNotFound", err)
	}
}

// Another instance writes behind the cache's back: the stale version costs
// a conflict, and the re-read after it goes past the cache.
func TestStaleVersionCostsAConflictNeverAWrite(t *testing.T) {
	c, inner, now := setup(t, Options{TTL: time.Minute})
	old := find(t, c, now)
	next := *old
	next.Data = []byte(`{"n":2}`)
	if err := inner.Store.Update(ctx, key, &next, now); err != nil { // the other instance
		t.Fatal(err)
	}
	if got := find(t, c, now); string(got.Data) != `{"n":1}` {
		t.Fatalf("within the ttl the cache serves %s; the test needs the stale copy", got.Data)
	}
	mine := *old
	mine.Data = []byte(`{"n":1,"mine":true}`)
	if err := c.Update(ctx, key, &mine, now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update from a stale version: %v, want ErrConflict", err)
	}
	reread := find(t, c, now)
	if string(reread.Data) != `{"n":2}` || reread.Version != 2 {
		t.Fatalf("re-read after the conflict = %s v%d, want the other instance's write", reread.Data, reread.Version)
	}
	mine.Version, mine.Data = reread.Version, []byte(`{"n":2,"mine":true}`)
	if err := c.Update(ctx, key, &mine, now); err != nil {
		t.Fatalf("Update after the re-read: %v", err)
	}
	if got := find(t, c, now); string(got.Data) != `{"n":2,"mine":true}` {
		t.Fatalf("after both writes: %s", got.Data)
	}
}

func TestOwnWritesDropTheEntry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(c *Cache, rec *store.Record, now time.Time) error
		gone  bool
	}{
		{"update", func(c *Cache, rec *store.Record, now time.Time) error {
			next := *rec
			next.Data = []byte(`{"n":2}`)
			return c.Update(ctx, key, &next, now)
		}, false},
		{"touch", func(c *Cache, _ *store.Record, now time.Time) error {
			return c.Touch(ctx, key, now.Add(2*time.Hour), now)
		}, false},
		{"destroy", func(c *Cache, rec *store.Record, now time.Time) error {
			return c.Rotate(ctx, key, rec.Version, "", now, now)
		}, true},
		{"delete", func(c *Cache, _ *store.Record, _ time.Time) error { return c.Delete(ctx, key) }, true},
		{"delete by sid", func(c *Cache, _ *store.Record, _ time.Time) error {
			_, err := c.Store().(store.SidIndex).DeleteBySid(ctx, "idp-1")
			return err
		}, false},
		{"delete by handle", func(c *Cache, _ *store.Record, _ time.Time) error {
			_, err := c.Store().(store.SubjectIndex).DeleteByHandle(ctx, key[:12])
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, inner, now := setup(t, Options{TTL: time.Minute})
			rec := find(t, c, now)
			if err := tc.write(c, rec, now); err != nil {
				t.Fatal(err)
			}
			_, err := c.Find(ctx, key, now)
			if tc.gone && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Find after %s: %v, want ErrNotFound", tc.name, err)
			}
			if n := inner.finds.Load(); n != 2 {
				t.Fatalf("inner finds = %d, want 2 (the write dropped the entry)", n)
			}
		})
	}
}

// A read that raced a destroy must not put the session back in the cache.
func TestRacingReadDoesNotReviveADestroyedSession(t *testing.T) {
	c, inner, now := setup(t, Options{TTL: time.Minute})
	rec, _ := inner.Store.Find(ctx, key, now)
	inner.gate = make(chan struct{})
	done := make(chan *store.Record)
	go func() {
		got, _ := c.Find(ctx, key, now) // reads the live session, then waits
		done <- got
	}()
	for inner.finds.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := c.Rotate(ctx, key, rec.Version, "", now, now); err != nil {
		t.Fatal(err)
	}
	close(inner.gate)
	if got := <-done; got == nil {
		t.Fatal("the racing read should still return what it read")
	}
	if _, err := c.Find(ctx, key, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find after the destroy: %v, want ErrNotFound (revived from the cache)", err)
	}
}

func TestInvalidateAndLiveMode(t *testing.T) {
	c, inner, now := setup(t, Options{TTL: 50 * time.Millisecond})
	c.SetLive(true)
	find(t, c, now)
	find(t, c, now.Add(time.Minute)) // live: the ttl does not apply
	if n := inner.finds.Load(); n != 1 {
		t.Fatalf("inner finds in live mode = %d, want 1", n)
	}
	c.Invalidate(key)
	find(t, c, now)
	if n := inner.finds.Load(); n != 2 {
		t.Fatalf("inner finds after Invalidate = %d, want 2", n)
	}
	c.SetLive(false) // the stream broke: flush
	if s := c.Stats(); s.Entries != 0 || s.Stream != 2 {
		t.Fatalf("after the stream broke: %+v", s)
	}
}

func TestSizeBound(t *testing.T) {
	m := memstore.New()
	t.Cleanup(func() { m.Close() })
	c := New(m, Options{TTL: time.Minute, Size: shards})
	now := time.Now()
	for i := range 10 * shards {
		key := time.Duration(i).String()
		rec := &store.Record{Created: now, Updated: now, Expires: now.Add(time.Hour)}
		if err := m.Create(ctx, key, rec); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Find(ctx, key, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().Entries; n > shards {
		t.Fatalf("entries = %d, want at most %d", n, shards)
	}
}

func BenchmarkHit(b *testing.B) {
	m := memstore.New()
	defer m.Close()
	c := New(m, Options{TTL: time.Minute})
	now := time.Now()
	_ = m.Create(ctx, key, &store.Record{Created: now, Updated: now, Expires: now.Add(time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Find(ctx, key, now); err != nil {
			b.Fatal(err)
		}
	}
}

// What the sid index and the per-subject limit end is not served from the
// cache afterwards.
func TestSidAndLimitDropWhatTheyEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(c store.Store, now time.Time) (int, error)
	}{
		{"delete by sid", func(c store.Store, _ time.Time) (int, error) {
			return c.(store.SidIndex).DeleteBySid(ctx, "idp-1")
		}},
		{"limit per subject", func(c store.Store, now time.Time) (int, error) {
			return c.(store.SubjectLimiter).LimitSubject(ctx, "ann", 1, now)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := memstore.New()
			t.Cleanup(func() { m.Close() })
			c := New(m, Options{TTL: time.Minute})
			now := time.Now().Truncate(time.Millisecond)
			old := &store.Record{Subject: "ann", Sid: "idp-1", Created: now, Updated: now, Expires: now.Add(time.Hour)}
			newer := &store.Record{Subject: "ann", Created: now, Updated: now.Add(time.Second), Expires: now.Add(time.Hour)}
			if err := m.Create(ctx, key, old); err != nil {
				t.Fatal(err)
			}
			if err := m.Create(ctx, "f"+key[1:], newer); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Find(ctx, key, now); err != nil {
				t.Fatal(err)
			}
			if n, err := tc.end(c.Store(), now.Add(time.Second)); err != nil || n != 1 {
				t.Fatalf("ended %d, %v; want 1", n, err)
			}
			if _, err := c.Find(ctx, key, now); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Find of the ended session: %v, want ErrNotFound (served from the cache)", err)
			}
		})
	}
}
