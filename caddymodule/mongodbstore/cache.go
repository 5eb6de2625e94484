package mongodbstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/caddymodule/internal/cfarg"
	"github.com/sessiongate/caddy-session/store/cachestore"
	"github.com/sessiongate/caddy-session/store/mongostore"
)

// CacheConfig turns on the per-instance read cache (package cachestore):
// a hot session is served from memory instead of one find per request.
// Writes stay compare-and-set against MongoDB, so the cache can cost a
// conflict (and a re-read past it), never a lost write or a revived
// session. Where the deployment has change streams (a replica set or a
// sharded cluster) other instances' writes reach the cache within the
// stream's lag; otherwise within TTL. docs/scaling.md has the numbers.
//
// The cache belongs to the collection on this Caddy instance, not to one
// session block: every store with the same URI, timeouts, database,
// collection and cache settings shares one cache (and one store on the
// pooled client), across handlers and reloads.
type CacheConfig struct {
	// TTL is how stale a cached read may be at most: the bound while no
	// change stream is live, and the fall-back bound in stream mode.
	// Between 10ms and 1m. Default 1s.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Size bounds the cached sessions per instance (least recently used
	// go first); memory is about Size times the average session size.
	// Default 100000; an explicit 0 or a negative number is refused.
	Size *int `json:"size,omitempty"`
}

// validate checks the raw settings.
func (c *CacheConfig) validate() error {
	if c == nil {
		return nil
	}
	if ttl := time.Duration(c.TTL); ttl != 0 && (ttl < cachestore.MinTTL || ttl > cachestore.MaxTTL) {
		return fmt.Errorf("mongodb session store: cache ttl %s is out of range: it must be between %s and %s", ttl, cachestore.MinTTL, cachestore.MaxTTL)
	}
	if c.Size != nil && *c.Size <= 0 {
		return fmt.Errorf("mongodb session store: cache size must be positive, got %d", *c.Size)
	}
	return nil
}

func (c *CacheConfig) options() cachestore.Options {
	opts := cachestore.Options{TTL: time.Duration(c.TTL)}
	if c.Size != nil {
		opts.Size = *c.Size
	}
	return opts
}

// parseCache reads `cache [<ttl>] { size <n> }`; its checks are
// Validate's.
func parseCache(d *caddyfile.Dispenser) (*CacheConfig, error) {
	c := new(CacheConfig)
	if d.NextArg() {
		ttl, err := caddy.ParseDuration(d.Val())
		if err != nil {
			return nil, d.Errf("bad cache ttl %q: want a duration such as 1s", d.Val())
		}
		c.TTL = caddy.Duration(ttl)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "size" {
			return nil, d.Errf("unknown cache option '%s'", d.Val())
		}
		v, err := cfarg.One(d)
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, d.Errf("bad cache size %q: want a number of sessions", v)
		}
		c.Size = &n
	}
	return c, nil
}

// caches holds one sharedCache per client, database, collection and
// cache settings.
var caches = caddy.NewUsagePool()

// sharedCache is a cache with the store it fronts (its own, on the pooled
// client) and the change stream that keeps it fresh.
type sharedCache struct {
	st     *mongostore.Store
	cache  *cachestore.Cache
	stop   context.CancelFunc
	done   chan struct{}
	name   string
	stream *streamState
}

// Destruct stops the change stream and the store's background work; the
// client is the client pool's.
func (sc *sharedCache) Destruct() error {
	sc.stop()
	<-sc.done
	return sc.st.Close(context.Background())
}

// cacheKey names a shared cache: the client's pool key (it hashes the
// URI), where the sessions are, every store setting that changes what is
// read or written (hashed: the sealing keys are secrets), and the cache
// settings.
func cacheKey(clientKey string, opts mongostore.Options, c cachestore.Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v\x00%s\x00%t\x00%x", opts.Database, opts.Collection, opts.WriteConcern,
		opts.SweepInterval, opts.OpTimeout, opts.RequireSealed, opts.SubjectKey)
	for _, k := range opts.EncryptionKeys {
		fmt.Fprintf(h, "\x00%x", k)
	}
	return fmt.Sprintf("%s/%x/%s/%d", clientKey, h.Sum(nil), c.TTL, c.Size)
}

