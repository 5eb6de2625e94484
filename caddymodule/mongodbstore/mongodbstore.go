// Package mongodbstore is the Caddy module http.session.stores.mongodb:
// sessions in a MongoDB collection (package mongostore), shared by every
// Caddy instance pointed at it, on a client pooled by URI and timeouts
// across config reloads. It also gives the session handler the database
// that legacy sessions are adopted from (NewAdoptSource).
package mongodbstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/caddymodule/internal/cfarg"
	"github.com/sessiongate/caddy-session/internal/adopt"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/cachestore"
	"github.com/sessiongate/caddy-session/store/mongostore"
)

func init() {
	caddy.RegisterModule(MongoDBStore{})
}

// mongoClients holds one *mongo.Client (one connection pool) per URI and
// timeout, shared by every MongoDBStore in every config. On a reload the
// new config provisions (taking a reference) before the old one is
// cleaned up (dropping one), so the client survives the reload and no
// second pool is opened; it is disconnected when its last user goes.
var mongoClients = caddy.NewUsagePool()

// pooledClient lets a *mongo.Client live in a caddy.UsagePool.
type pooledClient struct {
	client *mongo.Client
}

// Destruct disconnects the client once no store uses it.
func (p pooledClient) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.client.Disconnect(ctx); err != nil {
		// The driver's error names hosts at most, never the URI.
		return fmt.Errorf("disconnecting MongoDB client: %v", err)
	}
	return nil
}

// mongoClientKey identifies a pooled client without holding the URI
// itself in the key (the URI may contain a password). The timeouts are
// part of it because they are client settings (server selection, and the
// connect timeout when one is set), so a reload that keeps the URI and
// the timeouts keeps the client and its connections.
func mongoClientKey(uri string, timeouts ...time.Duration) string {
	h := sha256.New()
	h.Write([]byte(uri))
	for _, t := range timeouts {
		h.Write([]byte("\x00" + t.String()))
	}
	return "mongodb:" + hex.EncodeToString(h.Sum(nil))
}

