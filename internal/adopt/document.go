package adopt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/caddy-session/store"
)

// Field names of the claim written into a legacy document.
const (
	claimField = "adopted" // {key: <gateway store key>, at: <date>}
	claimKey   = "key"
	claimAt    = "at"
)

// legacyDoc is what adoptDocument reads from a legacy document.
type legacyDoc struct {
	data     []byte    // canonical data, or nil with reason set
	expires  time.Time // zero: none
	reason   string    // why the document cannot be adopted
	owner    string    // claim: the claimant's store key, "" if unclaimed
	claimed  time.Time // claim: when
	original bson.RawValue
}

// expiryField is the document field that holds the legacy expiry: koa's
// data._expire (milliseconds, a number) or connect-mongo's expires (a
// date).
func (s *Source) expiryField() string {
	if s.cfg.Kind == KindKoa {
		return "data._expire"
	}
	return "expires"
}

// adoptDocument adopts the legacy document with _id id for the gateway
// session under key: read, classify, check, then claim atomically.
func (s *Source) adoptDocument(ctx context.Context, id string, now time.Time, key string) (*Legacy, error) {
	doc, err := s.load(ctx, id, now)
	if err != nil || doc == nil {
		return refused("unknown session"), err
	}
	if doc.owner != "" {
		return s.joined(doc, now), nil
	}
	if doc.reason != "" {
		return refused(doc.reason), nil
	}
	won, err := s.claim(ctx, id, key, now)
	if err != nil {
		return nil, err
	}
	if !won { // another request claimed it between our read and our claim
		again, err := s.load(ctx, id, now)
		if err != nil || again == nil {
			return refused("unknown session"), err
		}
		again.data = doc.data
		return s.joined(again, now), nil
	}
	s.pending.add(id, now)
	leg := &Legacy{Outcome: OutcomeAdopted, Data: doc.data, Key: key, Expires: doc.expires}
	leg.release = func(ctx context.Context) error {
		if err := s.unclaim(ctx, id, key, doc.original); err != nil {
			return err
		}
		s.pending.remove(id)
		return nil
	}
	return leg, nil
}

// joined is the outcome for a document another request claimed.
func (s *Source) joined(doc *legacyDoc, now time.Time) *Legacy {
	switch {
	case !now.Before(doc.claimed.Add(s.grace)):
		return refused("already adopted")
	case doc.reason != "":
		return refused(doc.reason)
	}
	return &Legacy{Outcome: OutcomeJoined, Data: doc.data, Key: doc.owner, Expires: doc.expires}
}

// load reads and classifies the document; nil when there is none.
func (s *Source) load(ctx context.Context, id string, now time.Time) (*legacyDoc, error) {
	raw, err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil, nil
	case err != nil:
		return nil, s.unavailable("loading the legacy session", err)
	}
	doc := &legacyDoc{}
	if c, err := raw.LookupErr(claimField); err == nil {
		if doc.owner, doc.claimed, err = parseClaim(c); err != nil {
			return &legacyDoc{reason: "malformed claim"}, nil
		}
	}
	if s.cfg.Kind == KindKoa {
		s.koaDocument(raw, now, doc)
	} else {
		s.expressDocument(raw, now, doc)
	}
	if doc.owner != "" && doc.reason == "expired" {
		doc.reason = "" // the claim set the expiry to the end of the grace time
	}
	return doc, nil
}

func parseClaim(v bson.RawValue) (key string, at time.Time, err error) {
	d, ok := v.DocumentOK()
	if !ok {
		return "", at, errors.New("not a document")
	}
	k, ok1 := d.Lookup(claimKey).StringValueOK()
	t, ok2 := d.Lookup(claimAt).DateTimeOK()
	if !ok1 || !ok2 || k == "" {
		return "", at, errors.New("missing fields")
	}
	return k, time.UnixMilli(t), nil
}

// koaDocument reads {_id, data: {..., _expire, _maxAge}, updatedAt}, as
// koa-session-mongoose writes it.
func (s *Source) koaDocument(raw bson.Raw, now time.Time, doc *legacyDoc) {
	v, err := raw.LookupErr("data")
	if err != nil || v.Type != bson.TypeEmbeddedDocument {
		doc.reason = "malformed document: no data object"
		return
	}
	doc.original, _ = raw.LookupErr("data", "_expire")
	js, err := appendBSONValue(nil, v, 0)
	if err != nil {
		doc.reason = "malformed session: " + err.Error()
		return
	}
	doc.data, doc.expires, doc.reason = s.koaData(js, now)
}

