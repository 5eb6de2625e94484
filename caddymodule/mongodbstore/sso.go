package mongodbstore

import (
	"context"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// The methods below go through the read cache when there is one, so what
// they end is dropped from it at once.

// DeleteBySid implements store.SidIndex.
func (m *MongoDBStore) DeleteBySid(ctx context.Context, sid string) (n int, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		n, err = s.DeleteBySid(ctx, sid)
		return err
	})
	return n, err
}

// DeleteByIdPSub implements store.IdPSubIndex.
func (m *MongoDBStore) DeleteByIdPSub(ctx context.Context, sub string) (n int, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		n, err = s.DeleteByIdPSub(ctx, sub)
		return err
	})
	return n, err
}

// LimitSubject implements store.SubjectLimiter.
func (m *MongoDBStore) LimitSubject(ctx context.Context, subject string, limit int, now time.Time) (n int, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		n, err = s.LimitSubject(ctx, subject, limit, now)
		return err
	})
	return n, err
}

// FirstUse implements store.ReplayGuard.
func (m *MongoDBStore) FirstUse(ctx context.Context, id string, until, now time.Time) (fresh bool, err error) {
	err = m.guard.use(func(s dataStore) (err error) {
		fresh, err = s.FirstUse(ctx, id, until, now)
		return err
	})
	return fresh, err
}

// Interface guards.
var (
	_ store.SidIndex       = (*MongoDBStore)(nil)
	_ store.IdPSubIndex    = (*MongoDBStore)(nil)
	_ store.SubjectLimiter = (*MongoDBStore)(nil)
	_ store.ReplayGuard    = (*MongoDBStore)(nil)
)
