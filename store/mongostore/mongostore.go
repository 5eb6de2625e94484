// Package mongostore is a store.Store kept in MongoDB (or any server that
// speaks its wire protocol), using the official Go driver v2. Every Caddy
// instance pointed at the same collection sees the same sessions.
//
// docs/storage.md describes the stored document exactly (format 2: field
// names, BSON types, key escaping, tombstones, indexes) and how documents
// of the first format are read. In short:
//
//	{
//	  _id:     "<store key: hex SHA-256 of the session token>",
//	  f:       2,
//	  data:    { <session data as a BSON sub-document> },
//	  sub:     "<subject>",              // only when the session has one
//	  created: ISODate(...), updated: ISODate(...), expires: ISODate(...),
//	  maxAge:  NumberLong(<idle timeout in ms, 0 = default>),
//	  v:       NumberLong(<version: 1 on create, +1 per write>),
//	  rot:     "<successor handle>"       // only in a tombstone (no data, no sub)
//	}
//
// # Round trips
//
// Find is one find command, Create one insert, Update, Touch and Rotate
// one update each (filtered on the key, the version where the contract
// says so, a live expiry and no tombstone marker; never an upsert), Delete
// one delete. The subject index adds one find or one delete per call.
//
// # Reads from the primary
//
// The collection pins read preference primary and read concern local,
// whatever the URI says: a session written by one Caddy instance must be
// visible to the next request on any other, and a logout must take effect
// at once. Reads from secondaries would trade that for load spread; see
// docs/scaling.md.
//
// # Expiry
//
// Reads and writes filter on expires themselves, so an expired session is
// invisible at once. Expired documents are removed by a TTL index on
// expires, built in the background with a long deadline. Until it exists,
// and for ever on a server that refuses it (FerretDB answers code 238,
// NotImplemented), the store deletes expired documents itself every
// SweepInterval, using a plain index on expires.
//
// # Failures
//
// Every call is bounded by Options.OpTimeout, which is also the driver's
// server-selection timeout (never the driver's default 30 s). Connecting
// and the driver's heartbeats have their own, longer ConnectTimeout, so a
// short stall of the primary does not clear the pool. Errors that mean the
// server could not be reached or did not answer in time wrap
// store.ErrUnavailable. The client reconnects by itself when the server
// comes back. Errors and logs never contain the MongoDB URI, a key or
// session data.
package mongostore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/store"
)

// Defaults for the zero values of Options.
const (
	DefaultDatabase       = "caddy"
	DefaultCollection     = "sessions"
	DefaultOpTimeout      = 3 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultWriteConcern   = "majority"
	DefaultSweepInterval  = time.Minute
)