// MongoDBStore keeps sessions in a MongoDB collection (or any server
// speaking its wire protocol), shared by every Caddy instance pointed at
// it. See package mongostore and docs/storage.md for the document layout,
// expiry (TTL index, or a periodic sweep where the server refuses one) and
// failure behaviour: an unreachable server makes requests fail within
// Timeout with 503.
//
// The client is created lazily (start-up does not wait for MongoDB) and
// shared by every store with the same URI and timeouts, across handlers
// and config reloads. After a reload, the old config's requests still in
// flight finish on it; the client is released only when they have, and a
// call that comes later still answers 503 (store.ErrUnavailable), never
// a crash.
//
// Caddyfile syntax, inside a session handler block:
//
//	store mongodb [<uri>] {
//	    uri             <uri>          # required; {env.MONGODB_URI} works
//	    database        <name>         # default: the URI's database, else caddy
//	    collection      <name>         # default: sessions
//	    timeout         <duration>     # per operation, default: 3s
//	    connect_timeout <duration>     # connect and heartbeats, default: 10s
//	    write_concern   majority|<n>|<tag>   # default: majority
//	    sweep_interval  <duration>     # only without a TTL index, default: 1m
//	    encryption_key  <key> [<older keys>...]  # seal sessions at rest (docs/storage.md)
//	    subject_key     <key>          # required with encryption_key; never rotated
//	    require_sealed                 # documents without a seal are no session
//	    cache [<ttl>] {                # the read cache, off by default; ttl default: 1s
//	        size <n>                   # cached sessions per instance, default: 100000
//	    }
//	}
type MongoDBStore struct {
	// URI is the MongoDB connection string; TLS, authentication and the
	// connection pool (maxPoolSize, minPoolSize) are configured through
	// it. Placeholders such as {env.MONGODB_URI} are resolved at
	// provision time. It is never logged.
	URI string `json:"uri,omitempty"`

	// Database holds the sessions collection. Default: the database the
	// URI names (mongodb+srv://.../myapp), as MongoDB drivers do, else
	// "caddy".
	Database string `json:"database,omitempty"`

	// Collection holds one document per session. Default "sessions".
	Collection string `json:"collection,omitempty"`

	// Timeout bounds every store operation, and is the driver's server
	// selection timeout: with MongoDB unreachable, a request needing the
	// store fails after about this long. Default 3s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// ConnectTimeout bounds opening a connection and is the socket
	// timeout of the driver's heartbeats. It is longer than Timeout so a
	// short stall of the primary does not clear the connection pool.
	// Default 10s (at least Timeout).
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	// WriteConcern is the "w" of every write: "majority" (default), a
	// number of members such as "1", or a replica-set tag name. "0" is
	// refused. A value the server cannot meet (2 on a standalone server)
	// is logged at start-up, and writes then answer 503.
	WriteConcern string `json:"write_concern,omitempty"`

	// SweepInterval is how often expired sessions are deleted while no
	// TTL index exists (being built, or refused by the server). Default 1m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// EncryptionKey seals every session written (format 3,
	// docs/storage.md): the data, the subject and what else a session
	// records, with AES-256-GCM, bound to its document. The first key
	// seals; every key opens, so rotating is: add the new key after the
	// old one everywhere, then put it first, then drop the old one once
	// sessions have been written again or expired (docs/operations.md).
	// Each key is 32 random bytes written as 64 hex digits or in base64,
	// never a passphrase: `caddy session gen-secret` prints one.
	// Placeholders such as {env.SESSION_ENCRYPTION_KEY} are resolved at
	// provision time. Keys are never logged; log lines name them by key
	// id. Without it sessions are stored in the clear (format 2).
	EncryptionKey []string `json:"encryption_key,omitempty"`

	// SubjectKey is the key of the HMAC-SHA-256 under which sealed
	// sessions keep their subject and IdP session id, so revoke-all, the
	// admin API and back-channel logout find them whichever encryption
	// key sealed them. Required with EncryptionKey and refused without
	// it; same form as a key. It does not rotate: sessions stored under
	// another subject key are not found by subject.
	SubjectKey string `json:"subject_key,omitempty"`

	// RequireSealed makes documents without a seal (written before
	// EncryptionKey was set, or planted by someone who can write to the
	// collection) read as no session. Off by default so that switching
	// sealing on keeps the sessions written before; turn it on once they
	// have all been written again or expired.
	RequireSealed bool `json:"require_sealed,omitempty"`
	// Cache turns on the per-instance read cache (see CacheConfig). Off
	// by default.
	Cache *CacheConfig `json:"cache,omitempty"`

	// guard holds the open store: the module's store.Store and
	// store.SubjectIndex methods call it through guard.do, and once the
	// module is released they answer store.ErrUnavailable.
	guard     *guard // nil before Provision
	client    *mongo.Client
	poolKey   string // the pooled client's key, once Provision took a reference
	sealStore string // the store label of caddy_session_seal_failures_total
	cacheKey  string // the shared cache's key, once Provision took a reference
	cleaned   bool   // Cleanup ran
}

// unloadDrain is how long the store stays usable after Cleanup, for the
// requests of an unloaded config that are still running: Caddy does not
// wait for them on a reload; they are answered 503 after it. Negative
// releases at once. Only tests change it (to check the pool right after
// Cleanup); no config reaches it.
var unloadDrain = 30 * time.Second

// CaddyModule returns the Caddy module information.
func (MongoDBStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.mongodb",
		New: func() caddy.Module { return new(MongoDBStore) },
	}
}

// options resolves placeholders and returns the store options, checked by
// mongostore.Options.Validate: JSON and Caddyfile configs get the same
// errors.
func (m *MongoDBStore) options(ctx caddy.Context) (mongostore.Options, error) {
	repl := caddy.NewReplacer()
	uri := strings.TrimSpace(repl.ReplaceKnown(m.URI, ""))
	if uri == "" {
		if m.URI != "" {
			return mongostore.Options{}, errors.New("mongodb session store: uri is empty after resolving placeholders (is the environment variable set?)")
		}
		return mongostore.Options{}, errors.New("mongodb session store: uri is required")
	}
	opts := mongostore.Options{
		URI:            uri,
		Database:       repl.ReplaceKnown(m.Database, ""),
		Collection:     repl.ReplaceKnown(m.Collection, ""),
		OpTimeout:      time.Duration(m.Timeout),
		ConnectTimeout: time.Duration(m.ConnectTimeout),
		WriteConcern:   repl.ReplaceKnown(m.WriteConcern, ""),
		SweepInterval:  time.Duration(m.SweepInterval),
		RequireSealed:  m.RequireSealed,
		Logger:         ctx.Logger(),
	}
	var err error
	if opts.EncryptionKeys, opts.SubjectKey, err = m.keys(repl); err != nil {
		return mongostore.Options{}, err
	}
	return opts, opts.Validate()
}

