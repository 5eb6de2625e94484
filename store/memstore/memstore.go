// Package memstore is an in-process store.Store: sessions live in a map in
// this process and vanish when it exits. It suits a single Caddy instance
// and tests; use a shared store (MongoDB) when several instances serve the
// same sessions.
//
// # Bounded
//
// The store holds at most Options.MaxSessions records (live sessions,
// expired ones not yet swept, and tombstones). When a Create would go over
// the bound, records are evicted in this order, so a flood of anonymous
// sessions (any route that writes for a cookieless visitor) cannot log
// users out or undo a login:
//
//  1. tombstones whose window has ended (dead already);
//  2. anonymous sessions, least recently used first: sessions with no
//     Subject that were not created by a regenerate (Record.Login);
//  3. logged-in sessions (a Subject, or Record.Login), least recently
//     used first, only once no anonymous session is left;
//  4. never a tombstone before its window ends, and never the session
//     being created: if nothing else is left, the store goes over its
//     bound by the tombstones still in their window (two minutes of
//     logins with the gateway's settings).
//
// So when only logged-in sessions are left, a new anonymous session
// evicts one of them and the next evicts that anonymous one: a flood
// costs at most one logged-in user per time the store fills with them.
//
// Find, Create, Update and Touch count as a use. Options.OnEvict hears
// about every eviction and Options.OnEvictLoggedIn about those of
// logged-in sessions, so the owner can log and count them; the store itself logs nothing and never
// hands session data to anyone but Find's caller.
//
// # Sharing records
//
// Find is on every request's path, so it returns the stored *store.Record
// itself, not a copy (store.Store allows it: found records are
// read-only). This is safe because the store never changes a record once
// it holds it: Create copies the caller's record and bytes, and Update,
// Touch and Rotate put a new record in the entry instead of editing the
// old one, so a reader keeps a consistent snapshot while writers go on.
// Data's capacity is clipped to its length, so an append by a reader
// reallocates.
//
// # Locking
//
// One mutex guards everything, because every operation, Find included,
// moves the record to the front of the use list. The critical sections
// are a map lookup and a few pointer moves; BenchmarkFindParallel shows the
// cost under contention. The sweeper and DeleteByHandle scan every
// record, tens of milliseconds for 100 000 records on a slow machine
// (BenchmarkSweep), so they release the lock every scanChunk records.
package memstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// DefaultSweepInterval is how often expired sessions are removed when
// Options.SweepInterval is zero.
const DefaultSweepInterval = time.Minute

// DefaultMaxSessions is the bound on stored records when
// Options.MaxSessions is zero. At about 0.8 KB per small session (about
// 9 KB at the default size cap; TestMemoryPerSession measures both) it
// keeps the store near 80 MB in the common case.
const DefaultMaxSessions = 100_000

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// SweepInterval is how often the background sweeper removes expired
	// sessions and tombstones. Zero means DefaultSweepInterval; a negative
	// value turns the sweeper off (expired sessions are then still
	// invisible, but only Delete and eviction free their memory).
	SweepInterval time.Duration

	// Now is the sweeper's clock. Nil means time.Now. Only the sweeper
	// reads it: the Store methods take the time from their callers.
	Now func() time.Time

	// MaxSessions bounds the number of records held. Zero or less means
	// DefaultMaxSessions.
	MaxSessions int

	// OnEvict, when not nil, is called after a Create (or SetMaxSessions)
	// evicted n records to stay within MaxSessions, whatever their class.
	// It runs on the goroutine that called Create, after the store's lock
	// is released, so it may call the store; it should return quickly.
	OnEvict func(n int)

	// OnEvictLoggedIn, when not nil, is called like OnEvict, after it,
	// with how many of the n were logged-in sessions (see the package
	// documentation): users logged out because even with every anonymous
	// session gone the store was full. It is worth more than a warning.
	OnEvictLoggedIn func(n int)
}