// Options configure a Store. Only URI is required (by NewClient and Open);
// every other field has a documented default.
type Options struct {
	// URI is the MongoDB connection string; TLS, authentication, replica
	// set and pool settings (maxPoolSize, minPoolSize) come through it. It
	// may hold a password: the store never puts it in an error or a log
	// line.
	URI string

	// Database holds the sessions collection. Default: the database the
	// URI names (mongodb://host/myapp), as MongoDB drivers do, else
	// "caddy".
	Database string

	// Collection holds one document per session. Default "sessions".
	Collection string

	// OpTimeout bounds each store call, and is the client's server
	// selection timeout, so a down server costs a request at most about
	// this long. Default 3s.
	OpTimeout time.Duration

	// ConnectTimeout bounds opening a connection (TCP, TLS and the
	// handshake) and is the socket timeout of the driver's heartbeats. It
	// is longer than OpTimeout on purpose: a heartbeat that times out
	// clears the pool, so a short stall of the primary would otherwise
	// reconnect every connection. Default 10s.
	ConnectTimeout time.Duration

	// WriteConcern is the "w" of every write: "majority" (the default),
	// a number of members such as "1", or a replica-set tag name. "0"
	// (unacknowledged) is refused: the store has to know whether an
	// update matched a live session.
	WriteConcern string

	// SweepInterval is how often expired documents are deleted while the
	// TTL index does not exist (it is being built, or the server refuses
	// it, or DisableTTLIndex is set). Default one minute.
	SweepInterval time.Duration

	// DisableTTLIndex skips the TTL index and always sweeps, for servers
	// whose TTL support is limited without saying so.
	DisableTTLIndex bool

	// Logger receives the store's few log lines (index state changes,
	// sweep failures, a write concern the server cannot meet). Default:
	// no logging.
	Logger *zap.Logger

	// Monitor, if set, is handed to the driver to observe every command
	// (NewClient and Open only). Tests use it to count round trips.
	Monitor *event.CommandMonitor

	// EncryptionKeys, when set, seal every document the store writes
	// (format 3, docs/storage.md): the session data and the subject,
	// with AES-256-GCM under the first key. Every key opens. Each is 32
	// random bytes (ParseKey reads the written forms); never a
	// passphrase. Documents written in the clear before are read as they
	// are and sealed by their next Update.
	EncryptionKeys [][]byte

	// SubjectKey is the HMAC-SHA-256 key under which sealed documents
	// keep their subject (the sub index), 32 random bytes. Required with
	// EncryptionKeys, refused without them, and must not change when they
	// rotate: sessions stored under another subject key are not found by
	// subject.
	SubjectKey []byte

	// RequireSealed makes documents without a seal read as no session
	// (counted and logged), so whoever can write to the collection cannot
	// plant clear session data. Needs EncryptionKeys. Off by default, so
	// that switching sealing on keeps the sessions written before; turn
	// it on once they have all been written again or have expired.
	RequireSealed bool

	// OnSealFailure, if set, is called for every document read as no
	// session because of its seal, with the kind: "unknown_key",
	// "unopenable" or "unsealed" (see SealFailures). The Caddy module
	// counts them in a metric that survives config reloads.
	OnSealFailure func(kind string)

	// Now is the sweeper's clock. Default time.Now. Store methods take the
	// time from their callers and never read it.
	Now func() time.Time
}

// Validate checks the options that do not need a server: names MongoDB
// would only refuse at the first request, the write concern, and negative
// durations. Open and New call it; configuration front ends (the Caddy
// module) call it too, so every way of configuring gets the same errors.
func (o Options) Validate() error {
	if db := cmp.Or(o.Database, URIDatabase(o.URI)); db != "" && (len(db) > 63 || strings.ContainsAny(db, "/\\. \"$*<>:|?\x00")) {
		return fmt.Errorf("mongostore: invalid database name %q", db)
	}
	if c := o.Collection; c != "" && (strings.ContainsAny(c, "$\x00") || strings.HasPrefix(c, "system.") ||
		strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".")) {
		return fmt.Errorf("mongostore: invalid collection name %q", c)
	}
	if _, err := ParseWriteConcern(o.WriteConcern); err != nil {
		return err
	}
	if err := validateSealOptions(o); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", o.OpTimeout}, {"connect timeout", o.ConnectTimeout}, {"sweep interval", o.SweepInterval}} {
		if d.v < 0 {
			return fmt.Errorf("mongostore: %s must not be negative", d.name)
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Database == "" {
		o.Database = cmp.Or(URIDatabase(o.URI), DefaultDatabase)
	}
	if o.Collection == "" {
		o.Collection = DefaultCollection
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = max(DefaultConnectTimeout, o.OpTimeout)
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

// URIDatabase returns the database a MongoDB connection string names
// (mongodb://user:pass@host1,host2/myapp?opts gives "myapp"), or "" when
// it names none. It only reads the string: no DNS lookup, even for
// mongodb+srv.
func URIDatabase(uri string) string {
	_, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return ""
	}
	rest, _, _ = strings.Cut(rest, "?")
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:] // user info may hold any character, escaped or not
	}
	_, db, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	db, err := url.PathUnescape(db)
	if err != nil {
		return ""
	}
	return db
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
// traffic: a server selection timeout of OpTimeout, a connect and
// heartbeat timeout of ConnectTimeout, and opts.Monitor if set. It does
// not dial: connections are made in the background and on first use, so a
// down server does not fail start-up. The caller disconnects the client
// when done; several Stores may share it (see New).
func NewClient(opts Options) (*mongo.Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	red := newRedactor(opts.URI)
	if opts.URI == "" {
		return nil, errors.New("mongostore: no MongoDB URI")
	}
	co := options.Client().ApplyURI(opts.URI).
		// Set after ApplyURI so they win over URI parameters: a request
		// must never wait the driver's default 30 s for a server, and a
		// heartbeat must not give up (and clear the pool) as soon as a
		// request would.
		SetServerSelectionTimeout(opts.OpTimeout).
		SetConnectTimeout(opts.ConnectTimeout)
	if opts.Monitor != nil {
		co.SetMonitor(opts.Monitor)
	}
	c, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("mongostore: MongoDB client: %w", red.wrap(err))
	}
	return c, nil
}