// keys parses encryption_key and subject_key, placeholders resolved by
// repl (nil: the raw config, whose placeholders are left to Provision).
// Errors name the option and the key's position, never the key.
func (m *MongoDBStore) keys(repl *caddy.Replacer) (sealing [][]byte, subject []byte, err error) {
	parse := func(name, v string) ([]byte, error) {
		if repl != nil {
			v = strings.TrimSpace(repl.ReplaceKnown(v, ""))
		} else if strings.Contains(v, "{") {
			return nil, nil
		}
		if v == "" {
			return nil, fmt.Errorf("mongodb session store: %s is empty after resolving placeholders (is the environment variable set?)", name)
		}
		k, err := mongostore.ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("mongodb session store: %s: %w", name, err)
		}
		return k, nil
	}
	for i, v := range m.EncryptionKey {
		name := "encryption_key"
		if len(m.EncryptionKey) > 1 {
			name = fmt.Sprintf("encryption_key %d of %d", i+1, len(m.EncryptionKey))
		}
		k, err := parse(name, v)
		if err != nil {
			return nil, nil, err
		}
		sealing = append(sealing, k)
	}
	if m.SubjectKey != "" {
		if subject, err = parse("subject_key", m.SubjectKey); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case len(m.EncryptionKey) > 0 && m.SubjectKey == "":
		return nil, nil, errors.New("mongodb session store: encryption_key needs subject_key (the HMAC key of the subject index, which does not rotate with the encryption keys; `caddy session gen-secret` prints one)")
	case len(m.EncryptionKey) == 0 && m.SubjectKey != "":
		return nil, nil, errors.New("mongodb session store: subject_key without encryption_key: the subject is hashed only in sealed documents")
	case len(m.EncryptionKey) == 0 && m.RequireSealed:
		return nil, nil, errors.New("mongodb session store: require_sealed without encryption_key would refuse every session")
	}
	return sealing, subject, nil
}

// Provision resolves placeholders, takes a reference to the shared client
// for the URI and timeouts (creating it if this is the first user;
// creating does not dial) and sets up the store on it.
func (m *MongoDBStore) Provision(ctx caddy.Context) error {
	// Caddy validates after provisioning: refuse a bad cache before any
	// client exists.
	if err := m.Cache.validate(); err != nil {
		return err
	}
	opts, err := m.options(ctx)
	if err != nil {
		return err
	}
	timeout := cmp.Or(opts.OpTimeout, mongostore.DefaultOpTimeout)
	key := mongoClientKey(opts.URI, timeout)
	if opts.ConnectTimeout > 0 {
		key = mongoClientKey(opts.URI, timeout, opts.ConnectTimeout)
	}
	val, shared, err := mongoClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		c, err := mongostore.NewClient(opts)
		if err != nil {
			return nil, err
		}
		return pooledClient{client: c}, nil
	})
	if err != nil {
		return err // mongostore keeps the URI out of its errors
	}
	m.poolKey = key
	m.client = val.(pooledClient).client

	if len(opts.EncryptionKeys) > 0 {
		opts.OnSealFailure = func(kind string) { sealFailures.WithLabelValues(m.sealStore, kind).Inc() }
	}
	if err := m.open(ctx, opts); err != nil {
		return err // Caddy calls Cleanup, which drops the references
	}
	st := m.guard.st
	if len(opts.EncryptionKeys) > 0 {
		// Set before any request can reach the store.
		m.sealStore = st.Collection().Database().Name() + "." + st.Collection().Name()
		registerSealMetrics(ctx, m.sealStore)
	}
	// Not "ready" yet: the client dials in the background. The store logs
	// "ready" once the server answered, or that it is unavailable (and
	// again when it is back).
	ctx.Logger().Info("mongodb session store configured; connecting in the background",
		zap.String("database", st.Collection().Database().Name()),
		zap.String("collection", st.Collection().Name()),
		zap.Duration("timeout", timeout),
		zap.Bool("shared_client", shared),
		zap.Strings("encryption_key_ids", keyIDs(opts.EncryptionKeys)))
	return nil
}

