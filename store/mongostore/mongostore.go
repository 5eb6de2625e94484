// Package mongostore is a store.Store kept in MongoDB (or any server that
// speaks its wire protocol), using the official Go driver v2. Every Caddy
// instance pointed at the same collection sees the same sessions.
//
// # Documents
//
// One document per session:
//
//	{
//	  _id:     "<store key: hex SHA-256 of the session token>",
//	  data:    { <session data as a BSON sub-document> },
//	  created: ISODate(...),
//	  updated: ISODate(...),
//	  expires: ISODate(...),
//	  maxAge:  <the session's own idle timeout in milliseconds, 0 = default>,
//	  v:       <version: 1 on create, +1 per change>
//	}
//
// data is a real sub-document, so operators can query it
// (db.sessions.find({"data.user.id": 42})). JSON numbers become int32,
// int64 or double; strings, booleans, null, arrays and objects map to
// their BSON kinds. Object keys MongoDB cannot take as field names (those
// holding '$', '.', NUL, or empty) are stored escaped as %XX, at any
// depth, and come back exactly; '%' itself is escaped too, so a key like
// "100%" is stored as "100%25". Other fields may be added to the
// document by later versions; readers ignore fields they do not know.
//
// # Round trips
//
// Find is one find command, Create one insert, Apply one update (the
// change becomes $set/$unset on data.<key> plus expiry, version and
// max-age, filtered on _id and not-expired, never an upsert, so a deleted
// or expired session is never brought back), Touch one update and Delete
// one delete.
//
// # Expiry
//
// Reads and updates filter on expires themselves, so an expired session
// is invisible at once. Expired documents are removed by a TTL index on
// expires, created in the background when the store starts. A server that
// refuses the index (FerretDB answers NotImplemented; Azure Cosmos DB and
// others have limits of their own) is logged, and the store falls back to
// deleting expired documents itself every SweepInterval.
//
// # Failures
//
// Every call is bounded by Options.OpTimeout, which is also the driver's
// server-selection timeout (never the driver's default 30 s). Errors that
// mean the server could not be reached or did not answer in time wrap
// store.ErrUnavailable. The client reconnects by itself when the server
// comes back. Errors and logs never contain the MongoDB URI.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/store"
)

// Defaults for the zero values of Options.
const (
	DefaultDatabase      = "caddy"
	DefaultCollection    = "sessions"
	DefaultOpTimeout     = 3 * time.Second
	DefaultWriteConcern  = "majority"
	DefaultSweepInterval = time.Minute
)