// Store is a store.Store and store.SubjectIndex on one MongoDB
// collection. Create one with Open or New and stop it with Close. All
// methods are safe for concurrent use.
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
	w             any // the write concern's w, for the check against hello

	expiry       atomic.Int32 // an Expiry
	noDecimal    atomic.Bool  // the server refuses Decimal128 values
	wcErr        atomic.Pointer[error]
	sweepFailing atomic.Bool              // so a sweep failure and the recovery are logged once
	resumeToken  atomic.Pointer[bson.Raw] // where Watch resumes (watch.go)

	sealer        *sealer // nil: no encryption keys
	sealFails     [sealKinds]sealFailure
	onSealFailure func(kind string)

	bg        context.Context // background work; Close cancels it
	cancelBG  context.CancelFunc
	ready     chan struct{} // closed when the start-up work is done
	probed    chan struct{} // closed when noDecimal is known
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Interface guards.
var (
	_ store.Store          = (*Store)(nil)
	_ store.SubjectIndex   = (*Store)(nil)
	_ store.SidIndex       = (*Store)(nil)
	_ store.IdPSubIndex    = (*Store)(nil)
	_ store.SubjectLimiter = (*Store)(nil)
	_ store.ReplayGuard    = (*Store)(nil)
)

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
// stores. opts.URI is only used to keep it out of error messages and for
// the database when opts.Database is empty;
// opts.Monitor and the timeouts other than OpTimeout are ignored (they
// belong to the client). New starts background work (index builds, the
// sweeper, a check of the write concern against the server); it never
// blocks on the server.
func New(client *mongo.Client, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("mongostore: nil client")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	wc, _ := ParseWriteConcern(opts.WriteConcern) // checked by Validate
	sl, err := newSealer(opts)
	if err != nil {
		return nil, err
	}
	coll := client.Database(opts.Database).Collection(opts.Collection, options.Collection().
		SetWriteConcern(wc).
		SetReadPreference(readpref.Primary()).
		SetReadConcern(readconcern.Local()))
	s := &Store{
		client:        client,
		coll:          coll,
		opTimeout:     opts.OpTimeout,
		sweepInterval: opts.SweepInterval,
		disableTTL:    opts.DisableTTLIndex,
		log:           opts.Logger,
		now:           opts.Now,
		redact:        newRedactor(opts.URI),
		w:             wc.W,
		ready:         make(chan struct{}),
		probed:        make(chan struct{}),
		sealer:        sl,
		onSealFailure: opts.OnSealFailure,
	}
	s.bg, s.cancelBG = context.WithCancel(context.Background())
	s.start()
	return s, nil
}

// Close stops the background work (index builds, sweeping) and waits for
// it, then disconnects the client if the Store owns it (Open). It is safe
// to call more than once.
func (s *Store) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.cancelBG()
		s.wg.Wait()
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

