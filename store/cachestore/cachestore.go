// Package cachestore keeps recently read sessions of another store in
// memory, so a hot session costs no round trip to the store.
//
// It is a store.Store in front of a store.Store (in practice the MongoDB
// store, shared by every `session` handler that uses the same connection
// pool). Its rules, which the tests in this package and the conformance
// suite check:
//
//   - Find serves a live record from memory when it is younger than the
//     staleness bound (TTL), measured with the caller's now. Otherwise it
//     reads the inner store and keeps what it found.
//   - Writes always go to the inner store, compare-and-set as before. Every
//     write this instance makes (Update, Touch, Rotate, Delete, the subject
//     index's deletes) drops the key's entry inside the same call, whether
//     it succeeded or not. A write that lost its compare-and-set because the
//     cached version was stale therefore makes the caller's re-read go past
//     the cache: the cache can cost a conflict, never a lost write.
//   - A read that raced a write never fills the cache with what it read:
//     every drop advances its shard's generation, and a fill is kept only if
//     the generation did not move while the inner store was read. So a
//     destroyed session is never revived from memory.
//   - Other instances' writes reach this one through Invalidate (a change
//     stream, see Watch) or, without one, only through the TTL: a logout on
//     another instance takes effect here within TTL.
//
// Memory is bounded by Size entries (least recently used go first); an
// entry holds one record, so the bound is about Size times the average
// session size.
package cachestore

import (
	"container/list"
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// Defaults and bounds of Options.
const (
	DefaultTTL  = time.Second
	DefaultSize = 100_000
	MinTTL      = 10 * time.Millisecond
	MaxTTL      = time.Minute
)

// shards splits the cache so concurrent requests rarely share a lock, and
// so a drop only holds back the fills of one shard in shards.
const shards = 64

// Options configure a Store.
type Options struct {
	// TTL is how old, at most, a cached record may be when it is served
	// while no change stream is live. Default 1s.
	TTL time.Duration
	// Size bounds the number of cached records. Default 100000.
	Size int
}

// Stats are the cache's counters since it was made. All are monotonic
// except Entries.
type Stats struct {
	Hits, Misses int64
	// Invalidations by source: this instance's own writes, the change
	// stream (other instances' writes, or a flush when it broke), and
	// entries found older than the TTL.
	Own, Stream, Aged int64
	Entries           int64
}

// Cache is a caching store.Store. Make one with New; hand Store() to
// the gateway.
type Cache struct {
	inner  store.Store
	ttl    time.Duration
	seed   maphash.Seed
	shards [shards]shard
	live   atomic.Bool // a change stream is delivering invalidations

	hits, misses, own, stream, aged atomic.Int64
}

type shard struct {
	mu    sync.Mutex
	gen   uint64 // advanced by every drop in the shard
	max   int
	items map[string]*list.Element
	lru   list.List // of *entry, most recently used first
}

type entry struct {
	key     string
	rec     *store.Record
	fetched time.Time // the caller's now when it was read
}

// New returns a cache in front of inner.
func New(inner store.Store, opts Options) *Cache {
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Size <= 0 {
		opts.Size = DefaultSize
	}
	c := &Cache{inner: inner, ttl: opts.TTL, seed: maphash.MakeSeed()}
	per := max(1, (opts.Size+shards-1)/shards)
	for i := range c.shards {
		c.shards[i].max = per
		c.shards[i].items = make(map[string]*list.Element)
	}
	return c
}

// Store returns the cache as the store the gateway uses: c itself, or c
// with the inner store's optional interfaces (subject index; sid and IdP
// subject indexes, limiter and replay guard) when it has them.
func (c *Cache) Store() store.Store {
	idx, ok := c.inner.(store.SubjectIndex)
	if !ok {
		return c
	}
	sid, ok1 := c.inner.(store.SidIndex)
	limiter, ok2 := c.inner.(store.SubjectLimiter)
	replay, ok3 := c.inner.(store.ReplayGuard)
	isub, ok4 := c.inner.(store.IdPSubIndex)
	if ok1 && ok2 && ok3 && ok4 {
		return &full{indexed: indexed{Cache: c, index: idx}, sid: sid, isub: isub, limiter: limiter, replay: replay}
	}
	return &indexed{Cache: c, index: idx}
}

// Unwrap returns the store the cache is in front of.
func (c *Cache) Unwrap() store.Store { return c.inner }

func (c *Cache) shard(key string) *shard {
	return &c.shards[maphash.String(c.seed, key)%shards]
}

// Find implements store.Store: Hit, or Load on a miss.
func (c *Cache) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	if rec, ok := c.Hit(key, now); ok {
		return rec, nil
	}
	return c.Load(ctx, key, now)
}