// expressDocument reads {_id, session: <JSON string or object>, expires},
// as connect-mongo writes it (stringify true or false).
func (s *Source) expressDocument(raw bson.Raw, now time.Time, doc *legacyDoc) {
	if e, err := raw.LookupErr("expires"); err == nil {
		doc.original = e
		ms, ok := e.DateTimeOK()
		if !ok {
			doc.reason = "malformed document: expires is not a date"
			return
		}
		doc.expires = time.UnixMilli(ms)
		if !doc.expires.After(now) { // connect-mongo reads expires > now only
			doc.reason = "expired"
			return
		}
	}
	var js []byte
	switch v := raw.Lookup("session"); v.Type {
	case bson.TypeString:
		js = []byte(v.StringValue())
	case bson.TypeEmbeddedDocument:
		var err error
		if js, err = appendBSONValue(nil, v, 0); err != nil {
			doc.reason = "malformed session: " + err.Error()
			return
		}
	default:
		doc.reason = "malformed document: no session"
		return
	}
	obj, err := decodeObject(js)
	if err != nil {
		doc.reason = "malformed session: " + err.Error()
		return
	}
	doc.data, doc.reason = s.checked(obj, expressBookkeeping)
}

// claim marks the unclaimed document id as adopted for key and moves its
// legacy expiry to the end of the grace time. It reports whether this call
// made the claim.
func (s *Source) claim(ctx context.Context, id, key string, now time.Time) (bool, error) {
	end := now.Add(s.grace)
	var expiry any = bson.NewDateTimeFromTime(end)
	if s.cfg.Kind == KindKoa {
		expiry = float64(end.UnixMilli())
	}
	res, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: claimField, Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: claimField, Value: bson.D{{Key: claimKey, Value: key}, {Key: claimAt, Value: bson.NewDateTimeFromTime(now)}}},
			{Key: s.expiryField(), Value: expiry},
		}}})
	if err != nil {
		return false, s.unavailable("claiming the legacy session", err)
	}
	return res.MatchedCount == 1, nil
}

// unclaim removes key's claim from document id and puts the legacy expiry
// back.
func (s *Source) unclaim(ctx context.Context, id, key string, original bson.RawValue) error {
	update := bson.D{}
	if original.Type == 0 {
		update = append(update, bson.E{Key: "$unset", Value: bson.D{{Key: claimField, Value: ""}, {Key: s.expiryField(), Value: ""}}})
	} else {
		update = append(update,
			bson.E{Key: "$unset", Value: bson.D{{Key: claimField, Value: ""}}},
			bson.E{Key: "$set", Value: bson.D{{Key: s.expiryField(), Value: original}}})
	}
	_, err := s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: claimField + "." + claimKey, Value: key}}, update)
	if err != nil {
		return s.unavailable("releasing the claim", err)
	}
	return nil
}

// sweepStore deletes the documents this instance claimed before cutoff,
// by _id, so the sweep never scans the legacy collection. Documents
// claimed by an instance that stopped before sweeping stay; they are
// refused as "already adopted", their legacy expiry has passed (so a TTL
// index or the legacy library removes them), and the collection is
// dropped when the migration window ends.
func (s *Source) sweepStore(ctx context.Context, cutoff time.Time) (int64, error) {
	ids := s.pending.due(cutoff)
	if len(ids) == 0 {
		return 0, nil
	}
	res, err := s.coll.DeleteMany(ctx, bson.D{
		{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}},
		{Key: claimField + "." + claimAt, Value: bson.D{{Key: "$lte", Value: bson.NewDateTimeFromTime(cutoff)}}},
	})
	if err != nil {
		return 0, s.unavailable("sweeping adopted sessions", err)
	}
	s.pending.done(ids)
	return res.DeletedCount, nil
}

// unavailable wraps a legacy store error as store.ErrUnavailable: the
// gateway answers 503, as for its own store.
func (s *Source) unavailable(what string, err error) error {
	return fmt.Errorf("adopt %s: %s: %w: %v", s.cfg.Kind, what, store.ErrUnavailable, err)
}

// finite reports whether JSON.stringify writes f as a number (it writes
// NaN and the infinities as null).
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
