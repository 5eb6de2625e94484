package caddymodule

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/store"
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

// testCommandMonitor is a test hook, nil in production: when set, clients
// created by Provision hand it to the driver, so integration tests can
// count the commands a request through Caddy costs. A hook is the
// simplest way: the monitor is a driver client setting that no Caddy
// config can carry (configs are JSON), the tests load their configs
// through a real Caddy, and the client is created inside Provision. Tests
// set it before loading a config whose client is not pooled yet (a unique
// timeout gives a fresh pool entry) and clear it afterwards.
var testCommandMonitor *event.CommandMonitor

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
//	    database        <name>         # default: caddy
//	    collection      <name>         # default: sessions
//	    timeout         <duration>     # per operation, default: 3s
//	    connect_timeout <duration>     # connect and heartbeats, default: 10s
//	    write_concern   majority|<n>|<tag>   # default: majority
//	    sweep_interval  <duration>     # only without a TTL index, default: 1m
//	}
type MongoDBStore struct {
	// URI is the MongoDB connection string; TLS, authentication and the
	// connection pool (maxPoolSize, minPoolSize) are configured through
	// it. Placeholders such as {env.MONGODB_URI} are resolved at
	// provision time. It is never logged.
	URI string `json:"uri,omitempty"`

	// Database holds the sessions collection. Default "caddy".
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

	// Store is the open store behind a guard: its methods are the
	// module's store.Store methods, and after Cleanup they answer
	// store.ErrUnavailable.
	store.Store `json:"-"`

	guard   *guardedStore
	client  *mongo.Client
	poolKey string // set only while this module holds a pool reference
	// unloadDrain is how long the store stays usable after Cleanup, for
	// the requests of an unloaded config that are still running: Caddy
	// does not wait for them on a reload. Zero means defaultUnloadDrain;
	// negative releases at once (tests that check the pool).
	unloadDrain time.Duration
}

// defaultUnloadDrain bounds how long the requests of a config unloaded by
// a reload can still use its store; they are answered 503 after it.
const defaultUnloadDrain = 30 * time.Second

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
		Logger:         ctx.Logger(),
		Monitor:        testCommandMonitor, // nil outside tests
	}
	return opts, opts.Validate()
}

// Provision resolves placeholders, takes a reference to the shared client
// for the URI and timeouts (creating it if this is the first user;
// creating does not dial) and sets up the store on it.
func (m *MongoDBStore) Provision(ctx caddy.Context) error {
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

	st, err := mongostore.New(m.client, opts)
	if err != nil {
		return err // Caddy calls Cleanup, which drops the reference
	}
	m.guard = &guardedStore{st: st}
	m.Store = m.guard
	ctx.Logger().Info("mongodb session store ready",
		zap.String("database", st.Collection().Database().Name()),
		zap.String("collection", st.Collection().Name()),
		zap.Duration("timeout", timeout),
		zap.Bool("shared_client", shared))
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
	return nil
}

// Cleanup stops new calls (they answer store.ErrUnavailable), waits for
// the calls in flight (each is bounded by the timeout), stops the store's
// background work and drops this module's reference to the shared
// client; the last reference disconnects it.
func (m *MongoDBStore) Cleanup() error {
	guard, key := m.guard, m.poolKey
	m.poolKey = "" // a second Cleanup must not drop a reference another module holds
	if guard == nil && key == "" {
		return nil
	}
	drain := cmp.Or(m.unloadDrain, defaultUnloadDrain)
	if guard == nil || drain < 0 {
		return release(guard, key)
	}
	// A reload cleans up the old config while its requests still run;
	// they keep the store (and the pooled client) until the drain ends.
	m.guard = nil
	time.AfterFunc(drain, func() { _ = release(guard, key) })
	return nil
}

