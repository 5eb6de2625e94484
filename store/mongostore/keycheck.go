package mongostore

import (
	"bytes"
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/store"
)

// Check documents tell a wrong key at start-up from "everyone was logged
// out". Each encryption key has one, in the sessions collection:
//
//	{_id: "seal-check:<key id>", f: 3, k: "<key id>", data: BinData(<checkText sealed>),
//	 sk: "<subject key id>", first: ISODate(<the last start with this key first>)}
//
// They have no expires (the TTL index and the sweep leave them), no sub
// (the subject index never finds them), and an _id outside the hex range
// of store keys (DeleteByHandle never reaches them). The newest is the
// one whose key was most recently configured first, the key sealing new
// sessions: a store none of whose keys opens it logs an error at start-up.
const (
	checkIDPrefix     = "seal-check:"
	fieldFirst        = "first"
	fieldSubjectKeyID = "sk"
	checkText         = "caddy-session check document"
)

// checkDoc is what a check document says.
type checkDoc struct {
	id, keyID, subjectKeyID string
	blob                    []byte
	first                   time.Time
}

// checkKeys reads the check documents and reports, at error level, keys
// that cannot open the newest one and a subject key that changed; then
// records the configured keys (only when they open the newest). It returns an error only for an
// outage (retried).
func (s *Store) checkKeys(ctx context.Context) error {
	sl := s.sealer
	if sl == nil {
		// A store without keys sends nothing more at start-up than before
		// sealing existed; a sealed session it meets is logged then.
		return nil
	}
	docs, err := s.readCheckDocs(ctx)
	if err != nil {
		return err
	}
	newest := newestCheck(docs)
	switch {
	case newest != nil && !sl.opensCheck(newest):
		s.log.Error("none of the configured encryption keys opens the newest check document: a key is wrong (a typo?) or missing; sessions sealed under it read as no session",
			zap.String("newest_key_id", newest.keyID), zap.Time("first_since", newest.first),
			zap.Strings("configured_key_ids", sl.keyIDs()))
		return nil
	case newest != nil && newest.subjectKeyID != "" && newest.subjectKeyID != sl.subjectID:
		s.log.Error("the subject_key differs from the one recorded with the newest check document: sessions stored under the other one are not found by subject (revoke-all, the admin API)",
			zap.String("recorded_subject_key_id", newest.subjectKeyID), zap.String("subject_key_id", sl.subjectID))
	}
	return s.writeCheckDocs(ctx, docs)
}

// readCheckDocs reads every check document (one per key ever used).
func (s *Store) readCheckDocs(ctx context.Context) ([]checkDoc, error) {
	filter := bson.D{{Key: fieldID, Value: bson.D{{Key: "$gte", Value: checkIDPrefix}, {Key: "$lt", Value: checkIDPrefix[:len(checkIDPrefix)-1] + ";"}}}}
	cur, err := s.coll.Find(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var docs []checkDoc
	for cur.Next(ctx) {
		var d checkDoc
		raw := cur.Current
		d.id, _ = raw.Lookup(fieldID).StringValueOK()
		d.keyID, _ = raw.Lookup(fieldKeyID).StringValueOK()
		d.subjectKeyID, _ = raw.Lookup(fieldSubjectKeyID).StringValueOK()
		if _, b, ok := raw.Lookup(fieldData).BinaryOK(); ok {
			d.blob = bytes.Clone(b)
		}
		if t, ok := raw.Lookup(fieldFirst).TimeOK(); ok {
			d.first = t
		}
		docs = append(docs, d)
	}
	return docs, cur.Err()
}

// newestCheck returns the check document whose key was most recently
// configured first, or nil.
func newestCheck(docs []checkDoc) *checkDoc {
	var newest *checkDoc
	for i := range docs {
		if d := &docs[i]; !d.first.IsZero() && (newest == nil || d.first.After(newest.first)) {
			newest = d
		}
	}
	return newest
}

// opensCheck reports whether a configured key opens the check document.
func (sl *sealer) opensCheck(d *checkDoc) bool {
	o, err := sl.open(d.id, d.keyID, d.blob, nil, nil, nil)
	return err == nil && string(o.data) == checkText
}

// writeCheckDocs inserts a check document for every configured key that
// has none, and marks the first key's as the newest.
func (s *Store) writeCheckDocs(ctx context.Context, docs []checkDoc) error {
	have := map[string]bool{}
	for _, d := range docs {
		have[d.keyID] = true
	}
	sl := s.sealer
	for i, k := range sl.keys {
		if have[k.id] {
			continue
		}
		one := &sealer{keys: sl.keys[i : i+1]}
		id := checkIDPrefix + k.id
		p, err := one.seal(id, &store.Record{Data: []byte(checkText)})
		if err != nil {
			return nil // no randomness: nothing to retry
		}
		_, err = s.coll.InsertOne(ctx, bson.D{
			{Key: fieldID, Value: id}, {Key: fieldFormat, Value: formatSealed}, {Key: fieldKeyID, Value: k.id},
			{Key: fieldData, Value: bson.Binary{Data: p.blob}}, {Key: fieldSubjectKeyID, Value: sl.subjectID},
		})
		if err != nil && !mongo.IsDuplicateKeyError(err) {
			return s.checkWriteError(err)
		}
	}
	_, err := s.coll.UpdateOne(ctx, bson.D{{Key: fieldID, Value: checkIDPrefix + sl.keys[0].id}}, bson.D{
		{Key: "$max", Value: bson.D{{Key: fieldFirst, Value: s.now()}}},
		{Key: "$set", Value: bson.D{{Key: fieldSubjectKeyID, Value: sl.subjectID}}},
	})
	if err != nil {
		return s.checkWriteError(err)
	}
	return nil
}

// checkWriteError returns an outage (retried) and logs anything else.
func (s *Store) checkWriteError(err error) error {
	if isUnavailable(err) {
		return err
	}
	s.log.Warn("could not record the encryption keys' check documents; a wrong key will not be reported at start-up",
		zap.Error(s.redact.wrap(err)))
	return nil
}