// entry is one stored record and its place in the use list.
type entry struct {
	key string
	// rec is never changed once stored, only replaced, so Find can hand
	// it out (see the package documentation).
	rec *store.Record
	// successor is set when the record is a tombstone (see Rotate): then
	// rec holds only Expires (the tombstone's end) and no Subject.
	successor string
	tombstone bool
	// login is Record.Login as Create was given it; rec does not keep it
	// (Update's records replace rec).
	login bool
	// class is the use list e is on (see classOf).
	class uint8

	prev, next *entry // the use list, most recent first
}

// Use lists, one per eviction class (see the package documentation).
const (
	anonymousList = iota
	loggedInList
	tombstoneList
	numLists
)

// live reports whether e is a session (not a tombstone) alive at now.
func (e *entry) live(now time.Time) bool {
	return !e.tombstone && now.Before(e.rec.Expires)
}

// Store is an in-memory store.Store and store.SubjectIndex. Create one
// with New and stop its sweeper with Close. All methods are safe for
// concurrent use.
type Store struct {
	mu       sync.Mutex
	entries  map[string]*entry
	subjects map[string]map[*entry]struct{} // Subject -> its records, kept in step with entries
	sids     map[string]map[*entry]struct{} // Sid -> its records, kept in step with entries
	isubs    map[string]map[*entry]struct{} // IdPSub -> its records, kept in step with entries
	used     map[string]time.Time           // FirstUse ids -> until
	maxUsed  int
	// lists are the sentinels of the use lists, one per eviction class:
	// lists[c].next is the most recently used of class c. A tombstone is
	// never used again, so its list runs from the newest to the oldest,
	// ended ones (a destroy's) at the far end: see Rotate.
	lists [numLists]entry

	max             int
	onEvict         func(int)
	onEvictLoggedIn func(int)
	// evictedAnon and evictedUsers count evictions since New, for a
	// counter metric (Evictions).
	evictedAnon, evictedUsers atomic.Uint64

	now       func() time.Time
	stop      chan struct{}
	done      chan struct{}
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

// emptyObject is the Data of a record written without data. It is shared
// by every such record, which is safe because Data bytes are read-only.
var emptyObject = []byte(`{}`)[:2:2]

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
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	s := &Store{
		entries:         make(map[string]*entry),
		subjects:        make(map[string]map[*entry]struct{}),
		sids:            make(map[string]map[*entry]struct{}),
		isubs:           make(map[string]map[*entry]struct{}),
		used:            make(map[string]time.Time),
		maxUsed:         DefaultMaxUsedIDs,
		max:             o.MaxSessions,
		onEvict:         o.OnEvict,
		onEvictLoggedIn: o.OnEvictLoggedIn,
		now:             o.Now,
		stop:            make(chan struct{}),
		done:            make(chan struct{}),
	}
	for i := range s.lists {
		s.lists[i].next, s.lists[i].prev = &s.lists[i], &s.lists[i]
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

// MaxSessions returns the bound on stored records.
func (s *Store) MaxSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// SetMaxSessions changes the bound on stored records (zero or less means
// DefaultMaxSessions), evicting the least recently used records at once
// if the store holds more. OnEvict hears about those evictions too.
func (s *Store) SetMaxSessions(n int) {
	if n <= 0 {
		n = DefaultMaxSessions
	}
	now := s.now()
	s.mu.Lock()
	s.max = n
	anon, users := s.evict(now, nil)
	s.mu.Unlock()
	s.evicted(anon, users)
}

// Evictions returns how many records the store has evicted since New:
// anonymous sessions and ended tombstones, and logged-in sessions (see
// the package documentation). It is meant for a counter metric: a rise
// in loggedIn means users were logged out because the store was full of
// logged-in sessions.
func (s *Store) Evictions() (anonymous, loggedIn uint64) {
	return s.evictedAnon.Load(), s.evictedUsers.Load()
}

// Len returns the number of records held: live sessions, expired ones not
// yet swept and tombstones. It is meant for a gauge and for tests.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Find returns the live session under key, or a *store.RotatedError for a
// tombstone. The record is shared and read-only: see the package
// documentation. ctx is unused because nothing here blocks for long.
func (s *Store) Find(_ context.Context, key string, now time.Time) (*store.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !now.Before(e.rec.Expires) {
		return nil, store.ErrNotFound
	}
	if e.tombstone {
		return nil, &store.RotatedError{Successor: e.successor}
	}
	s.use(e)
	return e.rec, nil
}

// Create stores a copy of rec under key with Version 1. It returns
// store.ErrExists if the key is taken, even by an expired session or a
// tombstone. When the store is full it evicts the least recently used
// records.
func (s *Store) Create(_ context.Context, key string, rec *store.Record) error {
	if rec == nil {
		return errors.New("memstore: Create with nil record")
	}
	// Copy outside the lock so a large record does not stall others.
	own := *rec
	own.Data, own.Version, own.Login = copyData(rec.Data), 1, false
	e := &entry{key: key, rec: &own, login: rec.Login}

	s.mu.Lock()
	if _, taken := s.entries[key]; taken {
		s.mu.Unlock()
		return store.ErrExists
	}
	s.entries[key] = e
	s.link(e)
	s.index(e)
	// Create has no now of its own; the new record's Updated (or Created)
	// is the caller's now.
	now := rec.Updated
	if rec.Created.After(now) {
		now = rec.Created
	}
	anon, users := s.evict(now, e)
	s.mu.Unlock()
	s.evicted(anon, users)
	return nil
}

// evict removes records until the store is within its bound, in the order
// the package documentation gives, and returns how many anonymous records
// (ended tombstones included) and logged-in sessions it removed. now
// decides which tombstones have ended. It never removes keep, the record
// being created (nil for none): a Create that succeeded leaves a session.
// The caller holds s.mu.
func (s *Store) evict(now time.Time, keep *entry) (anonymous, loggedIn int) {
	// oldest is the least recently used record on list l, or nil.
	oldest := func(l *entry) *entry {
		if e := l.prev; e != l && e != keep {
			return e
		}
		return nil
	}
	for len(s.entries) > s.max {
		if e := oldest(&s.lists[tombstoneList]); e != nil && !now.Before(e.rec.Expires) {
			s.remove(e)
			anonymous++
		} else if e := oldest(&s.lists[anonymousList]); e != nil {
			s.remove(e)
			anonymous++
		} else if e := oldest(&s.lists[loggedInList]); e != nil {
			s.remove(e)
			loggedIn++
		} else {
			// Only tombstones in their window are left: keep them.
			break
		}
	}
	return anonymous, loggedIn
}

// evicted tells OnEvict about evictions, if any. The caller does not hold
// s.mu.
func (s *Store) evicted(anonymous, loggedIn int) {
	s.evictedAnon.Add(uint64(anonymous))
	s.evictedUsers.Add(uint64(loggedIn))
	if anonymous+loggedIn > 0 && s.onEvict != nil {
		s.onEvict(anonymous + loggedIn)
	}
	if loggedIn > 0 && s.onEvictLoggedIn != nil {
		s.onEvictLoggedIn(loggedIn)
	}
}

// Update replaces Data, Subject, MaxAge and Expires of the live session
// under key if its Version is rec.Version; see store.Store.
func (s *Store) Update(_ context.Context, key string, rec *store.Record, now time.Time) error {
	// Copy before taking the lock; on a conflict the copy is wasted,
	// which is the rare case.
	data := copyData(rec.Data)

	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !e.live(now) || e.rec.Version != rec.Version {
		return store.ErrConflict
	}
	next := *e.rec
	next.Data, next.Subject, next.MaxAge, next.Expires = data, rec.Subject, rec.MaxAge, rec.Expires
	next.Sid, next.IdPSub = rec.Sid, rec.IdPSub
	next.Updated, next.Version = now, next.Version+1
	s.replace(e, &next)
	s.use(e)
	return nil
}

// Touch moves the expiry and update time of the live session under key
// forward, never back; see store.Store.
func (s *Store) Touch(_ context.Context, key string, expires, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !e.live(now) {
		return store.ErrNotFound
	}
	next := *e.rec
	if expires.After(next.Expires) {
		next.Expires = expires
	}
	if now.After(next.Updated) {
		next.Updated = now
	}
	e.rec = &next
	s.use(e)
	return nil
}

// Rotate turns the live session under key, at version, into a tombstone
// naming successor until `until`; see store.Store. The tombstone has no
// subject: it is not listed or deleted by subject.
func (s *Store) Rotate(_ context.Context, key string, version int64, successor string, until, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !e.live(now) || e.rec.Version != version {
		return store.ErrConflict
	}
	e.tombstone, e.successor = true, successor
	s.replace(e, &store.Record{Expires: until})
	if !now.Before(until) {
		// A destroy's tombstone has ended already: it goes to the far end
		// of the list, first to be evicted. The others end in the order
		// they were made, as the gateway gives every window one length.
		s.unlink(e)
		l := &s.lists[tombstoneList]
		e.class, e.next, e.prev = tombstoneList, l, l.prev
		e.prev.next = e
		l.prev = e
	}
	return nil
}

// Delete removes the session or tombstone under key, if any.
func (s *Store) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		s.remove(e)
	}
	return nil
}

