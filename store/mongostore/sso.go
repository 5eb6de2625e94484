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

// sidIndex builds the non-unique index on sid that DeleteBySid uses. A
// refusal is logged: back-channel logouts then scan.
func (s *Store) sidIndex(ctx context.Context) error {
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: fieldSid, Value: 1}}})
	if err != nil && !isUnavailable(err) {
		s.log.Warn("MongoDB refused the index on sid; back-channel logouts scan the collection",
			zap.Error(s.redact.wrap(err)))
		return nil
	}
	return err
}

// DeleteBySid deletes every session whose sid is sid, with one delete
// command on the sid index.
func (s *Store) DeleteBySid(ctx context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, fmt.Errorf("mongostore: delete by sid: %w", err)
	}
	return s.deleteMany(ctx, "delete by sid", bson.D{{Key: fieldSid, Value: s.sidMatch(sid)}})
}

// sidMatch is the value of sid that selects sid's sessions: the clear
// sid, or with encryption keys its hash and the clear sid (documents
// written before sealing).
func (s *Store) sidMatch(sid string) any {
	if s.sealer == nil {
		return sid
	}
	return bson.D{{Key: "$in", Value: bson.A{bson.Binary{Data: s.sealer.sidHash(sid)}, sid}}}
}

// isubIndex builds the non-unique index on isub that DeleteByIdPSub
// uses. A refusal is logged: back-channel logouts by sub then scan.
func (s *Store) isubIndex(ctx context.Context) error {
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: fieldIdPSub, Value: 1}}})
	if err != nil && !isUnavailable(err) {
		s.log.Warn("MongoDB refused the index on isub; back-channel logouts by sub scan the collection",
			zap.Error(s.redact.wrap(err)))
		return nil
	}
	return err
}

// DeleteByIdPSub deletes every session whose isub is sub, with one delete
// command on the isub index.
func (s *Store) DeleteByIdPSub(ctx context.Context, sub string) (int, error) {
	if sub == "" {
		return 0, nil
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, fmt.Errorf("mongostore: delete by IdP subject: %w", err)
	}
	match := any(sub)
	if s.sealer != nil {
		match = bson.D{{Key: "$in", Value: bson.A{bson.Binary{Data: s.sealer.isubHash(sub)}, sub}}}
	}
	return s.deleteMany(ctx, "delete by IdP subject", bson.D{{Key: fieldIdPSub, Value: match}})
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