// openCache returns the shared cache for the settings, making it (and
// starting its change stream) for the first user.
func openCache(ctx caddy.Context, key string, client *mongo.Client, opts mongostore.Options, copts cachestore.Options) (*sharedCache, error) {
	val, _, err := caches.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := mongostore.New(client, opts)
		if err != nil {
			return nil, err
		}
		coll := st.Collection()
		sc := &sharedCache{
			st: st, cache: cachestore.New(st, copts), done: make(chan struct{}),
			name: coll.Database().Name() + "." + coll.Name(), stream: new(streamState),
		}
		var bg context.Context
		bg, sc.stop = context.WithCancel(context.Background())
		mode := sc.modeLogger(ctx.Logger())
		go func() {
			defer close(sc.done)
			sc.cache.Follow(bg, st, mode)
		}()
		return sc, nil
	})
	if err != nil {
		return nil, err
	}
	sc := val.(*sharedCache)
	registerCacheMetrics(ctx, sc)
	return sc, nil
}

// streamState is the change stream's state for the metrics: 1 live, 0 not.
type streamState struct {
	mu   sync.Mutex
	live bool
}

// modeLogger logs each change of the cache's mode once.
func (sc *sharedCache) modeLogger(log *zap.Logger) cachestore.ModeFunc {
	ttl := sc.cache.TTL()
	return func(live bool, err error) {
		sc.stream.mu.Lock()
		sc.stream.live = live
		sc.stream.mu.Unlock()
		fields := []zap.Field{zap.String("store", sc.name), zap.Duration("ttl", ttl)}
		switch {
		case live:
			log.Info("session cache follows the change stream: a logout on another instance takes effect here within the stream's lag", fields...)
		case errors.Is(err, cachestore.ErrNoChangeStreams):
			log.Info(fmt.Sprintf("session cache in ttl mode (the server has no change streams): a logout on another instance takes effect here within %s", ttl), fields...)
		default:
			// err comes from mongostore, which keeps the URI out of it.
			log.Warn(fmt.Sprintf("session cache change stream down: flushed, in ttl mode (a logout elsewhere takes effect here within %s) until it opens", ttl), append(fields, zap.Error(err))...)
		}
	}
}

// Cache metrics (docs/operations.md): counted by the cache itself with
// atomic adds, read when Prometheus collects. A hit is counted, never
// timed.
var (
	cacheHits = prometheus.NewDesc("caddy_session_cache_hits_total",
		"Session reads served from the instance's read cache.", []string{"store"}, nil)
	cacheMisses = prometheus.NewDesc("caddy_session_cache_misses_total",
		"Session reads the read cache sent to the store.", []string{"store"}, nil)
	cacheInvalidations = prometheus.NewDesc("caddy_session_cache_invalidations_total",
		"Cached sessions dropped, by source: own (this instance's writes), stream (the change stream), ttl (older than the ttl).",
		[]string{"store", "source"}, nil)
	cacheEntries = prometheus.NewDesc("caddy_session_cache_entries",
		"Sessions held by the read cache.", []string{"store"}, nil)
	cacheStream = prometheus.NewDesc("caddy_session_cache_stream_up",
		"1 while the read cache follows a change stream, 0 in ttl mode.", []string{"store"}, nil)
)

// cacheCollector exports one shared cache's counters.
type cacheCollector struct{ sc *sharedCache }

// Describe implements prometheus.Collector.
func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheHits, cacheMisses, cacheInvalidations, cacheEntries, cacheStream} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s, name := c.sc.cache.Stats(), c.sc.name
	c.sc.stream.mu.Lock()
	up := 0.0
	if c.sc.stream.live {
		up = 1
	}
	c.sc.stream.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(cacheHits, prometheus.CounterValue, float64(s.Hits), name)
	ch <- prometheus.MustNewConstMetric(cacheMisses, prometheus.CounterValue, float64(s.Misses), name)
	ch <- prometheus.MustNewConstMetric(cacheInvalidations, prometheus.CounterValue, float64(s.Own), name, "own")
	ch <- prometheus.MustNewConstMetric(cacheInvalidations, prometheus.CounterValue, float64(s.Stream), name, "stream")
	ch <- prometheus.MustNewConstMetric(cacheInvalidations, prometheus.CounterValue, float64(s.Aged), name, "ttl")
	ch <- prometheus.MustNewConstMetric(cacheEntries, prometheus.GaugeValue, float64(s.Entries), name)
	ch <- prometheus.MustNewConstMetric(cacheStream, prometheus.GaugeValue, up, name)
}

// registerCacheMetrics registers the cache's collector in the config's
// registry. Stores sharing the cache register it once: a second
// registration of the same collector is refused, and that is fine. Two
// caches on one collection name (different settings) export the first.
func registerCacheMetrics(ctx caddy.Context, sc *sharedCache) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	if err := reg.Register(cacheCollector{sc}); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			ctx.Logger().Warn("session cache metrics not registered", zap.Error(err))
		}
	}
}