// Hit returns the cached record under key when it is live at now and
// fresh enough, counting the hit or the miss. It never reads the store.
func (c *Cache) Hit(key string, now time.Time) (*store.Record, bool) {
	sh := c.shard(key)
	sh.mu.Lock()
	el, ok := sh.items[key]
	if !ok {
		sh.mu.Unlock()
		c.misses.Add(1)
		return nil, false
	}
	e := el.Value.(*entry)
	if !e.rec.Expires.After(now) || (!c.live.Load() && now.Sub(e.fetched) >= c.ttl) {
		sh.remove(el)
		sh.mu.Unlock()
		c.aged.Add(1)
		c.misses.Add(1)
		return nil, false
	}
	sh.lru.MoveToFront(el)
	sh.mu.Unlock()
	c.hits.Add(1)
	return e.rec, true
}

// Load reads key from the store, past the cache, and caches what it found
// unless a write or an invalidation of the shard came in between.
func (c *Cache) Load(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	sh := c.shard(key)
	sh.mu.Lock()
	gen := sh.gen
	sh.mu.Unlock()
	rec, err := c.inner.Find(ctx, key, now)
	if err != nil {
		return nil, err
	}
	c.fill(sh, gen, &entry{key: key, rec: rec, fetched: now})
	return rec, nil
}

// fill keeps e unless the shard saw a drop since gen was read.
func (c *Cache) fill(sh *shard, gen uint64, e *entry) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	if el, ok := sh.items[e.key]; ok {
		sh.remove(el)
	}
	sh.items[e.key] = sh.lru.PushFront(e)
	for sh.lru.Len() > sh.max {
		sh.remove(sh.lru.Back())
	}
}

func (sh *shard) remove(el *list.Element) {
	delete(sh.items, el.Value.(*entry).key)
	sh.lru.Remove(el)
}

// drop forgets key and holds back fills that started before it.
func (c *Cache) drop(key string, counter *atomic.Int64) {
	sh := c.shard(key)
	sh.mu.Lock()
	sh.gen++
	if el, ok := sh.items[key]; ok {
		sh.remove(el)
		counter.Add(1)
	}
	sh.mu.Unlock()
}

// dropWhere forgets every entry whose key satisfies match, in every shard.
func (c *Cache) dropWhere(match func(key string) bool, counter *atomic.Int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		for key, el := range sh.items {
			if match(key) {
				sh.remove(el)
				counter.Add(1)
			}
		}
		sh.mu.Unlock()
	}
}

// Create implements store.Store. A new key has nothing cached; the drop
// still holds back a fill of a read that raced the create.
func (c *Cache) Create(ctx context.Context, key string, rec *store.Record) error {
	defer c.drop(key, &c.own)
	return c.inner.Create(ctx, key, rec)
}

// Update implements store.Store.
func (c *Cache) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	defer c.drop(key, &c.own)
	return c.inner.Update(ctx, key, rec, now)
}

// Touch implements store.Store.
func (c *Cache) Touch(ctx context.Context, key string, expires, now time.Time) error {
	defer c.drop(key, &c.own)
	return c.inner.Touch(ctx, key, expires, now)
}

// Rotate implements store.Store.
func (c *Cache) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	defer c.drop(key, &c.own)
	return c.inner.Rotate(ctx, key, version, successor, until, now)
}

// Delete implements store.Store.
func (c *Cache) Delete(ctx context.Context, key string) error {
	defer c.drop(key, &c.own)
	return c.inner.Delete(ctx, key)
}