// FindBySubject lists the live sessions of subject at now, from the
// subject map (no scan).
func (s *Store) FindBySubject(_ context.Context, subject string, now time.Time) ([]store.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Summary
	for e := range s.subjects[subject] {
		if e.live(now) {
			out = append(out, store.Summary{
				Handle:    cookie.Handle(e.key),
				Created:   e.rec.Created,
				Updated:   e.rec.Updated,
				Expires:   e.rec.Expires,
				UserAgent: e.rec.UserAgent,
				Addr:      e.rec.Addr,
			})
		}
	}
	return out, nil
}

// DeleteBySubject deletes every session of subject but the one under
// exceptKey, expired ones not yet swept included, from the subject map
// (no scan).
func (s *Store) DeleteBySubject(_ context.Context, subject, exceptKey string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeAll(s.subjects[subject], exceptKey), nil
}

// removeAll removes every record of set (an index's records for one
// value) but the one under exceptKey, and returns how many it removed.
// The caller holds s.mu.
func (s *Store) removeAll(set map[*entry]struct{}, exceptKey string) int {
	n := 0
	for e := range set {
		if e.key != exceptKey { // keys are never empty: "" excepts none
			s.remove(e)
			n++
		}
	}
	return n
}

// errBadHandle is returned by DeleteByHandle for a handle that is not 12
// hex digits: a shorter prefix could match many sessions.
var errBadHandle = errors.New("memstore: a handle is 12 lower-case hex digits")

