package memstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"
)

// DefaultMaxUsedIDs bounds the ids FirstUse remembers (per process).
const DefaultMaxUsedIDs = 100_000

// errUsedFull is returned by FirstUse when DefaultMaxUsedIDs live ids are
// remembered: the store cannot tell a replay, so the caller fails closed.
var errUsedFull = errors.New("memstore: too many one-time ids remembered; refusing until some expire")

// DeleteBySid deletes every session whose Sid is sid, from the sid map
// (no scan).
func (s *Store) DeleteBySid(_ context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeAll(s.sids[sid], ""), nil
}

// DeleteByIdPSub deletes every session whose IdPSub is sub, from the IdP
// subject map (no scan).
func (s *Store) DeleteByIdPSub(_ context.Context, sub string) (int, error) {
	if sub == "" {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeAll(s.isubs[sub], ""), nil
}

// LimitSubject keeps the n most recently seen live sessions of subject
// and deletes its other live ones, from the subject map (no scan), as one
// step under the lock; see store.SubjectLimiter.
func (s *Store) LimitSubject(_ context.Context, subject string, n int, now time.Time) (int, error) {
	if n < 1 || subject == "" {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.subjects[subject]
	if len(set) <= n {
		return 0, nil
	}
	live := make([]*entry, 0, len(set))
	for e := range set {
		if e.live(now) {
			live = append(live, e)
		}
	}
	if len(live) <= n {
		return 0, nil
	}
	slices.SortFunc(live, func(a, b *entry) int {
		return cmp.Or(b.rec.Updated.Compare(a.rec.Updated), b.rec.Created.Compare(a.rec.Created), cmp.Compare(b.key, a.key))
	})
	for _, e := range live[n:] {
		s.remove(e)
	}
	return len(live) - n, nil
}

// FirstUse records id until `until`; see store.ReplayGuard. The ids live
// in this process only, at most DefaultMaxUsedIDs of them: when that many
// are live, FirstUse fails (closed) instead of forgetting one.
func (s *Store) FirstUse(_ context.Context, id string, until, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end, ok := s.used[id]; ok && end.After(now) {
		return false, nil
	}
	if len(s.used) >= s.maxUsed {
		for k, end := range s.used {
			if !end.After(now) {
				delete(s.used, k)
			}
		}
		if len(s.used) >= s.maxUsed {
			return false, errUsedFull
		}
	}
	s.used[id] = until
	return true, nil
}
