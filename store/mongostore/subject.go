package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// FindBySubject lists the live sessions whose subject is subject, with
// one find command on the sub index. Tombstones have no subject and never
// show. With encryption keys the subject is hashed here, so callers (the
// admin API, revoke-all) pass it in the clear; documents written before
// sealing are found by their clear subject unless RequireSealed.
func (s *Store) FindBySubject(ctx context.Context, subject string, now time.Time) ([]store.Summary, error) {
	if subject == "" {
		return nil, errors.New("mongostore: find by subject: empty subject")
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	filter := bson.D{
		{Key: fieldSubject, Value: s.subjectMatch(subject, !s.requireSealed())},
		{Key: fieldExpires, Value: bson.D{{Key: "$gt", Value: now}}},
	}
	proj := bson.D{
		{Key: fieldCreated, Value: 1}, {Key: fieldUpdated, Value: 1}, {Key: fieldExpires, Value: 1},
		{Key: fieldUA, Value: 1}, {Key: fieldAddr, Value: 1}, {Key: fieldDevice, Value: 1},
	}
	cur, err := s.coll.Find(ctx, filter, options.Find().SetProjection(proj).SetSort(bson.D{{Key: fieldCreated, Value: 1}}))
	if err != nil {
		return nil, s.opError("find by subject", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []store.Summary
	for cur.Next(ctx) {
		var d struct {
			ID      string    `bson:"_id"`
			Created time.Time `bson:"created"`
			Updated time.Time `bson:"updated"`
			Expires time.Time `bson:"expires"`
			UA      string    `bson:"ua"`
			Addr    string    `bson:"ip"`
			Device  []byte    `bson:"dev"`
		}
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("mongostore: find by subject: %w: %w", errBadDocument, err)
		}
		if d.Device != nil {
			// A listing shows what opens; Find decides about the session.
			d.UA, d.Addr, _ = s.sealer.openDevice(d.ID, d.Device)
		}
		out = append(out, store.Summary{
			Handle: cookie.Handle(d.ID), Created: d.Created, Updated: d.Updated, Expires: d.Expires,
			UserAgent: d.UA, Addr: d.Addr,
		})
	}
	if err := cur.Err(); err != nil {
		return nil, s.opError("find by subject", err)
	}
	return out, nil
}

// DeleteBySubject deletes every session whose subject is subject, except
// the one under exceptKey if it is not empty, with one delete command on
// the sub index.
func (s *Store) DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error) {
	if subject == "" {
		return 0, errors.New("mongostore: delete by subject: empty subject")
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, fmt.Errorf("mongostore: delete by subject: %w", err)
	}
	filter := bson.D{{Key: fieldSubject, Value: s.subjectMatch(subject, true)}}
	if exceptKey != "" {
		filter = append(filter, bson.E{Key: fieldID, Value: bson.D{{Key: "$ne", Value: exceptKey}}})
	}
	return s.deleteMany(ctx, "delete by subject", filter)
}

// subjectMatch is the value of sub that selects subject's sessions: the
// clear subject, or with encryption keys its hash, and also the clear
// subject (documents written before sealing) when clear is true.
func (s *Store) subjectMatch(subject string, clear bool) any {
	if s.sealer == nil {
		return subject
	}
	hash := bson.Binary{Data: s.sealer.subjectHash(subject)}
	if !clear {
		return hash
	}
	return bson.D{{Key: "$in", Value: bson.A{hash, subject}}}
}

func (s *Store) requireSealed() bool { return s.sealer != nil && s.sealer.requireSealed }

// DeleteByHandle deletes the session whose key starts with handle, with
// one delete command on the _id index: keys are lower-case hex, so every
// key with the prefix lies in [handle, handle+"g"). Tombstones are left
// to expire (they hold no session), and expired sessions, already gone,
// are neither deleted nor counted; expiry is judged by the store's clock
// (Options.Now), because the admin API, the only caller, is not on a
// request path.
func (s *Store) DeleteByHandle(ctx context.Context, handle string) (int, error) {
	if !cookie.IsHandle(handle) {
		return 0, fmt.Errorf("mongostore: delete by handle: a handle is %d lower-case hex digits", cookie.HandleLen)
	}
	if err := s.writeConcernProblem(); err != nil {
		return 0, fmt.Errorf("mongostore: delete by handle: %w", err)
	}
	filter := bson.D{
		{Key: fieldID, Value: bson.D{{Key: "$gte", Value: handle}, {Key: "$lt", Value: handle + "g"}}},
		{Key: fieldRotated, Value: bson.D{{Key: "$exists", Value: false}}},
		{Key: fieldExpires, Value: bson.D{{Key: "$gt", Value: s.now()}}},
	}
	return s.deleteMany(ctx, "delete by handle", filter)
}

func (s *Store) deleteMany(ctx context.Context, op string, filter bson.D) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	res, err := s.coll.DeleteMany(ctx, filter)
	if err != nil {
		return 0, s.opError(op, err)
	}
	return int(res.DeletedCount), nil
}
