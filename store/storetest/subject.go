package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// subjectTests check store.SubjectIndex. Beyond what store.go writes,
// they hold a store to one rule the gateway relies on: a tombstone left by
// Rotate has no subject, so it is neither listed nor deleted by subject
// (a revoke-others after a regenerate must not turn a slow request's
// "rotated" into "not found", which would expire the new cookie).
var subjectTests = []test{
	{"FindBySubject", testFindBySubject},
	{"DeleteBySubject", testDeleteBySubject},
	{"DeleteByHandle", testDeleteByHandle},
	{"SubjectMovesWithUpdate", testSubjectMoves},
	{"ConcurrentDeleteBySubject", testConcurrentDeleteBySubject},
	{"CanonicalSubjects", testCanonicalSubjects},
}

// index returns s as a store.SubjectIndex; the runners checked it is one.
func index(t *testing.T, s store.Store) store.SubjectIndex {
	t.Helper()
	idx, ok := s.(store.SubjectIndex)
	if !ok {
		t.Fatalf("%T does not implement store.SubjectIndex", s)
	}
	return idx
}

// createFor creates a session of subject under a new key and returns the
// key.
func createFor(t *testing.T, s store.Store, c clock, subject string, expires time.Time) string {
	t.Helper()
	key := newKey(t)
	rec := newRecord(c, `{"who":"`+subject+`"}`, expires)
	rec.Subject = subject
	mustCreate(t, s, key, rec)
	return key
}

// summaryOf is the Summary FindBySubject must give for the session under
// key, read with Find at now.
func summaryOf(t *testing.T, s store.Store, key string, now time.Time) store.Summary {
	t.Helper()
	rec := mustFind(t, s, key, now)
	return store.Summary{
		Handle: cookie.Handle(key), Created: rec.Created, Updated: rec.Updated, Expires: rec.Expires,
		UserAgent: rec.UserAgent, Addr: rec.Addr,
	}
}