// Options configure a Store. Only URI is required (by NewClient and Open);
// every other field has a documented default.
type Options struct {
	// URI is the MongoDB connection string; TLS, authentication, replica
	// set and pool settings come through it. It may hold a password: the
	// store never puts it in an error or a log line.
	URI string

	// Database holds the sessions collection. Default "caddy".
	Database string

	// Collection holds one document per session. Default "sessions".
	Collection string

	// OpTimeout bounds each store call, and is the client's server
	// selection and connect timeout, so a down server costs a request at
	// most about this long. Default 3s.
	OpTimeout time.Duration

	// WriteConcern is the "w" of every write: "majority" (the default),
	// a number of members such as "1", or a replica-set tag name. "0"
	// (unacknowledged) is refused: the store has to know whether an
	// update matched a live session.
	WriteConcern string

	// SweepInterval is how often expired documents are deleted when the
	// server refuses the TTL index (or DisableTTLIndex is set). Default
	// one minute.
	SweepInterval time.Duration

	// DisableTTLIndex skips the TTL index and always sweeps, for servers
	// whose TTL support is limited without saying so.
	DisableTTLIndex bool

	// Logger receives the store's few log lines (TTL index refused,
	// sweep failures). Default: no logging.
	Logger *zap.Logger

	// Monitor, if set, is handed to the driver to observe every command
	// (NewClient and Open only). Tests use it to count round trips.
	Monitor *event.CommandMonitor

	// Now is the sweeper's clock. Default time.Now. Store methods take the
	// time from their callers and never read it.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.Collection == "" {
		o.Collection = DefaultCollection
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.WriteConcern == "" {
		o.WriteConcern = DefaultWriteConcern
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ParseWriteConcern turns the WriteConcern option into the driver's
// value: "majority", a positive member count, or a tag-set name. It
// refuses "0", which would make updates unverifiable.
func ParseWriteConcern(w string) (*writeconcern.WriteConcern, error) {
	switch w {
	case "", DefaultWriteConcern:
		return writeconcern.Majority(), nil
	}
	if n, err := strconv.Atoi(w); err == nil {
		if n < 1 {
			return nil, fmt.Errorf("mongostore: write concern %q: must be at least 1 (acknowledged writes)", w)
		}
		return &writeconcern.WriteConcern{W: n}, nil
	}
	return &writeconcern.WriteConcern{W: w}, nil
}

// NewClient returns a driver client for opts.URI configured for session
// traffic: server selection and connect timeouts of OpTimeout, and
// opts.Monitor if set. It does not dial: connections are made in the
// background and on first use, so a down server does not fail start-up.
// The caller disconnects the client when done; several Stores may share
// it (see New).
func NewClient(opts Options) (*mongo.Client, error) {
	opts = opts.withDefaults()
	red := newRedactor(opts.URI)
	if opts.URI == "" {
		return nil, errors.New("mongostore: no MongoDB URI")
	}
	co := options.Client().ApplyURI(opts.URI).
		// Set after ApplyURI so they win over URI parameters: a request
		// must never wait the driver's default 30 s for a server.
		SetServerSelectionTimeout(opts.OpTimeout).
		SetConnectTimeout(opts.OpTimeout)
	if opts.Monitor != nil {
		co.SetMonitor(opts.Monitor)
	}
	c, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("mongostore: MongoDB client: %w", red.wrap(err))
	}
	return c, nil
}

// Store is a store.Store on one MongoDB collection. Create one with Open
// or New and stop it with Close. All methods are safe for concurrent use.
type Store struct {
	client     *mongo.Client
	ownsClient bool
	coll       *mongo.Collection

	opTimeout     time.Duration
	sweepInterval time.Duration
	disableTTL    bool
	log           *zap.Logger
	now           func() time.Time
	redact        redactor

	stop      chan struct{}
	done      chan struct{} // closed when the background goroutine exits
	ready     chan struct{} // closed once the TTL index exists or sweeping started
	sweeping  atomic.Bool
	closeOnce sync.Once
}

// Interface guard.
var _ store.Store = (*Store)(nil)

// Open creates a client for opts.URI (see NewClient) and a Store that
// owns it: Close disconnects it.
func Open(opts Options) (*Store, error) {
	c, err := NewClient(opts)
	if err != nil {
		return nil, err
	}
	s, err := New(c, opts)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Disconnect(ctx)
		return nil, err
	}
	s.ownsClient = true
	return s, nil
}

// New returns a Store on client, which stays the caller's: Close does not
// disconnect it, so one client (one connection pool) can serve several
// stores. opts.URI is only used to keep it out of error messages;
// opts.Monitor is ignored (it belongs to the client). New starts a
// background goroutine that creates the TTL index, retrying while the
// server is unreachable, or sweeps if the server refuses it; it never
// blocks on the server.
func New(client *mongo.Client, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("mongostore: nil client")
	}
	opts = opts.withDefaults()
	wc, err := ParseWriteConcern(opts.WriteConcern)
	if err != nil {
		return nil, err
	}
	coll := client.Database(opts.Database).
		Collection(opts.Collection, options.Collection().SetWriteConcern(wc))
	s := &Store{
		client:        client,
		coll:          coll,
		opTimeout:     opts.OpTimeout,
		sweepInterval: opts.SweepInterval,
		disableTTL:    opts.DisableTTLIndex,
		log:           opts.Logger,
		now:           opts.Now,
		redact:        newRedactor(opts.URI),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
		ready:         make(chan struct{}),
	}
	go s.maintain()
	return s, nil
}

// Close stops the background work (index creation, sweeping) and waits
// for it, then disconnects the client if the Store owns it (Open). It is
// safe to call more than once.
func (s *Store) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.ownsClient {
			if e := s.client.Disconnect(ctx); e != nil {
				err = s.opError("disconnect", e)
			}
		}
	})
	return err
}

// Collection returns the collection the Store uses, for tools and tests
// that inspect documents.
func (s *Store) Collection() *mongo.Collection { return s.coll }

// document is the stored shape of a session, as Find decodes it.
type document struct {
	Data    bson.Raw  `bson:"data"`
	Created time.Time `bson:"created"`
	Updated time.Time `bson:"updated"`
	Expires time.Time `bson:"expires"`
	MaxAge  int64     `bson:"maxAge"`
	Version int64     `bson:"v"`
}

// live is the filter for the live session under key at now.
func live(key string, now time.Time) bson.D {
	return bson.D{{Key: "_id", Value: key}, {Key: "expires", Value: bson.D{{Key: "$gt", Value: now}}}}
}