// DeleteByHandle deletes the live sessions whose key starts with handle.
// Tombstones and expired sessions are neither deleted nor counted, as in
// every store: a tombstone holds no session and must last its window,
// and an expired session is already gone. Expiry is judged by the store's
// clock (Options.Now), because the admin API, its only caller, is not on
// a request path. Unlike the other lookups it scans every record (see
// removeWhere): the memory store keeps no index by handle, because an
// index would cost memory on every session.
func (s *Store) DeleteByHandle(_ context.Context, handle string) (int, error) {
	if !cookie.IsHandle(handle) {
		return 0, errBadHandle
	}
	now := s.now()
	return s.removeWhere(func(e *entry) bool {
		return len(e.key) >= len(handle) && e.key[:len(handle)] == handle && e.live(now)
	}), nil
}

// Sweep removes every session and tombstone that is dead at now and
// returns how many it removed. The sweeper calls it; it is exported so
// callers can sweep on their own schedule.
func (s *Store) Sweep(now time.Time) int {
	s.mu.Lock()
	for id, end := range s.used {
		if !end.After(now) {
			delete(s.used, id)
		}
	}
	s.mu.Unlock()
	return s.removeWhere(func(e *entry) bool { return !now.Before(e.rec.Expires) })
}

// scanChunk is how many records a scan looks at before it lets other
// callers take the lock: about 0.2 ms of work on a slow machine.
const scanChunk = 1024