// keyIDs names keys for a log line (mongostore.KeyID), never showing them.
func keyIDs(keys [][]byte) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = mongostore.KeyID(k)
	}
	return ids
}

// open sets up the guarded store: the module's own on the pooled client,
// or, with a cache, the shared cache's.
func (m *MongoDBStore) open(ctx caddy.Context, opts mongostore.Options) error {
	if m.Cache == nil {
		st, err := mongostore.New(m.client, opts)
		if err != nil {
			return err
		}
		m.guard = &guard{st: st, data: st}
		return nil
	}
	copts := m.Cache.options()
	key := cacheKey(m.poolKey, opts, copts)
	sc, err := openCache(ctx, key, m.client, opts, copts)
	if err != nil {
		return err
	}
	m.cacheKey = key
	m.guard = &guard{st: sc.st, data: sc.cache.Store().(dataStore), cache: sc.cache, shared: true}
	return nil
}

// Validate checks the settings that do not need placeholders resolved;
// Provision checks the rest (mongostore.Options.Validate).
func (m *MongoDBStore) Validate() error {
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"timeout", m.Timeout}, {"connect_timeout", m.ConnectTimeout}, {"sweep_interval", m.SweepInterval}} {
		if d.v < 0 {
			return fmt.Errorf("mongodb session store: %s must not be negative", d.name)
		}
	}
	if err := m.Cache.validate(); err != nil {
		return err
	}
	sealing, subject, err := m.keys(nil)
	if err != nil || slices.ContainsFunc(sealing, func(k []byte) bool { return k == nil }) || (m.SubjectKey != "" && subject == nil) {
		return err // placeholders: Provision checks the resolved keys
	}
	o := mongostore.Options{EncryptionKeys: sealing, SubjectKey: subject, RequireSealed: m.RequireSealed}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("mongodb session store: %w", err)
	}
	return nil
}

// Cleanup stops new calls (they answer store.ErrUnavailable), waits for
// the calls in flight (each is bounded by the timeout), stops the store's
// background work and drops this module's reference to the shared
// client; the last reference disconnects it. A reload cleans up the old
// config while its requests still run: they keep the store (and the
// pooled client) until unloadDrain has passed.
func (m *MongoDBStore) Cleanup() error {
	if m.cleaned {
		// A second Cleanup must not drop a reference another module holds.
		return nil
	}
	m.cleaned = true
	key := m.poolKey
	if unloadDrain < 0 || m.guard == nil {
		return m.release(key)
	}
	time.AfterFunc(unloadDrain, func() { _ = m.release(key) })
	return nil
}