// Ready returns a channel closed once the start-up work is done: the
// server answered the capability and write-concern checks, and the index
// builds have finished or the store has settled on sweeping. Requests
// never wait for it; it is for tools and tests that want a quiet store.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// Find returns the session under key if it is live at now, with one find
// command. A tombstone (see Rotate) gives a *store.RotatedError.
//
// The filter is the key alone and expiry is checked here: the answer is
// the same, and a server that can only use an index for a filter on _id
// alone (FerretDB 1.x) does not scan the collection.
func (s *Store) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	raw, err := s.coll.FindOne(ctx, bson.D{{Key: fieldID, Value: key}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, s.opError("find", err)
	}
	rec, successor, err := decodeDocument(raw, now, s.sealer)
	switch {
	case err != nil:
		if err = s.notFoundForSeal(key, err, now); err == store.ErrNotFound {
			return nil, err
		}
		return nil, fmt.Errorf("mongostore: find: %w", err)
	case rec == nil && successor == "":
		return nil, store.ErrNotFound // expired
	case successor != "":
		return nil, &store.RotatedError{Successor: successor}
	}
	return rec, nil
}

// Create inserts rec under key with Version 1, with one insert command.
// A taken key, live, expired or a tombstone, gives store.ErrExists.
func (s *Store) Create(ctx context.Context, key string, rec *store.Record) error {
	if rec == nil {
		return errors.New("mongostore: Create with nil record")
	}
	if err := s.writeConcernProblem(); err != nil {
		return fmt.Errorf("mongostore: create: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	doc, err := s.encodeDocument(ctx, key, rec)
	if err != nil {
		return fmt.Errorf("mongostore: create: %w", err)
	}
	if _, err := s.coll.InsertOne(ctx, doc); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return store.ErrExists
		}
		return s.opError("create", err)
	}
	return nil
}

// liveAt is the filter for the live session (not a tombstone) under key at
// now.
func liveAt(key string, now time.Time) bson.D {
	return bson.D{
		{Key: fieldID, Value: key},
		{Key: fieldExpires, Value: bson.D{{Key: "$gt", Value: now}}},
		{Key: fieldRotated, Value: bson.D{{Key: "$exists", Value: false}}},
	}
}

// liveAtVersion is liveAt for the session at version only: the
// compare-and-set of Update and Rotate.
func liveAtVersion(key string, version int64, now time.Time) bson.D {
	return append(liveAt(key, now), bson.E{Key: fieldVersion, Value: version})
}