// removeWhere removes every record for which dead is true and returns how
// many it removed. It releases the lock every scanChunk records so
// requests keep flowing during a scan of a large store. The map may
// change in between; as with any change during a range loop, a record
// added meanwhile may or may not be looked at, and one removed meanwhile
// is not.
func (s *Store) removeWhere(dead func(*entry) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, seen := 0, 0
	for _, e := range s.entries {
		if dead(e) {
			s.remove(e)
			n++
		}
		if seen++; seen%scanChunk == 0 {
			s.mu.Unlock()
			s.mu.Lock()
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

// classOf is the use list e belongs on: tombstones, logged-in sessions
// (a subject, or created by a regenerate), or anonymous ones.
func classOf(e *entry) uint8 {
	switch {
	case e.tombstone:
		return tombstoneList
	case e.login || e.rec.Subject != "":
		return loggedInList
	}
	return anonymousList
}

// link puts e at the front of its class's use list. The caller holds s.mu.
func (s *Store) link(e *entry) {
	e.class = classOf(e)
	l := &s.lists[e.class]
	e.prev, e.next = l, l.next
	e.next.prev = e
	l.next = e
}

// unlink takes e out of its use list. The caller holds s.mu.
func (s *Store) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// use moves e to the front of its use list. The caller holds s.mu.
func (s *Store) use(e *entry) {
	if s.lists[e.class].next != e {
		s.unlink(e)
		s.link(e)
	}
}

// remove forgets e everywhere. The caller holds s.mu.
func (s *Store) remove(e *entry) {
	delete(s.entries, e.key)
	s.unlink(e)
	s.unindex(e)
}

// index adds e to its subject's, its sid's and its IdP subject's sets.
// The caller holds s.mu.
func (s *Store) index(e *entry) {
	addTo(s.subjects, e.rec.Subject, e)
	addTo(s.sids, e.rec.Sid, e)
	addTo(s.isubs, e.rec.IdPSub, e)
}

// unindex removes e from its subject's, its sid's and its IdP subject's
// sets. The caller holds s.mu.
func (s *Store) unindex(e *entry) {
	removeFrom(s.subjects, e.rec.Subject, e)
	removeFrom(s.sids, e.rec.Sid, e)
	removeFrom(s.isubs, e.rec.IdPSub, e)
}

func addTo(m map[string]map[*entry]struct{}, name string, e *entry) {
	if name == "" {
		return
	}
	set := m[name]
	if set == nil {
		set = make(map[*entry]struct{})
		m[name] = set
	}
	set[e] = struct{}{}
}

func removeFrom(m map[string]map[*entry]struct{}, name string, e *entry) {
	set := m[name]
	if set == nil {
		return
	}
	delete(set, e)
	if len(set) == 0 {
		delete(m, name)
	}
}

// replace puts rec in e in place of its record, moves e to rec's
// subject's and sid's sets, and to the use list of its class if that
// changed (a session that gained a subject, or became a tombstone). The
// caller holds s.mu.
func (s *Store) replace(e *entry, rec *store.Record) {
	if e.rec.Subject != rec.Subject || e.rec.Sid != rec.Sid || e.rec.IdPSub != rec.IdPSub {
		s.unindex(e)
		e.rec = rec
		s.index(e)
	} else {
		e.rec = rec
	}
	if classOf(e) != e.class {
		s.unlink(e)
		s.link(e)
	}
}

// copyData returns a copy of data the store owns, with its capacity
// clipped to its length; nil or empty data gives {}.
func copyData(data []byte) []byte {
	if len(data) == 0 {
		return emptyObject
	}
	return append(make([]byte, 0, len(data)), data...)
}