// release closes the guarded store (waiting for calls in flight) and drops
// the module's reference to the pooled client under key; the last one
// disconnects it.
func (m *MongoDBStore) release(key string) error {
	var errs []error
	if st := m.guard.close(); st != nil && !m.guard.shared {
		// Close only stops goroutines: the client is the pool's.
		errs = append(errs, st.Close(context.Background()))
	}
	if m.cacheKey != "" {
		_, err := caches.Delete(m.cacheKey) // the last user closes the shared store
		errs = append(errs, err)
	}
	if key != "" {
		_, err := mongoClients.Delete(key)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens; it only
// assigns, checks are Validate's and Provision's. The dispenser starts at
// the module name:
//
//	mongodb [<uri>] {
//	    uri <uri>
//	    database <name>
//	    collection <name>
//	    timeout <duration>
//	    connect_timeout <duration>
//	    write_concern <w>
//	    sweep_interval <duration>
//	    encryption_key <key> [<older keys>...]
//	    subject_key <key>
//	    require_sealed
//	    cache [<ttl>] {
//	        size <n>
//	    }
//	}
func (m *MongoDBStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the module name, "mongodb"
	if d.NextArg() {
		m.URI = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "uri":
			m.URI, err = cfarg.One(d)
		case "database":
			m.Database, err = cfarg.One(d)
		case "collection":
			m.Collection, err = cfarg.One(d)
		case "timeout":
			m.Timeout, err = cfarg.Duration(d)
		case "connect_timeout":
			m.ConnectTimeout, err = cfarg.Duration(d)
		case "write_concern":
			m.WriteConcern, err = cfarg.One(d)
		case "sweep_interval":
			m.SweepInterval, err = cfarg.Duration(d)
		case "encryption_key":
			m.EncryptionKey = d.RemainingArgs()
			if len(m.EncryptionKey) == 0 {
				return d.ArgErr()
			}
		case "subject_key":
			m.SubjectKey, err = cfarg.One(d)
		case "require_sealed":
			if d.NextArg() {
				return d.ArgErr()
			}
			m.RequireSealed = true
		case "cache":
			m.Cache, err = parseCache(d)
		default:
			return d.Errf("unknown mongodb store option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// errStoreUnloaded is what a call answers after its module was cleaned
// up: a request of an old config that outlived a reload.
var errStoreUnloaded = fmt.Errorf("mongodb session store: %w: its configuration was unloaded", store.ErrUnavailable)

// guard passes calls to the store until the module is released, and lets
// release wait for the calls in flight before the client they use is
// dropped. Caddy does not wait for an old config's requests on a reload,
// so without it a request could use a store, or a client, that is gone.
type guard struct {
	mu       sync.RWMutex
	st       *mongostore.Store // nil once closed
	inflight sync.WaitGroup

	data   dataStore         // where sessions are read and written: st, or the cache in front of it
	cache  *cachestore.Cache // nil without a cache
	shared bool              // st is the shared cache's: release does not close it
}

// dataStore is what the module's session methods call: the store, or the
// cache in front of it (which has the same methods).
type dataStore interface {
	store.Store
	store.SubjectIndex
	store.SidIndex
	store.IdPSubIndex
	store.SubjectLimiter
	store.ReplayGuard
}

// use calls f with the data store, like do.
func (g *guard) use(f func(dataStore) error) error {
	return g.do(func(*mongostore.Store) error { return f(g.data) })
}

// do calls f with the store, or answers errStoreUnloaded before Provision
// and once the module is released; release waits for f to return.
func (g *guard) do(f func(*mongostore.Store) error) error {
	if g == nil {
		return errStoreUnloaded
	}
	g.mu.RLock()
	st := g.st
	if st != nil {
		// Under the read lock, so close cannot have started waiting: Add
		// never races Wait.
		g.inflight.Add(1)
	}
	g.mu.RUnlock()
	if st == nil {
		return errStoreUnloaded
	}
	defer g.inflight.Done()
	return f(st)
}

// close refuses new calls, waits for the ones in flight and returns the
// store (nil if already closed).
func (g *guard) close() *mongostore.Store {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	st := g.st
	g.st = nil
	g.mu.Unlock()
	g.inflight.Wait()
	return st
}

// Find implements store.Store.
func (m *MongoDBStore) Find(ctx context.Context, key string, now time.Time) (rec *store.Record, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		rec, err = s.Find(ctx, key, now)
		return err
	})
	return rec, err
}

// Create implements store.Store.
func (m *MongoDBStore) Create(ctx context.Context, key string, rec *store.Record) error {
	return m.guard.use(func(s dataStore) error { return s.Create(ctx, key, rec) })
}

// Update implements store.Store.
func (m *MongoDBStore) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	return m.guard.use(func(s dataStore) error { return s.Update(ctx, key, rec, now) })
}

// Touch implements store.Store.
func (m *MongoDBStore) Touch(ctx context.Context, key string, expires, now time.Time) error {
	return m.guard.use(func(s dataStore) error { return s.Touch(ctx, key, expires, now) })
}

// Rotate implements store.Store.
func (m *MongoDBStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	return m.guard.use(func(s dataStore) error { return s.Rotate(ctx, key, version, successor, until, now) })
}

// Delete implements store.Store.
func (m *MongoDBStore) Delete(ctx context.Context, key string) error {
	return m.guard.use(func(s dataStore) error { return s.Delete(ctx, key) })
}

// FindBySubject implements store.SubjectIndex.
func (m *MongoDBStore) FindBySubject(ctx context.Context, subject string, now time.Time) (list []store.Summary, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		list, err = s.FindBySubject(ctx, subject, now)
		return err
	})
	return list, err
}

// DeleteBySubject implements store.SubjectIndex.
func (m *MongoDBStore) DeleteBySubject(ctx context.Context, subject, exceptKey string) (n int, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		n, err = s.DeleteBySubject(ctx, subject, exceptKey)
		return err
	})
	return n, err
}