// Find returns the session under key if it is live at now, with one find
// command.
func (s *Store) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	var d document
	err := s.coll.FindOne(ctx, live(key, now)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, s.opError("find", err)
	}
	data, err := dataFromBSON(d.Data)
	if err != nil {
		return nil, fmt.Errorf("mongostore: find: stored data: %w", err)
	}
	return &store.Record{
		Data:    data,
		Created: d.Created,
		Updated: d.Updated,
		Expires: d.Expires,
		MaxAge:  time.Duration(d.MaxAge) * time.Millisecond,
		Version: d.Version,
	}, nil
}

// Create inserts rec under key with Version 1, with one insert command.
// A taken key, live or expired, gives store.ErrExists.
func (s *Store) Create(ctx context.Context, key string, rec *store.Record) error {
	if rec == nil {
		return errors.New("mongostore: Create with nil record")
	}
	data, err := dataToBSON(rec.Data)
	if err != nil {
		return fmt.Errorf("mongostore: create: %w", err)
	}
	doc := bson.D{
		{Key: "_id", Value: key},
		{Key: "data", Value: data},
		{Key: "created", Value: rec.Created},
		{Key: "updated", Value: rec.Updated},
		{Key: "expires", Value: rec.Expires},
		{Key: "maxAge", Value: rec.MaxAge.Milliseconds()},
		{Key: "v", Value: int64(1)},
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if _, err := s.coll.InsertOne(ctx, doc); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return store.ErrExists
		}
		return s.opError("create", err)
	}
	return nil
}

// Apply applies ch with one update command: $set and $unset on
// data.<key>, the new expiry, updated time and max-age, and $inc of the
// version, filtered on the key being live at now. It never upserts, so a
// session deleted or expired meanwhile stays gone (store.ErrNotFound).
func (s *Store) Apply(ctx context.Context, key string, ch store.Change, now time.Time) error {
	set := bson.D{
		{Key: "expires", Value: ch.Expires},
		{Key: "updated", Value: now},
	}
	if ch.MaxAge != nil {
		set = append(set, bson.E{Key: "maxAge", Value: ch.MaxAge.Milliseconds()})
	}
	for k, raw := range ch.Set {
		v, err := jsonToBSON(raw)
		if err != nil {
			return fmt.Errorf("mongostore: apply: data key %q: %w", k, err)
		}
		set = append(set, bson.E{Key: "data." + escapeKey(k), Value: v})
	}
	update := bson.D{
		{Key: "$set", Value: set},
		{Key: "$inc", Value: bson.D{{Key: "v", Value: int64(1)}}},
	}
	if len(ch.Unset) > 0 {
		unset := make(bson.D, 0, len(ch.Unset))
		for _, k := range ch.Unset {
			if _, both := ch.Set[k]; both {
				// The server would refuse the update as a path
				// conflict; say what is wrong instead.
				return fmt.Errorf("mongostore: apply: data key %q is both set and unset", k)
			}
			unset = append(unset, bson.E{Key: "data." + escapeKey(k), Value: ""})
		}
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}

	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	res, err := s.coll.UpdateOne(ctx, live(key, now), update)
	if err != nil {
		return s.opError("apply", err)
	}
	if res.MatchedCount == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Touch moves the expiry of the live session under key and sets its
// updated time, with one update command.
func (s *Store) Touch(ctx context.Context, key string, expires, now time.Time) error {
	update := bson.D{{Key: "$set", Value: bson.D{
		{Key: "expires", Value: expires},
		{Key: "updated", Value: now},
	}}}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	res, err := s.coll.UpdateOne(ctx, live(key, now), update)
	if err != nil {
		return s.opError("touch", err)
	}
	if res.MatchedCount == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Delete removes the session under key, live or not, with one delete
// command. A missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if _, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return s.opError("delete", err)
	}
	return nil
}

// Sweep deletes every session expired at now and returns how many it
// deleted. The background sweeper calls it when there is no TTL index;
// it is exported for callers that want to sweep on their own schedule.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int64, error) {
	// A sweep may delete many documents: allow it more than one request.
	ctx, cancel := context.WithTimeout(ctx, 10*s.opTimeout)
	defer cancel()
	res, err := s.coll.DeleteMany(ctx, bson.D{{Key: "expires", Value: bson.D{{Key: "$lte", Value: now}}}})
	if err != nil {
		return 0, s.opError("sweep", err)
	}
	return res.DeletedCount, nil
}