// Invalidate forgets key because another instance changed it. A change
// stream calls it for every event.
func (c *Cache) Invalidate(key string) { c.drop(key, &c.stream) }

// Flush forgets everything: the change stream broke, or delivered an event
// that could not be read, so any entry may be stale.
func (c *Cache) Flush() { c.dropWhere(func(string) bool { return true }, &c.stream) }

// SetLive says whether a change stream is delivering invalidations. While
// it is, entries are served until evicted (or their session expires);
// otherwise they are served for at most the TTL. Turning it off flushes.
func (c *Cache) SetLive(live bool) {
	if !c.live.Swap(live) || live {
		return
	}
	c.Flush()
}

// Live reports whether the cache runs on a change stream.
func (c *Cache) Live() bool { return c.live.Load() }

// TTL returns the staleness bound without a change stream.
func (c *Cache) TTL() time.Duration { return c.ttl }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(),
		Own: c.own.Load(), Stream: c.stream.Load(), Aged: c.aged.Load(),
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		s.Entries += int64(sh.lru.Len())
		sh.mu.Unlock()
	}
	return s
}

// indexed is a cache whose inner store has a subject index. The index's
// deletes drop what they may have ended: everything for a subject (the
// cache cannot tell which keys a subject has), the handle's keys for a
// handle.
type indexed struct {
	*Cache
	index store.SubjectIndex
}

// FindBySubject implements store.SubjectIndex; listings are never cached.
func (c *indexed) FindBySubject(ctx context.Context, subject string, now time.Time) ([]store.Summary, error) {
	return c.index.FindBySubject(ctx, subject, now)
}

// DeleteBySubject implements store.SubjectIndex.
func (c *indexed) DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error) {
	defer c.dropWhere(func(key string) bool { return key != exceptKey }, &c.own)
	return c.index.DeleteBySubject(ctx, subject, exceptKey)
}

// DeleteByHandle implements store.SubjectIndex.
func (c *indexed) DeleteByHandle(ctx context.Context, handle string) (int, error) {
	defer c.dropWhere(func(key string) bool { return strings.HasPrefix(key, handle) }, &c.own)
	return c.index.DeleteByHandle(ctx, handle)
}

// Interface guards.
var (
	_ store.Store        = (*Cache)(nil)
	_ store.SubjectIndex = (*indexed)(nil)
)

// full is a cache whose inner store also ends sessions by IdP session id
// and IdP subject, bounds sessions per subject and remembers one-time ids
// (the MongoDB store). Deletes by sid, IdP subject or limit flush: the
// cache cannot tell which keys they ended.
type full struct {
	indexed
	sid     store.SidIndex
	isub    store.IdPSubIndex
	limiter store.SubjectLimiter
	replay  store.ReplayGuard
}

// DeleteBySid implements store.SidIndex.
func (c *full) DeleteBySid(ctx context.Context, sid string) (int, error) {
	defer c.dropWhere(func(string) bool { return true }, &c.own)
	return c.sid.DeleteBySid(ctx, sid)
}

// DeleteByIdPSub implements store.IdPSubIndex.
func (c *full) DeleteByIdPSub(ctx context.Context, sub string) (int, error) {
	defer c.dropWhere(func(string) bool { return true }, &c.own)
	return c.isub.DeleteByIdPSub(ctx, sub)
}

// LimitSubject implements store.SubjectLimiter.
func (c *full) LimitSubject(ctx context.Context, subject string, n int, now time.Time) (int, error) {
	ended, err := c.limiter.LimitSubject(ctx, subject, n, now)
	if ended > 0 || err != nil {
		c.dropWhere(func(string) bool { return true }, &c.own)
	}
	return ended, err
}

// FirstUse implements store.ReplayGuard; it is never cached.
func (c *full) FirstUse(ctx context.Context, id string, until, now time.Time) (bool, error) {
	return c.replay.FirstUse(ctx, id, until, now)
}

var (
	_ store.SidIndex       = (*full)(nil)
	_ store.IdPSubIndex    = (*full)(nil)
	_ store.SubjectLimiter = (*full)(nil)
	_ store.ReplayGuard    = (*full)(nil)
)