// wantListed fails the test unless FindBySubject(subject, now) lists
// exactly want, in any order.
func wantListed(t *testing.T, s store.Store, subject string, now time.Time, want ...store.Summary) {
	t.Helper()
	got, err := index(t, s).FindBySubject(ctx(t), subject, now)
	if err != nil {
		t.Fatalf("FindBySubject: %v", err)
	}
	byHandle := func(a, b store.Summary) int { return strings.Compare(a.Handle, b.Handle) }
	slices.SortFunc(got, byHandle)
	want = slices.Clone(want)
	slices.SortFunc(want, byHandle)
	if len(got) != len(want) {
		t.Fatalf("FindBySubject at %v: got %d sessions %+v, want %d %+v", now, len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Handle != w.Handle || !g.Created.Equal(w.Created) || !g.Updated.Equal(w.Updated) || !g.Expires.Equal(w.Expires) ||
			g.UserAgent != w.UserAgent || g.Addr != w.Addr {
			t.Fatalf("FindBySubject at %v: got %+v, want %+v", now, g, w)
		}
	}
}

// wantDeleted fails the test unless DeleteBySubject(subject, except)
// reports n deletions.
func wantDeleted(t *testing.T, s store.Store, subject, except string, n int) {
	t.Helper()
	got, err := index(t, s).DeleteBySubject(ctx(t), subject, except)
	if err != nil {
		t.Fatalf("DeleteBySubject: %v", err)
	}
	if got != n {
		t.Fatalf("DeleteBySubject deleted %d sessions, want %d", got, n)
	}
}

// subjectFixture is a subject with sessions in every state, plus sessions
// of another subject and of none.
type subjectFixture struct {
	c                       clock
	subject                 string
	live, touched, expired  string // keys of subject
	rotated                 string // a tombstone, was of subject
	otherSubject, noSubject string // keys of other sessions
	otherSubjectName        string
}

// newSubjectFixture builds the fixture. At c.at(40m) expired has expired;
// touched was updated at 1m and touched at 35m.
func newSubjectFixture(t *testing.T, s store.Store) subjectFixture {
	c := newClock()
	f := subjectFixture{c: c, subject: newSubject(t), otherSubjectName: newSubject(t)}
	f.live = createFor(t, s, c, f.subject, c.at(time.Hour))
	f.touched = createFor(t, s, c, f.subject, c.at(time.Hour))
	up := update(c, 1, `{"n":1}`, f.subject, 0, c.at(2*time.Hour))
	mustUpdate(t, s, f.touched, up, c.at(time.Minute))
	if err := s.Touch(ctx(t), f.touched, c.at(3*time.Hour), c.at(35*time.Minute)); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	f.expired = createFor(t, s, c, f.subject, c.at(30*time.Minute))
	f.rotated = createFor(t, s, c, f.subject, c.at(time.Hour))
	mustRotate(t, s, f.rotated, 1, "successor08", c.at(5*time.Hour), c.at(10*time.Second))
	f.otherSubject = createFor(t, s, c, f.otherSubjectName, c.at(time.Hour))
	f.noSubject = createFor(t, s, c, "", c.at(time.Hour))
	return f
}

func testFindBySubject(t *testing.T, s store.Store) {
	f := newSubjectFixture(t, s)
	c := f.c
	live := summaryOf(t, s, f.live, c.at(0))
	touched := summaryOf(t, s, f.touched, c.at(0))
	expired := summaryOf(t, s, f.expired, c.at(0))
	if !touched.Updated.Equal(c.at(35*time.Minute)) || !touched.Expires.Equal(c.at(3*time.Hour)) {
		t.Fatalf("the touched session reads %+v", touched)
	}

	wantListed(t, s, f.subject, c.at(40*time.Minute), live, touched)
	wantListed(t, s, f.subject, c.at(0), live, touched, expired)
	wantListed(t, s, f.subject, c.at(2*time.Hour), touched)
	wantListed(t, s, f.otherSubjectName, c.at(0), summaryOf(t, s, f.otherSubject, c.at(0)))
	wantListed(t, s, newSubject(t), c.at(0))
}

func testDeleteBySubject(t *testing.T, s store.Store) {
	t.Run("all", func(t *testing.T) {
		f := newSubjectFixture(t, s)
		c := f.c
		// The expired session counts (it is still stored); the
		// tombstone does not.
		wantDeleted(t, s, f.subject, "", 3)
		for _, key := range []string{f.live, f.touched, f.expired} {
			wantNotFound(t, s, key, c.at(0))
		}
		wantRotated(t, s, f.rotated, c.at(0), "successor08")
		mustFind(t, s, f.otherSubject, c.at(0))
		mustFind(t, s, f.noSubject, c.at(0))
		wantListed(t, s, f.subject, c.at(0))
		wantDeleted(t, s, f.subject, "", 0)
		// The keys are free again.
		mustCreate(t, s, f.live, newRecord(c, `{}`, c.at(time.Hour)))
	})
	t.Run("except", func(t *testing.T) {
		c := newClock()
		subject := newSubject(t)
		keys := []string{
			createFor(t, s, c, subject, c.at(time.Hour)),
			createFor(t, s, c, subject, c.at(time.Hour)),
			createFor(t, s, c, subject, c.at(time.Hour)),
		}
		kept := mustFind(t, s, keys[1], c.at(0))
		wantDeleted(t, s, subject, keys[1], 2)
		wantNotFound(t, s, keys[0], c.at(0))
		wantNotFound(t, s, keys[2], c.at(0))
		checkUnchanged(t, s, keys[1], c.at(0), kept)
		wantListed(t, s, subject, c.at(0), summaryOf(t, s, keys[1], c.at(0)))
	})
	t.Run("except a key of another subject", func(t *testing.T) {
		c := newClock()
		subject, other := newSubject(t), newSubject(t)
		mine := createFor(t, s, c, subject, c.at(time.Hour))
		theirs := createFor(t, s, c, other, c.at(time.Hour))
		wantDeleted(t, s, subject, theirs, 1)
		wantNotFound(t, s, mine, c.at(0))
		mustFind(t, s, theirs, c.at(0))
	})
	t.Run("unknown subject", func(t *testing.T) {
		wantDeleted(t, s, newSubject(t), "", 0)
	})
}

func testDeleteByHandle(t *testing.T, s store.Store) {
	t.Run("one key", func(t *testing.T) {
		c := newClock()
		subject := newSubject(t)
		key := createFor(t, s, c, subject, c.at(time.Hour))
		other := createFor(t, s, c, subject, c.at(time.Hour))
		wantHandleDeleted(t, s, cookie.Handle(key), 1)
		wantNotFound(t, s, key, c.at(0))
		mustFind(t, s, other, c.at(0))
		// The subject index forgot it too.
		wantListed(t, s, subject, c.at(0), summaryOf(t, s, other, c.at(0)))
		wantDeleted(t, s, subject, other, 0)
		wantHandleDeleted(t, s, cookie.Handle(key), 0)
	})
	t.Run("keys sharing a handle", func(t *testing.T) {
		c := newClock()
		handle := randomHex(t, 6)
		a, b := handle+randomHex(t, 26), handle+randomHex(t, 26)
		// A neighbour whose handle differs in the last digit.
		last := "0"
		if handle[11] == '0' {
			last = "1"
		}
		neighbour := handle[:11] + last + randomHex(t, 26)
		for _, key := range []string{a, b, neighbour} {
			mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
		}
		wantHandleDeleted(t, s, handle, 2)
		wantNotFound(t, s, a, c.at(0))
		wantNotFound(t, s, b, c.at(0))
		mustFind(t, s, neighbour, c.at(0))
	})
	t.Run("unknown handle", func(t *testing.T) {
		wantHandleDeleted(t, s, randomHex(t, 6), 0)
	})
	// A tombstone holds no session: revoking the old handle of a session
	// that logged in since deletes nothing, counts nothing, and leaves the
	// tombstone its window (issue 17 item 4).
	t.Run("tombstone", func(t *testing.T) {
		c := newClock()
		key := createFor(t, s, c, newSubject(t), c.at(time.Hour))
		mustRotate(t, s, key, 1, "0123456789ab", c.at(2*time.Minute), c.at(0))
		wantHandleDeleted(t, s, cookie.Handle(key), 0)
		wantRotated(t, s, key, c.at(0), "0123456789ab")
	})
	t.Run("destroyed", func(t *testing.T) {
		c := newClock()
		key := createFor(t, s, c, newSubject(t), c.at(time.Hour))
		mustRotate(t, s, key, 1, "destroyed", c.at(0), c.at(0))
		wantHandleDeleted(t, s, cookie.Handle(key), 0)
	})
	// An expired session is already gone: nothing to revoke. The store
	// judges expiry by its own clock (the wall clock here).
	t.Run("expired", func(t *testing.T) {
		c := newClock()
		key := createFor(t, s, c, newSubject(t), c.at(-time.Minute))
		wantHandleDeleted(t, s, cookie.Handle(key), 0)
	})
}

// wantHandleDeleted fails the test unless DeleteByHandle(handle) reports n
// deletions.
func wantHandleDeleted(t *testing.T, s store.Store, handle string, n int) {
	t.Helper()
	got, err := index(t, s).DeleteByHandle(ctx(t), handle)
	if err != nil {
		t.Fatalf("DeleteByHandle: %v", err)
	}
	if got != n {
		t.Fatalf("DeleteByHandle deleted %d sessions, want %d", got, n)
	}
}

// testSubjectMoves checks that an Update that changes Subject moves the
// session from one subject to the other in the index.
func testSubjectMoves(t *testing.T, s store.Store) {
	c := newClock()
	a, b := newSubject(t), newSubject(t)
	key := createFor(t, s, c, a, c.at(time.Hour))
	steps := []struct {
		name, subject string
	}{
		{"to another subject", b},
		{"to no subject", ""},
		{"back to the first", a},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now := c.at(time.Duration(i+1) * time.Second)
			mustUpdate(t, s, key, update(c, int64(i+1), `{}`, st.subject, 0, c.at(time.Hour)), now)
			sum := summaryOf(t, s, key, now)
			for _, subject := range []string{a, b} {
				if subject == st.subject {
					wantListed(t, s, subject, now, sum)
				} else {
					wantListed(t, s, subject, now)
					wantDeleted(t, s, subject, "", 0)
				}
			}
			mustFind(t, s, key, now)
		})
	}
}