// Update replaces the data, subject, max-age and expiry of the live
// session under key if its version is rec.Version, with one update
// command. The document is written in the current format, whatever format
// it had.
func (s *Store) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	if rec == nil {
		return errors.New("mongostore: Update with nil record")
	}
	if err := s.writeConcernProblem(); err != nil {
		return fmt.Errorf("mongostore: update: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	update, err := s.updateOf(ctx, key, rec, now)
	if err != nil {
		return fmt.Errorf("mongostore: update: %w", err)
	}
	return s.updateOne(ctx, "update", liveAtVersion(key, rec.Version, now), update, store.ErrConflict)
}

// updateOf is the change Update makes: the whole document but its key
// and creation time, in the store's format.
func (s *Store) updateOf(ctx context.Context, key string, rec *store.Record, now time.Time) (bson.D, error) {
	format, unset := formatVersion, bson.D{{Key: fieldKeyID, Value: ""}}
	var data, sub, sid, isub any
	var keyID string
	if s.sealer != nil {
		p, err := s.sealData(key, rec)
		if err != nil {
			return nil, err
		}
		format, keyID, unset, data = formatSealed, p.keyID, nil, bson.Binary{Data: p.blob}
		if p.subHash != nil {
			sub = bson.Binary{Data: p.subHash}
		}
		if p.sidHash != nil {
			sid = bson.Binary{Data: p.sidHash}
		}
		if p.isubHash != nil {
			isub = bson.Binary{Data: p.isubHash}
		}
	} else {
		b, err := s.appendData(ctx, nil, rec.Data)
		if err != nil {
			return nil, err
		}
		data = bson.Raw(b)
		if rec.Subject != "" {
			sub = rec.Subject
		}
		if rec.Sid != "" {
			sid = rec.Sid
		}
		if rec.IdPSub != "" {
			isub = rec.IdPSub
		}
	}
	set := bson.D{
		{Key: fieldFormat, Value: format},
		{Key: fieldData, Value: data},
		{Key: fieldUpdated, Value: now},
		{Key: fieldExpires, Value: rec.Expires},
		{Key: fieldMaxAge, Value: rec.MaxAge.Milliseconds()},
		{Key: fieldVersion, Value: rec.Version + 1},
	}
	if keyID != "" {
		set = append(set, bson.E{Key: fieldKeyID, Value: keyID})
	}
	for _, f := range [...]struct {
		name string
		v    any
	}{{fieldSubject, sub}, {fieldSid, sid}, {fieldIdPSub, isub}} {
		if f.v != nil {
			set = append(set, bson.E{Key: f.name, Value: f.v})
		} else {
			unset = append(unset, bson.E{Key: f.name, Value: ""})
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	return update, nil
}

// Touch moves the expiry and updated time of the live session under key
// forward ($max: never backwards), with one update command.
func (s *Store) Touch(ctx context.Context, key string, expires, now time.Time) error {
	if err := s.writeConcernProblem(); err != nil {
		return fmt.Errorf("mongostore: touch: %w", err)
	}
	update := bson.D{{Key: "$max", Value: bson.D{
		{Key: fieldExpires, Value: expires},
		{Key: fieldUpdated, Value: now},
	}}}
	return s.updateOne(ctx, "touch", liveAt(key, now), update, store.ErrNotFound)
}

// Rotate turns the live session under key at version into a tombstone
// naming successor until until, with one update command: the data and
// subject are removed, the marker set, and the document expires at until.
func (s *Store) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	if err := s.writeConcernProblem(); err != nil {
		return fmt.Errorf("mongostore: rotate: %w", err)
	}
	if successor == "" {
		return errors.New("mongostore: rotate: empty successor handle")
	}
	update := bson.D{
		{Key: "$set", Value: bson.D{
			{Key: fieldFormat, Value: s.format()},
			{Key: fieldRotated, Value: successor},
			{Key: fieldUpdated, Value: now},
			{Key: fieldExpires, Value: until},
			{Key: fieldVersion, Value: version + 1},
		}},
		{Key: "$unset", Value: bson.D{
			{Key: fieldData, Value: ""}, {Key: fieldSubject, Value: ""}, {Key: fieldSid, Value: ""},
			{Key: fieldIdPSub, Value: ""}, {Key: fieldKeyID, Value: ""},
		}},
	}
	return s.updateOne(ctx, "rotate", liveAtVersion(key, version, now), update, store.ErrConflict)
}

// format is the format of the documents the store writes.
func (s *Store) format() int32 {
	if s.sealer != nil {
		return formatSealed
	}
	return formatVersion
}

// updateOne runs one update and returns notMatched when no document
// matched the filter.
func (s *Store) updateOne(ctx context.Context, op string, filter, update bson.D, notMatched error) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	res, err := s.coll.UpdateOne(ctx, filter, update)
	if err != nil {
		return s.opError(op, err)
	}
	if res.MatchedCount == 0 {
		return notMatched
	}
	return nil
}

// Delete removes the session or tombstone under key, live or not, with
// one delete command. A missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.writeConcernProblem(); err != nil {
		return fmt.Errorf("mongostore: delete: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if _, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return s.opError("delete", err)
	}
	return nil
}

// Sweep deletes every session and tombstone expired at now and returns
// how many it deleted. The background sweeper calls it while there is no
// TTL index; it is exported for callers that want to sweep on their own
// schedule.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int64, error) {
	// A sweep may delete many documents: allow it more than one request.
	ctx, cancel := context.WithTimeout(ctx, 10*s.opTimeout)
	defer cancel()
	res, err := s.coll.DeleteMany(ctx, bson.D{{Key: fieldExpires, Value: bson.D{{Key: "$lte", Value: now}}}})
	if err != nil {
		return 0, s.opError("sweep", err)
	}
	return res.DeletedCount, nil
}