// DeleteByHandle implements store.SubjectIndex.
func (m *MongoDBStore) DeleteByHandle(ctx context.Context, handle string) (n int, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		n, err = s.DeleteByHandle(ctx, handle)
		return err
	})
	return n, err
}

// CacheOn reports whether the store has a read cache; the session handler
// then times only the reads that reach MongoDB (CacheHit, CacheLoad).
func (m *MongoDBStore) CacheOn() bool { return m.Cache != nil }

// CacheHit answers a read from the cache alone (false on a miss, counted).
func (m *MongoDBStore) CacheHit(key string, now time.Time) (rec *store.Record, ok bool) {
	_ = m.guard.do(func(*mongostore.Store) error {
		if m.guard.cache != nil {
			rec, ok = m.guard.cache.Hit(key, now)
		}
		return nil
	})
	return rec, ok
}

// CacheLoad reads past the cache and fills it (see cachestore.Cache.Load).
func (m *MongoDBStore) CacheLoad(ctx context.Context, key string, now time.Time) (rec *store.Record, err error) {
	err = m.guard.do(func(s *mongostore.Store) (err error) {
		if m.guard.cache == nil {
			rec, err = s.Find(ctx, key, now)
		} else {
			rec, err = m.guard.cache.Load(ctx, key, now)
		}
		return err
	})
	return rec, err
}

// Sealing reports whether the store seals sessions (encryption_key).
func (m *MongoDBStore) Sealing() bool { return len(m.EncryptionKey) > 0 }

// Reseal reseals a batch of sessions under the first encryption key (see
// mongostore.Store.Reseal), for the admin API's POST /session/reseal.
func (m *MongoDBStore) Reseal(ctx context.Context, batch int, after string, now time.Time) (resealed, skipped int, next string, err error) {
	err = m.guard.do(func(s *mongostore.Store) (err error) {
		resealed, skipped, next, err = s.Reseal(ctx, batch, after, now)
		return err
	})
	return resealed, skipped, next, err
}

// Ready returns a channel closed once the store has finished its start-up
// checks (see mongostore.Store.Ready); a released module's is closed.
func (m *MongoDBStore) Ready() <-chan struct{} {
	var ready <-chan struct{} = closed
	_ = m.guard.do(func(s *mongostore.Store) error {
		ready = s.Ready()
		return nil
	})
	return ready
}

// closed is a closed channel.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// DescribeStore names the store for metrics and the admin API: its
// database.collection, and an identity shared by the stores on the same
// server (by URI) and collection. The URI is only hashed into the
// identity, never kept.
func (m *MongoDBStore) DescribeStore() (name, id string, inProcess bool) {
	name = "mongodb"
	_ = m.guard.do(func(s *mongostore.Store) error {
		coll := s.Collection()
		name = coll.Database().Name() + "." + coll.Name()
		return nil
	})
	uri := strings.TrimSpace(caddy.NewReplacer().ReplaceKnown(m.URI, ""))
	sum := sha256.Sum256([]byte(uri))
	return name, "mongodb:" + hex.EncodeToString(sum[:8]) + "/" + name, false
}

// NewAdoptSource builds the source of one adopt block on the store's
// database (the handler's adopt-side interface). It refuses a block that
// reads the store's own sessions collection: adoption would claim and
// sweep the gateway's sessions.
func (m *MongoDBStore) NewAdoptSource(cfg adopt.Config, keys [][]byte, check adopt.Check) (src *adopt.Source, err error) {
	err = m.guard.do(func(s *mongostore.Store) error {
		db := s.Collection().Database()
		own := s.Collection().Name()
		if cfg.CollectionName() == own && (cfg.Database == "" || cfg.Database == db.Name()) {
			return fmt.Errorf("adopt %s: collection %q in database %q is the session store's own; set the legacy app's collection (and database)", cfg.Kind, own, db.Name())
		}
		src, err = adopt.New(cfg, keys, db, check)
		return err
	})
	return src, err
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MongoDBStore)(nil)
	_ caddy.Validator       = (*MongoDBStore)(nil)
	_ caddy.CleanerUpper    = (*MongoDBStore)(nil)
	_ caddyfile.Unmarshaler = (*MongoDBStore)(nil)
	_ store.Store           = (*MongoDBStore)(nil)
	_ store.SubjectIndex    = (*MongoDBStore)(nil)
	_ caddy.Destructor      = pooledClient{}
)