// testConcurrentDeleteBySubject deletes a subject while writers keep
// updating and touching its sessions and new sessions of it are created.
// The property: every session that had the subject when DeleteBySubject
// began, and whose writers only keep the subject, is gone afterwards; no
// racing Update or Touch brings it back. Sessions created during the
// delete either were deleted (and counted) or survive, and the index
// stays in step with the records: FindBySubject lists exactly the
// survivors.
func testConcurrentDeleteBySubject(t *testing.T, s store.Store) {
	c := newClock()
	subject := newSubject(t)
	old := make([]string, concurrency)
	for i := range old {
		old[i] = createFor(t, s, c, subject, c.at(time.Hour))
	}
	created := make([]string, concurrency)
	for i := range created {
		created[i] = newKey(t)
	}
	idx := index(t, s)
	deleted := -1
	now := c.at(time.Second)
	parallel(t, 2*concurrency+1, func(i int) error {
		ctx, cancel := callCtx(t)
		defer cancel()
		switch {
		case i < concurrency:
			return writeUntilGone(ctx, s, old[i], c, now)
		case i < 2*concurrency:
			rec := newRecord(c, `{"new":true}`, c.at(time.Hour))
			rec.Subject = subject
			return s.Create(ctx, created[i-concurrency], rec)
		default:
			n, err := idx.DeleteBySubject(ctx, subject, "")
			deleted = n
			return err
		}
	})

	for _, key := range old {
		wantNotFound(t, s, key, now)
		wantNotFound(t, s, key, c.at(0))
	}
	var survivors []store.Summary
	for _, key := range created {
		_, err := s.Find(ctx(t), key, now)
		switch {
		case err == nil:
			survivors = append(survivors, summaryOf(t, s, key, now))
		case !errors.Is(err, store.ErrNotFound):
			t.Fatalf("Find: %v", err)
		}
	}
	if want := 2*concurrency - len(survivors); deleted != want {
		t.Fatalf("DeleteBySubject deleted %d sessions; %d old and %d of %d new are gone, so want %d",
			deleted, concurrency, concurrency-len(survivors), concurrency, want)
	}
	wantListed(t, s, subject, now, survivors...)
}