// release closes the guarded store (waiting for calls in flight) and drops
// the module's reference to the pooled client; the last one disconnects it.
func release(guard *guardedStore, key string) error {
	var errs []error
	if guard != nil {
		if st := guard.close(); st != nil {
			// Close only stops goroutines: the client is the pool's.
			errs = append(errs, st.Close(context.Background()))
		}
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
			m.URI, err = oneArg(d)
		case "database":
			m.Database, err = oneArg(d)
		case "collection":
			m.Collection, err = oneArg(d)
		case "timeout":
			m.Timeout, err = durationArg(d)
		case "connect_timeout":
			m.ConnectTimeout, err = durationArg(d)
		case "write_concern":
			m.WriteConcern, err = oneArg(d)
		case "sweep_interval":
			m.SweepInterval, err = durationArg(d)
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

// guardedStore passes calls to the store until the module is cleaned up,
// and lets Cleanup wait for the calls in flight before the client they
// use is released. Caddy does not wait for an old config's requests on a
// reload, so without it a request could use a store, or a client, that is
// gone.
type guardedStore struct {
	mu       sync.RWMutex
	st       *mongostore.Store // nil once closed
	inflight sync.WaitGroup
}

// acquire returns the store for one call, or errStoreUnloaded; the caller
// calls g.inflight.Done when the call ends.
func (g *guardedStore) acquire() (*mongostore.Store, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.st == nil {
		return nil, errStoreUnloaded
	}
	// Under the read lock, so close cannot have started waiting: Add
	// never races Wait.
	g.inflight.Add(1)
	return g.st, nil
}

// close refuses new calls, waits for the ones in flight and returns the
// store (nil if already closed).
func (g *guardedStore) close() *mongostore.Store {
	g.mu.Lock()
	st := g.st
	g.st = nil
	g.mu.Unlock()
	g.inflight.Wait()
	return st
}

// Find implements store.Store.
func (g *guardedStore) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	st, err := g.acquire()
	if err != nil {
		return nil, err
	}
	defer g.inflight.Done()
	return st.Find(ctx, key, now)
}

// Create implements store.Store.
func (g *guardedStore) Create(ctx context.Context, key string, rec *store.Record) error {
	st, err := g.acquire()
	if err != nil {
		return err
	}
	defer g.inflight.Done()
	return st.Create(ctx, key, rec)
}

// Update implements store.Store.
func (g *guardedStore) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	st, err := g.acquire()
	if err != nil {
		return err
	}
	defer g.inflight.Done()
	return st.Update(ctx, key, rec, now)
}

// Touch implements store.Store.
func (g *guardedStore) Touch(ctx context.Context, key string, expires, now time.Time) error {
	st, err := g.acquire()
	if err != nil {
		return err
	}
	defer g.inflight.Done()
	return st.Touch(ctx, key, expires, now)
}

// Rotate implements store.Store.
func (g *guardedStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	st, err := g.acquire()
	if err != nil {
		return err
	}
	defer g.inflight.Done()
	return st.Rotate(ctx, key, version, successor, until, now)
}

// Delete implements store.Store.
func (g *guardedStore) Delete(ctx context.Context, key string) error {
	st, err := g.acquire()
	if err != nil {
		return err
	}
	defer g.inflight.Done()
	return st.Delete(ctx, key)
}

// FindBySubject implements store.SubjectIndex.
func (g *guardedStore) FindBySubject(ctx context.Context, subject string, now time.Time) ([]store.Summary, error) {
	st, err := g.acquire()
	if err != nil {
		return nil, err
	}
	defer g.inflight.Done()
	return st.FindBySubject(ctx, subject, now)
}

// DeleteBySubject implements store.SubjectIndex.
func (g *guardedStore) DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error) {
	st, err := g.acquire()
	if err != nil {
		return 0, err
	}
	defer g.inflight.Done()
	return st.DeleteBySubject(ctx, subject, exceptKey)
}

// DeleteByHandle implements store.SubjectIndex.
func (g *guardedStore) DeleteByHandle(ctx context.Context, handle string) (int, error) {
	st, err := g.acquire()
	if err != nil {
		return 0, err
	}
	defer g.inflight.Done()
	return st.DeleteByHandle(ctx, handle)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MongoDBStore)(nil)
	_ caddy.Validator       = (*MongoDBStore)(nil)
	_ caddy.CleanerUpper    = (*MongoDBStore)(nil)
	_ caddyfile.Unmarshaler = (*MongoDBStore)(nil)
	_ store.Store           = (*MongoDBStore)(nil)
	_ store.SubjectIndex    = (*guardedStore)(nil)
	_ caddy.Destructor      = pooledClient{}
)
