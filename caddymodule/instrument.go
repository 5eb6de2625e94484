package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiongate/caddy-session/store"
)

// instrumentedStore times every call to the store it wraps and counts
// its failures (caddy_session_store_duration_seconds and
// caddy_session_store_errors_total, labelled by store name and
// operation). It is the one place store metrics are taken. The label
// values are curried when the store is wrapped, so a call costs two clock
// reads and a histogram observation. Methods it does not define are the
// wrapped store's, untimed.
type instrumentedStore struct {
	store.Store
	obs   [numStoreOps]prometheus.Observer
	errs  [numStoreOps]prometheus.Counter
	cache readCache // nil unless the store serves some reads from memory
}

// readCache is implemented by store modules that can serve reads from a
// cache in memory (the MongoDB store with `cache`): a hit is counted by
// the cache and never timed (timing it would cost more than the hit),
// only the reads that reach the store are.
type readCache interface {
	// CacheOn reports whether the cache is in use.
	CacheOn() bool
	// CacheHit answers from memory alone; false on a miss.
	CacheHit(key string, now time.Time) (*store.Record, bool)
	// CacheLoad reads past the cache and fills it.
	CacheLoad(ctx context.Context, key string, now time.Time) (*store.Record, error)
}

// indexedStore is an instrumentedStore whose wrapped store has a subject
// index; it passes the index through, timed.
type indexedStore struct {
	*instrumentedStore
	idx subjectIndex
}

// instrument wraps inner for metrics under the store label name. The
// result implements subjectIndex, through idx (inner's own), if and only
// if idx is not nil.
func instrument(inner store.Store, idx subjectIndex, name string) store.Store {
	s := &instrumentedStore{Store: inner}
	s.obs, s.errs = storeObservers(name)
	if rc, ok := inner.(readCache); ok && rc.CacheOn() {
		s.cache = rc
	}
	if idx != nil {
		return &indexedStore{instrumentedStore: s, idx: idx}
	}
	return s
}

// Unwrap returns the wrapped store.
func (s *instrumentedStore) Unwrap() store.Store { return s.Store }

// done records one call of op that started at start and ended with err.
func (s *instrumentedStore) done(op storeOp, start time.Time, err error) {
	s.obs[op].Observe(time.Since(start).Seconds())
	if err != nil && !isStoreAnswer(err) {
		s.errs[op].Inc()
	}
}

// isStoreAnswer reports whether err is one of the contract's answers
// (not found, exists, conflict, rotated) rather than a failure.
func isStoreAnswer(err error) bool {
	for _, answer := range storeAnswers {
		if errors.Is(err, answer) {
			return true
		}
	}
	return false
}

// Find implements store.Store.
func (s *instrumentedStore) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	if s.cache != nil {
		return s.findCached(ctx, key, now)
	}
	start := time.Now()
	rec, err := s.Store.Find(ctx, key, now)
	s.done(storeFind, start, err)
	return rec, err
}

// findCached is Find through a read cache: a hit untimed, a load timed.
func (s *instrumentedStore) findCached(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	if rec, ok := s.cache.CacheHit(key, now); ok {
		return rec, nil
	}
	start := time.Now()
	rec, err := s.cache.CacheLoad(ctx, key, now)
	s.done(storeFind, start, err)
	return rec, err
}

// Create implements store.Store.
func (s *instrumentedStore) Create(ctx context.Context, key string, rec *store.Record) error {
	start := time.Now()
	err := s.Store.Create(ctx, key, rec)
	s.done(storeCreate, start, err)
	return err
}

// Touch implements store.Store.
func (s *instrumentedStore) Touch(ctx context.Context, key string, expires, now time.Time) error {
	start := time.Now()
	err := s.Store.Touch(ctx, key, expires, now)
	s.done(storeTouch, start, err)
	return err
}

// Delete implements store.Store.
func (s *instrumentedStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.Store.Delete(ctx, key)
	s.done(storeDelete, start, err)
	return err
}

// FindBySubject implements subjectIndex.
func (s *indexedStore) FindBySubject(ctx context.Context, subject string, now time.Time) ([]sessionSummary, error) {
	start := time.Now()
	list, err := s.idx.FindBySubject(ctx, subject, now)
	s.done(storeFindBySubject, start, err)
	return list, err
}

// DeleteBySubject implements subjectIndex.
func (s *indexedStore) DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error) {
	start := time.Now()
	n, err := s.idx.DeleteBySubject(ctx, subject, exceptKey)
	s.done(storeDeleteBySubject, start, err)
	return n, err
}

// DeleteByHandle implements subjectIndex.
func (s *indexedStore) DeleteByHandle(ctx context.Context, handle string) (int, error) {
	start := time.Now()
	n, err := s.idx.DeleteByHandle(ctx, handle)
	s.done(storeDeleteByHandle, start, err)
	return n, err
}

// Interface guards.
var (
	_ store.Store  = (*instrumentedStore)(nil)
	_ store.Store  = (*indexedStore)(nil)
	_ subjectIndex = (*indexedStore)(nil)
)

// Update implements store.Store.
func (s *instrumentedStore) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	start := time.Now()
	err := s.Store.Update(ctx, key, rec, now)
	s.done(storeUpdate, start, err)
	return err
}

// Rotate implements store.Store.
func (s *instrumentedStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	start := time.Now()
	err := s.Store.Rotate(ctx, key, version, successor, until, now)
	s.done(storeRotate, start, err)
	return err
}

// subjectIndex is the store's optional subject index.
type subjectIndex = store.SubjectIndex

// sessionSummary describes a session in a subject listing.
type sessionSummary = store.Summary

// storeAnswers are the store errors that are answers, not failures: they
// are not counted in caddy_session_store_errors_total.
var storeAnswers = []error{store.ErrNotFound, store.ErrExists, store.ErrConflict, store.ErrRotated}
