package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessiongate/caddy-session/cookie"
)

// MaxResealBatch bounds one Reseal call.
const MaxResealBatch = 1000

// Reseal writes again, under the first encryption key, up to batch live
// sessions that are not sealed under it (sealed under an older key, or
// in the clear), in key order after the session named by the handle
// after ("" to start). It returns how many it resealed, how many it
// passed over (changed meanwhile, or not opening: sealed under a key no
// longer configured, or tampered with), and the handle to go on after,
// "" when it reached the end.
//
// A resealed document keeps its version and its times: its content is
// the same, only its seal changes, so a concurrent write (compare-and-set
// on the version) still lands, and nothing looks recently seen. Each
// session costs one update filtered on the version read; the batch is
// one find. Used by `caddy session reseal` through the admin API, so
// that old keys can be dropped without waiting a lifetime.
func (s *Store) Reseal(ctx context.Context, batch int, after string, now time.Time) (resealed, skipped int, next string, err error) {
	switch {
	case s.sealer == nil:
		return 0, 0, "", errors.New("mongostore: reseal: no encryption key is configured")
	case batch < 1 || batch > MaxResealBatch:
		return 0, 0, "", fmt.Errorf("mongostore: reseal: a batch is 1 to %d sessions", MaxResealBatch)
	case after != "" && !cookie.IsHandle(after):
		return 0, 0, "", fmt.Errorf("mongostore: reseal: after is a handle, 12 lower-case hex digits")
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, 0, "", fmt.Errorf("mongostore: reseal: %w", err)
	}
	docs, err := s.unsealedBatch(ctx, batch, after, now)
	if err != nil {
		return 0, 0, "", err
	}
	open := *s.sealer
	open.requireSealed = false // clear documents are what is resealed
	for _, raw := range docs {
		ok, err := s.resealOne(ctx, &open, raw, now)
		if err != nil {
			return resealed, skipped, "", err
		}
		if ok {
			resealed++
		} else {
			skipped++
		}
	}
	if len(docs) == batch {
		id, _ := docs[len(docs)-1].Lookup(fieldID).StringValueOK()
		next = cookie.Handle(id)
	}
	return resealed, skipped, next, nil
}

// unsealedBatch finds up to batch live sessions, with keys past the
// handle after, not sealed under the first key. Check documents (no
// expires), one-time ids (no data) and tombstones never match.
func (s *Store) unsealedBatch(ctx context.Context, batch int, after string, now time.Time) ([]bson.Raw, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*s.opTimeout)
	defer cancel()
	filter := bson.D{
		{Key: fieldExpires, Value: bson.D{{Key: "$gt", Value: now}}},
		{Key: fieldRotated, Value: bson.D{{Key: "$exists", Value: false}}},
		{Key: fieldData, Value: bson.D{{Key: "$exists", Value: true}}},
		{Key: fieldKeyID, Value: bson.D{{Key: "$ne", Value: s.sealer.keys[0].id}}},
	}
	if after != "" {
		// Past every key starting with the handle: keys are lower-case
		// hex, and "g" sorts after every hex digit.
		filter = append(filter, bson.E{Key: fieldID, Value: bson.D{{Key: "$gt", Value: after + "g"}}})
	}
	cur, err := s.coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: fieldID, Value: 1}}).SetLimit(int64(batch)))
	if err != nil {
		return nil, s.opError("reseal", err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.opError("reseal", err)
	}
	return docs, nil
}

// resealOne writes one document again under the first key if it opens
// and is unchanged since it was read; it reports whether it did.
func (s *Store) resealOne(ctx context.Context, open *sealer, raw bson.Raw, now time.Time) (bool, error) {
	id, ok := raw.Lookup(fieldID).StringValueOK()
	if !ok {
		return false, nil
	}
	rec, _, err := decodeDocument(raw, now, open)
	if err != nil || rec == nil {
		return false, nil // counted as passed over; Find logs it when a visitor comes
	}
	p, err := s.sealData(id, rec)
	if err != nil {
		return false, nil
	}
	set := bson.D{
		{Key: fieldFormat, Value: formatSealed},
		{Key: fieldKeyID, Value: p.keyID},
		{Key: fieldData, Value: bson.Binary{Data: p.blob}},
	}
	var unset bson.D
	for _, f := range [...]struct {
		name string
		v    []byte
	}{{fieldSubject, p.subHash}, {fieldSid, p.sidHash}, {fieldIdPSub, p.isubHash}} {
		if f.v != nil {
			set = append(set, bson.E{Key: f.name, Value: bson.Binary{Data: f.v}})
		} else {
			unset = append(unset, bson.E{Key: f.name, Value: ""})
		}
	}
	if rec.UserAgent != "" || rec.Addr != "" {
		device, err := s.sealer.sealDevice(id, rec.UserAgent, rec.Addr)
		if err != nil {
			return false, nil
		}
		set = append(set, bson.E{Key: fieldDevice, Value: bson.Binary{Data: device}})
		unset = append(unset, bson.E{Key: fieldUA, Value: ""}, bson.E{Key: fieldAddr, Value: ""})
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	err = s.updateOne(ctx, "reseal", liveAtVersion(id, rec.Version, now), update, errConflictReseal)
	if errors.Is(err, errConflictReseal) {
		return false, nil
	}
	return err == nil, err
}

// errConflictReseal: the session changed or ended since the batch read it.
var errConflictReseal = errors.New("changed since read")