// writeUntilGone updates (keeping the subject) and touches the session
// under key until it is gone, as requests of a user being revoked would.
func writeUntilGone(ctx context.Context, s store.Store, key string, c clock, now time.Time) error {
	for range maxAttempts {
		rec, err := s.Find(ctx, key, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find: %w", err)
		}
		next := *rec
		next.Data = raw(fmt.Sprintf(`{"v":%d}`, rec.Version))
		next.Expires = c.at(2 * time.Hour)
		if err := s.Update(ctx, key, &next, now); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("update: %w", err)
		}
		if err := s.Touch(ctx, key, c.at(3*time.Hour), now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("touch: %w", err)
		}
	}
	return nil // still there: the checks after the race report it
}

// testCanonicalSubjects checks that the store keeps every subject
// store.CanonicalSubject can spell as the exact string it is: the number
// 42 ("\x0042", NUL first) and the string "42" are two subjects, and a
// subject of store.MaxSubjectLen bytes is found and deleted like any
// other (issue 17 items 3 and 7).
func testCanonicalSubjects(t *testing.T, s store.Store) {
	c := newClock()
	digits := "4" + strings.Map(func(r rune) rune { return '0' + r%10 }, randomHex(t, 8))
	tagged, err := store.CanonicalSubject(json.Number(digits))
	if err != nil {
		t.Fatal(err)
	}
	long := newSubject(t) + strings.Repeat("x", store.MaxSubjectLen)
	long = long[:store.MaxSubjectLen]
	keys := map[string]string{}
	for _, sub := range []string{digits, tagged, long} {
		key := newKey(t)
		rec := newRecord(c, `{}`, c.at(time.Hour))
		rec.Subject = sub
		mustCreate(t, s, key, rec)
		keys[sub] = key
	}
	for sub, key := range keys {
		wantListed(t, s, sub, c.at(0), summaryOf(t, s, key, c.at(0)))
	}
	wantDeleted(t, s, tagged, "", 1)
	wantNotFound(t, s, keys[tagged], c.at(0))
	mustFind(t, s, keys[digits], c.at(0))
	wantDeleted(t, s, long, "", 1)
	wantDeleted(t, s, digits, "", 1)
}
