// Package memstore is an in-process store.Store: sessions live in a map in
// this process and vanish when it exits. It suits a single Caddy instance
// and tests; use a shared store (MongoDB) when several instances serve the
// same sessions.
//
// # Sharing value bytes
//
// Find is on every request's path, so it copies the record and its data
// map but not the bytes of each json.RawMessage value: the returned
// values share their backing arrays with the store. This is safe because
// of one invariant: the store never writes into a value's bytes once it
// holds them. Create and Apply copy the caller's bytes into fresh arrays
// the store owns, and later changes replace a value with a new slice
// instead of editing the old one. Callers of Find may therefore replace,
// add and delete entries of the returned map freely, and may append to a
// returned value (every value has its capacity clipped to its length, so
// append reallocates), but must not write into a returned value's bytes
// in place.
package memstore

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// DefaultSweepInterval is how often expired sessions are removed when
// Options.SweepInterval is zero.
const DefaultSweepInterval = time.Minute

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// SweepInterval is how often the background sweeper removes expired
	// sessions. Zero means DefaultSweepInterval; a negative value turns
	// the sweeper off (expired sessions are then still invisible, but
	// only Delete frees their memory).
	SweepInterval time.Duration

	// Now is the sweeper's clock. Nil means time.Now. Only the sweeper
	// reads it: the Store methods take the time from their callers.
	Now func() time.Time
}

// Store is an in-memory store.Store. Create one with New and stop its
// sweeper with Close. All methods are safe for concurrent use.
type Store struct {
	mu       sync.RWMutex
	sessions map[string]*store.Record // records are never handed out, only copies

	now       func() time.Time
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Interface guard.
var _ store.Store = (*Store)(nil)

// New returns an empty Store and starts its sweeper. Only the first
// Options argument is used; it is variadic so New() takes the defaults.
func New(opts ...Options) *Store {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{
		sessions: make(map[string]*store.Record),
		now:      o.Now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if o.SweepInterval > 0 {
		go s.sweepLoop(o.SweepInterval)
	} else {
		close(s.done)
	}
	return s
}

// Close stops the sweeper and waits for it to finish. The sessions stay
// readable; Close only ends the background work. It is safe to call more
// than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Find returns a copy of the live session under key. The copy's values
// share bytes with the store: see the package documentation. ctx is
// unused because nothing here blocks for long.
func (s *Store) Find(_ context.Context, key string, now time.Time) (*store.Record, error) {
	s.mu.RLock()
	r, ok := s.sessions[key]
	if !ok || !now.Before(r.Expires) {
		s.mu.RUnlock()
		return nil, store.ErrNotFound
	}
	out := *r
	if len(r.Data) > 0 {
		// Copy the map while holding the lock: Apply edits it in place.
		out.Data = make(map[string]json.RawMessage, len(r.Data))
		for k, v := range r.Data {
			out.Data[k] = v
		}
	} else {
		out.Data = nil
	}
	s.mu.RUnlock()
	return &out, nil
}

// Create stores a deep copy of rec under key with Version 1. It returns
// store.ErrExists if the key is taken, even by an expired session.
func (s *Store) Create(_ context.Context, key string, rec *store.Record) error {
	if rec == nil {
		return errors.New("memstore: Create with nil record")
	}
	// Copy outside the lock so a large record does not stall readers.
	r := *rec
	r.Data = copyData(rec.Data)
	r.Version = 1

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.sessions[key]; taken {
		return store.ErrExists
	}
	s.sessions[key] = &r
	return nil
}

// Apply applies ch to the live session under key while holding the write
// lock, so concurrent changes to different keys of one session all land.
func (s *Store) Apply(_ context.Context, key string, ch store.Change, now time.Time) error {
	// Copy the new values before taking the lock; if the session turns
	// out to be dead the copy is wasted, which is the rare case.
	set := copyData(ch.Set)

	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.sessions[key]
	if !ok || !now.Before(r.Expires) {
		return store.ErrNotFound
	}
	// Editing r.Data in place is safe: readers copy the map under the read
	// lock, and the values removed or replaced here are never written to,
	// so copies already handed out stay intact.
	for _, k := range ch.Unset {
		delete(r.Data, k)
	}
	if len(set) > 0 && r.Data == nil {
		r.Data = make(map[string]json.RawMessage, len(set))
	}
	for k, v := range set {
		r.Data[k] = v
	}
	r.Updated = now
	r.Expires = ch.Expires
	if ch.MaxAge != nil {
		r.MaxAge = *ch.MaxAge
	}
	r.Version++
	return nil
}

// Touch moves the expiry of the live session under key and sets Updated,
// leaving data and Version alone.
func (s *Store) Touch(_ context.Context, key string, expires, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.sessions[key]
	if !ok || !now.Before(r.Expires) {
		return store.ErrNotFound
	}
	r.Expires = expires
	r.Updated = now
	return nil
}

// Delete removes the session under key, if any.
func (s *Store) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	delete(s.sessions, key)
	s.mu.Unlock()
	return nil
}

// Len returns the number of records held, expired ones not yet swept
// included. It is meant for metrics and tests.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
}

// Sweep removes every session that is dead at now and returns how many it
// removed. The sweeper calls it; it is exported so callers can sweep on
// their own schedule.
func (s *Store) Sweep(now time.Time) int {
	// Find the candidates under the read lock so requests keep flowing
	// during the scan, then delete them under the write lock, checking
	// again because a candidate may have been touched in between.
	var dead []string
	s.mu.RLock()
	for k, r := range s.sessions {
		if !now.Before(r.Expires) {
			dead = append(dead, k)
		}
	}
	s.mu.RUnlock()
	if len(dead) == 0 {
		return 0
	}

	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range dead {
		if r, ok := s.sessions[k]; ok && !now.Before(r.Expires) {
			delete(s.sessions, k)
			n++
		}
	}
	return n
}

func (s *Store) sweepLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep(s.now())
		}
	}
}

// copyData deep-copies m. All values are packed into one backing array
// (one allocation instead of one per value), each clipped to its own
// length so an append by a reader cannot spill into its neighbour. The
// cost is that one live value keeps the whole array alive; session values
// are small and written together, so that is cheaper than the per-value
// allocations. A nil or empty m gives nil.
func copyData(m map[string]json.RawMessage) map[string]json.RawMessage {
	if len(m) == 0 {
		return nil
	}
	size := 0
	for _, v := range m {
		size += len(v)
	}
	buf := make([]byte, 0, size)
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		start := len(buf)
		buf = append(buf, v...)
		out[k] = json.RawMessage(buf[start:len(buf):len(buf)])
	}
	return out
}
