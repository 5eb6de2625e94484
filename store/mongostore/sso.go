package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// usedPrefix starts the _id of a FirstUse document. Session keys are
// lower-case hex, so no session key starts with it and no handle range
// (DeleteByHandle) reaches one.
const usedPrefix = "used:"

// sidIndex and isubIndex build the non-unique indexes DeleteBySid and
// DeleteByIdPSub use.
func (s *Store) sidIndex(ctx context.Context) error {
	return s.plainIndex(ctx, fieldSid, "back-channel logouts")
}

func (s *Store) isubIndex(ctx context.Context) error {
	return s.plainIndex(ctx, fieldIdPSub, "back-channel logouts by sub")
}

// plainIndex builds a non-unique index on field. A refusal is logged:
// what uses it (users) then scans the collection.
func (s *Store) plainIndex(ctx context.Context, field, users string) error {
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: field, Value: 1}}})
	if err != nil && !isUnavailable(err) {
		s.log.Warn("MongoDB refused the index on "+field+"; "+users+" scan the collection",
			zap.Error(s.redact.wrap(err)))
		return nil
	}
	return err
}

// DeleteBySid deletes every session whose sid is sid, with one delete
// command on the sid index.
func (s *Store) DeleteBySid(ctx context.Context, sid string) (int, error) {
	return s.deleteByIndexed(ctx, "delete by sid", fieldSid, sid, s.sealer.sidHash)
}

// DeleteByIdPSub deletes every session whose isub is sub, with one delete
// command on the isub index.
func (s *Store) DeleteByIdPSub(ctx context.Context, sub string) (int, error) {
	return s.deleteByIndexed(ctx, "delete by IdP subject", fieldIdPSub, sub, s.sealer.isubHash)
}

// deleteByIndexed deletes every session whose field holds value: the
// clear value, or with encryption keys its hash (hash) and the clear value
// (documents written before sealing). An empty value deletes nothing.
func (s *Store) deleteByIndexed(ctx context.Context, op, field, value string, hash func(string) []byte) (int, error) {
	if value == "" {
		return 0, nil
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, fmt.Errorf("mongostore: %s: %w", op, err)
	}
	match := any(value)
	if s.sealer != nil {
		match = bson.D{{Key: "$in", Value: bson.A{bson.Binary{Data: hash(value)}, value}}}
	}
	return s.deleteMany(ctx, op, bson.D{{Key: field, Value: match}})
}

// LimitSubject keeps the n most recently seen live sessions of subject
// and deletes the others, with one find on the sub index (sorted, skipping
// the n kept, keys only) and one delete of the keys it found; see
// store.SubjectLimiter.
func (s *Store) LimitSubject(ctx context.Context, subject string, n int, now time.Time) (int, error) {
	if n < 1 || subject == "" {
		return 0, nil
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, fmt.Errorf("mongostore: limit subject: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	match := s.subjectMatch(subject, !s.requireSealed())
	filter := bson.D{
		{Key: fieldSubject, Value: match},
		{Key: fieldExpires, Value: bson.D{{Key: "$gt", Value: now}}},
	}
	opts := options.Find().
		SetProjection(bson.D{{Key: fieldID, Value: 1}}).
		SetSort(bson.D{{Key: fieldUpdated, Value: -1}, {Key: fieldCreated, Value: -1}, {Key: fieldID, Value: -1}}).
		SetSkip(int64(n))
	cur, err := s.coll.Find(ctx, filter, opts)
	if err != nil {
		return 0, s.opError("limit subject", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return 0, s.opError("limit subject", err)
	}
	if len(docs) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return s.deleteMany(ctx, "limit subject", bson.D{
		{Key: fieldID, Value: bson.D{{Key: "$in", Value: ids}}},
		{Key: fieldSubject, Value: match},
	})
}

// FirstUse records id until `until` in the sessions collection, as a
// document {_id: "used:<id>", expires: until} that the TTL index (or the
// sweep) removes like an expired session: one insert, and for an id whose
// document expired but is not yet removed, one update. See
// store.ReplayGuard.
func (s *Store) FirstUse(ctx context.Context, id string, until, now time.Time) (bool, error) {
	if id == "" {
		return false, errors.New("mongostore: first use: empty id")
	}
	if err := s.writeConcernProblem(); err != nil {
		return false, fmt.Errorf("mongostore: first use: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	_, err := s.coll.InsertOne(ctx, bson.D{{Key: fieldID, Value: usedPrefix + id}, {Key: fieldExpires, Value: until}})
	if err == nil {
		return true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, s.opError("first use", err)
	}
	res, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: fieldID, Value: usedPrefix + id}, {Key: fieldExpires, Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: fieldExpires, Value: until}}}})
	if err != nil {
		return false, s.opError("first use", err)
	}
	return res.ModifiedCount == 1, nil
}
