package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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
// count the commands a request through Caddy costs. Tests set it before
// loading a config whose client is not pooled yet (a unique timeout gives
// a fresh pool entry) and clear it afterwards.
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
// itself in the key (the URI may contain a password). The timeout is
// part of it because it is a client setting (server selection).
func mongoClientKey(uri string, timeout time.Duration) string {
	sum := sha256.Sum256([]byte(uri + "\x00" + timeout.String()))
	return "mongodb:" + hex.EncodeToString(sum[:])
}

// MongoDBStore keeps sessions in a MongoDB collection (or any server
// speaking its wire protocol), shared by every Caddy instance pointed at
// it. See package mongostore for the document layout, expiry (TTL index,
// or a periodic sweep where the server refuses one) and failure behaviour:
// an unreachable server makes requests fail within Timeout with 503.
//
// The client is created lazily (start-up does not wait for MongoDB) and
// shared by every store with the same URI and timeout, across handlers
// and config reloads.
//
// Caddyfile syntax, inside a session handler block:
//
//	store mongodb [<uri>] {
//	    uri            <uri>          # required; {env.MONGODB_URI} works
//	    database       <name>         # default: caddy
//	    collection     <name>         # default: sessions
//	    timeout        <duration>     # per operation, default: 3s
//	    write_concern  majority|<n>|<tag>   # default: majority
//	    sweep_interval <duration>     # only without a TTL index, default: 1m
//	}
type MongoDBStore struct {
	// URI is the MongoDB connection string; TLS and authentication are
	// configured through it. Placeholders such as {env.MONGODB_URI} are
	// resolved at provision time. It is never logged.
	URI string `json:"uri,omitempty"`

	// Database holds the sessions collection. Default "caddy".
	Database string `json:"database,omitempty"`

	// Collection holds one document per session. Default "sessions".
	Collection string `json:"collection,omitempty"`

	// Timeout bounds every store operation, and is the driver's server
	// selection timeout: with MongoDB unreachable, a request needing the
	// store fails after about this long. Default 3s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// WriteConcern is the "w" of every write: "majority" (default), a
	// number of members such as "1", or a replica-set tag name. "0" is
	// refused.
	WriteConcern string `json:"write_concern,omitempty"`

	// SweepInterval is how often expired sessions are deleted when the
	// server refuses the TTL index. Default 1m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// Store is the open store; its methods are the module's store.Store
	// methods.
	store.Store `json:"-"`

	mstore  *mongostore.Store // the same store, for Close
	client  *mongo.Client
	poolKey string // set only while this module holds a pool reference
}

// CaddyModule returns the Caddy module information.
func (MongoDBStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.mongodb",
		New: func() caddy.Module { return new(MongoDBStore) },
	}
}

// Provision resolves placeholders, takes a reference to the shared client
// for the URI (creating it if this is the first user; creating does not
// dial) and sets up the store on it.
func (m *MongoDBStore) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	uri := strings.TrimSpace(repl.ReplaceKnown(m.URI, ""))
	if uri == "" {
		if m.URI != "" {
			return errors.New("mongodb session store: uri is empty after resolving placeholders (is the environment variable set?)")
		}
		return errors.New("mongodb session store: uri is required")
	}
	opts := mongostore.Options{
		URI:           uri,
		Database:      repl.ReplaceKnown(m.Database, ""),
		Collection:    repl.ReplaceKnown(m.Collection, ""),
		OpTimeout:     time.Duration(m.Timeout),
		WriteConcern:  repl.ReplaceKnown(m.WriteConcern, ""),
		SweepInterval: time.Duration(m.SweepInterval),
		Logger:        ctx.Logger(),
		Monitor:       testCommandMonitor, // nil outside tests
	}
	if err := validateMongoNames(opts.Database, opts.Collection); err != nil {
		return err
	}
	if _, err := mongostore.ParseWriteConcern(opts.WriteConcern); err != nil {
		return err
	}

	timeout := opts.OpTimeout
	if timeout <= 0 {
		timeout = mongostore.DefaultOpTimeout
	}
	key := mongoClientKey(uri, timeout)
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
	m.Store, m.mstore = st, st
	ctx.Logger().Info("mongodb session store ready",
		zap.String("database", st.Collection().Database().Name()),
		zap.String("collection", st.Collection().Name()),
		zap.Duration("timeout", timeout),
		zap.Bool("shared_client", shared))
	return nil
}

// Validate checks the settings that do not need placeholders resolved.
func (m *MongoDBStore) Validate() error {
	if m.Timeout < 0 {
		return errors.New("mongodb session store: timeout must not be negative")
	}
	if m.SweepInterval < 0 {
		return errors.New("mongodb session store: sweep_interval must not be negative")
	}
	return nil
}

// validateMongoNames refuses database and collection names MongoDB would
// only reject at the first request, so a typo fails the config load
// instead.
func validateMongoNames(db, coll string) error {
	if db != "" {
		if len(db) > 63 || strings.ContainsAny(db, "/\\. \"$*<>:|?\x00") {
			return fmt.Errorf("mongodb session store: invalid database name %q", db)
		}
	}
	if coll != "" {
		if strings.ContainsAny(coll, "$\x00") || strings.HasPrefix(coll, "system.") || strings.HasPrefix(coll, ".") || strings.HasSuffix(coll, ".") {
			return fmt.Errorf("mongodb session store: invalid collection name %q", coll)
		}
	}
	return nil
}

// Cleanup stops the store's background work and drops this module's
// reference to the shared client; the last reference disconnects it.
func (m *MongoDBStore) Cleanup() error {
	var errs []error
	if m.mstore != nil {
		// Close only stops goroutines: the client is the pool's.
		errs = append(errs, m.mstore.Close(context.Background()))
		m.Store, m.mstore = nil, nil
	}
	if m.poolKey != "" {
		// Clear the key first: a second Cleanup must not drop a
		// reference another module holds.
		key := m.poolKey
		m.poolKey = ""
		_, err := mongoClients.Delete(key)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. The
// dispenser starts at the module name:
//
//	mongodb [<uri>] {
//	    uri <uri>
//	    database <name>
//	    collection <name>
//	    timeout <duration>
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
	if m.URI == "" {
		return d.Err("mongodb store needs a uri")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MongoDBStore)(nil)
	_ caddy.Validator       = (*MongoDBStore)(nil)
	_ caddy.CleanerUpper    = (*MongoDBStore)(nil)
	_ caddyfile.Unmarshaler = (*MongoDBStore)(nil)
	_ store.Store           = (*MongoDBStore)(nil)
	_ caddy.Destructor      = pooledClient{}
)
