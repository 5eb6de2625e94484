package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// ssoTests check store.SidIndex, store.IdPSubIndex, store.SubjectLimiter
// and store.ReplayGuard, and the device fields of a record.
var ssoTests = []test{
	{"DeviceFields", testDeviceFields},
	{"DeleteBySid", testDeleteBySid},
	{"DeleteByIdPSub", testDeleteByIdPSub},
	{"LimitSubject", testLimitSubject},
	{"ConcurrentLimitSubject", testConcurrentLimitSubject},
	{"FirstUse", testFirstUse},
	{"ConcurrentFirstUse", testConcurrentFirstUse},
}

// createDevice creates a session of subject with sid and device fields.
func createDevice(t *testing.T, s store.Store, c clock, subject, sid string, created, expires time.Time) string {
	t.Helper()
	key := newKey(t)
	rec := newRecord(c, `{"who":"`+subject+`"}`, expires)
	rec.Created, rec.Updated = created, created
	rec.Subject, rec.Sid = subject, sid
	rec.UserAgent, rec.Addr = "agent "+randomHex(t, 4), "203.0.113.0/24"
	mustCreate(t, s, key, rec)
	return key
}

func testDeviceFields(t *testing.T, s store.Store) {
	c := newClock()
	subject, sid := newSubject(t), "sid-"+randomHex(t, 8)
	key := newKey(t)
	rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
	rec.Subject, rec.Sid, rec.IdPSub = subject, sid, "idp|"+subject
	rec.UserAgent, rec.Addr = "Mozilla/5.0 (X11; Linux x86_64) \u00e9", "2001:db8:1::/48"
	mustCreate(t, s, key, rec)
	checkUnchanged(t, s, key, c.at(0), stored(rec))

	// An Update replaces Sid and IdPSub and keeps what Create stored of
	// the device.
	up := update(c, 1, `{"a":2}`, subject, 0, c.at(time.Hour))
	up.Sid, up.IdPSub, up.UserAgent, up.Addr = "sid-other", "\x0042", "changed", "198.51.100.0/24"
	mustUpdate(t, s, key, up, c.at(time.Second))
	got := mustFind(t, s, key, c.at(time.Second))
	if got.Sid != "sid-other" || got.IdPSub != "\x0042" || got.UserAgent != rec.UserAgent || got.Addr != rec.Addr {
		t.Fatalf("after Update: Sid, IdPSub, UserAgent, Addr = %q, %q, %q, %q; want the new sid and IdP subject and the created device",
			got.Sid, got.IdPSub, got.UserAgent, got.Addr)
	}
	// FindBySubject lists the device.
	wantListed(t, s, subject, c.at(time.Second), summaryOf(t, s, key, c.at(time.Second)))
	// Update to no sid drops it.
	up = update(c, 2, `{}`, subject, 0, c.at(time.Hour))
	mustUpdate(t, s, key, up, c.at(2*time.Second))
	if got := mustFind(t, s, key, c.at(2*time.Second)); got.Sid != "" || got.IdPSub != "" {
		t.Fatalf("after an Update without sid and IdP subject: Sid = %q, IdPSub = %q", got.Sid, got.IdPSub)
	}
}

func wantSidDeleted(t *testing.T, s store.Store, sid string, n int) {
	t.Helper()
	got, err := s.(store.SidIndex).DeleteBySid(ctx(t), sid)
	if err != nil {
		t.Fatalf("DeleteBySid: %v", err)
	}
	if got != n {
		t.Fatalf("DeleteBySid(%q) deleted %d sessions, want %d", sid, got, n)
	}
}

func testDeleteBySid(t *testing.T, s store.Store) {
	c := newClock()
	subject := newSubject(t)
	sid, other := "sid-"+randomHex(t, 8), "sid-"+randomHex(t, 8)
	a := createDevice(t, s, c, subject, sid, c.at(0), c.at(time.Hour))
	b := createDevice(t, s, c, newSubject(t), sid, c.at(0), c.at(time.Hour))
	expired := createDevice(t, s, c, subject, sid, c.at(0), c.at(time.Minute))
	rotated := createDevice(t, s, c, subject, sid, c.at(0), c.at(time.Hour))
	mustRotate(t, s, rotated, 1, "successor09", c.at(time.Hour), c.at(time.Second))
	keep := createDevice(t, s, c, subject, other, c.at(0), c.at(time.Hour))
	none := createDevice(t, s, c, subject, "", c.at(0), c.at(time.Hour))
	moved := createDevice(t, s, c, subject, sid, c.at(0), c.at(time.Hour))
	up := update(c, 1, `{}`, subject, 0, c.at(time.Hour))
	up.Sid = other
	mustUpdate(t, s, moved, up, c.at(time.Second))

	// a, b and the expired one (still stored); not the tombstone, not the
	// session whose sid moved.
	wantSidDeleted(t, s, sid, 3)
	wantNotFound(t, s, a, c.at(2*time.Second))
	wantNotFound(t, s, b, c.at(2*time.Second))
	wantNotFound(t, s, expired, c.at(0))
	wantRotated(t, s, rotated, c.at(2*time.Second), "successor09")
	for _, key := range []string{keep, none, moved} {
		mustFind(t, s, key, c.at(2*time.Second))
	}
	wantSidDeleted(t, s, sid, 0)
	wantSidDeleted(t, s, "", 0)
	// The subject index forgot the deleted ones.
	wantListed(t, s, subject, c.at(2*time.Second),
		summaryOf(t, s, keep, c.at(2*time.Second)), summaryOf(t, s, none, c.at(2*time.Second)), summaryOf(t, s, moved, c.at(2*time.Second)))
	wantSidDeleted(t, s, other, 2)
}

func limit(t *testing.T, s store.Store, subject string, n int, now time.Time) int {
	t.Helper()
	got, err := s.(store.SubjectLimiter).LimitSubject(ctx(t), subject, n, now)
	if err != nil {
		t.Fatalf("LimitSubject: %v", err)
	}
	return got
}

func testLimitSubject(t *testing.T, s store.Store) {
	c := newClock()
	subject := newSubject(t)
	// Four live sessions, seen (touched) at 4, 1, 3 and 2 minutes; two
	// created and seen at the same instant (ordered by key); one expired
	// at 30 s; one tombstone; one of another subject.
	var keys []string
	for _, seen := range []time.Duration{4, 1, 3, 2} {
		k := createDevice(t, s, c, subject, "", c.at(0), c.at(time.Hour))
		if err := s.Touch(ctx(t), k, c.at(time.Hour), c.at(seen*time.Minute)); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		keys = append(keys, k)
	}
	tie1 := createDevice(t, s, c, subject, "", c.at(30*time.Second), c.at(time.Hour))
	tie2 := createDevice(t, s, c, subject, "", c.at(30*time.Second), c.at(time.Hour))
	expired := createDevice(t, s, c, subject, "", c.at(0), c.at(30*time.Second))
	rotated := createDevice(t, s, c, subject, "", c.at(0), c.at(time.Hour))
	mustRotate(t, s, rotated, 1, "successor10", c.at(time.Hour), c.at(time.Second))
	other := createDevice(t, s, c, newSubject(t), "", c.at(0), c.at(time.Hour))
	now := c.at(5 * time.Minute)

	if got := limit(t, s, subject, 0, now); got != 0 {
		t.Fatalf("LimitSubject(0) deleted %d", got)
	}
	if got := limit(t, s, subject, 6, now); got != 0 {
		t.Fatalf("LimitSubject(6) of 6 live sessions deleted %d", got)
	}
	// 6 live; keep 3: seen at 4m, 3m, 2m. Then keep 1 (4m).
	if got := limit(t, s, subject, 3, now); got != 3 {
		t.Fatalf("LimitSubject(3) deleted %d, want 3", got)
	}
	for _, k := range []string{keys[1], tie1, tie2} {
		wantNotFound(t, s, k, now)
	}
	for _, k := range []string{keys[0], keys[2], keys[3]} {
		mustFind(t, s, k, now)
	}
	mustFind(t, s, other, now)
	wantRotated(t, s, rotated, now, "successor10")
	if got := limit(t, s, subject, 1, now); got != 2 {
		t.Fatalf("LimitSubject(1) deleted %d, want 2", got)
	}
	wantListed(t, s, subject, now, summaryOf(t, s, keys[0], now))
	// The expired one was not counted, listed or needed.
	if _, err := s.Find(ctx(t), expired, c.at(0)); err != nil {
		t.Fatalf("the expired session (read at its creation) was deleted: %v", err)
	}

	// Ties on Updated and Created go by key, descending.
	sub2 := newSubject(t)
	a := createDevice(t, s, c, sub2, "", c.at(0), c.at(time.Hour))
	b := createDevice(t, s, c, sub2, "", c.at(0), c.at(time.Hour))
	if got := limit(t, s, sub2, 1, now); got != 1 {
		t.Fatalf("LimitSubject(1) of two tied sessions deleted %d", got)
	}
	mustFind(t, s, max(a, b), now)
	wantNotFound(t, s, min(a, b), now)
}

// testConcurrentLimitSubject creates sessions of one subject from many
// goroutines, each then limiting the subject to n, as concurrent logins
// would. Whatever the interleaving exactly n survive (at most n, because
// the last limit saw every session; at least n, because every caller
// agrees on the order), and they are the n most recently seen.
func testConcurrentLimitSubject(t *testing.T, s store.Store) {
	const n = 3
	c := newClock()
	subject := newSubject(t)
	keys := make([]string, concurrency)
	for i := range keys {
		keys[i] = newKey(t)
	}
	ended := make([]int, concurrency)
	parallel(t, concurrency, func(i int) error {
		ctx, cancel := callCtx(t)
		defer cancel()
		// Seen times in a shuffled order, so the order of the calls is not
		// the order of the sessions.
		seen := c.at(time.Duration((i*7)%concurrency) * time.Millisecond)
		rec := newRecord(c, `{}`, c.at(time.Hour))
		rec.Subject, rec.Created, rec.Updated = subject, seen, seen
		if err := s.Create(ctx, keys[i], rec); err != nil {
			return err
		}
		var err error
		ended[i], err = s.(store.SubjectLimiter).LimitSubject(ctx, subject, n, c.at(time.Second))
		return err
	})
	now := c.at(time.Second)
	got, err := index(t, s).FindBySubject(ctx(t), subject, now)
	if err != nil {
		t.Fatalf("FindBySubject: %v", err)
	}
	if len(got) != n {
		t.Fatalf("%d sessions survive concurrent limits to %d", len(got), n)
	}
	var want []string
	for i := range keys {
		if (i*7)%concurrency >= concurrency-n {
			want = append(want, cookie.Handle(keys[i]))
		}
	}
	var handles []string
	for _, g := range got {
		handles = append(handles, g.Handle)
	}
	slices.Sort(want)
	slices.Sort(handles)
	if !slices.Equal(handles, want) {
		t.Fatalf("survivors %v, want the %d most recently seen %v", handles, n, want)
	}
	total := 0
	for _, e := range ended {
		total += e
	}
	if total != concurrency-n {
		t.Fatalf("the limits reported %d ended sessions, want %d", total, concurrency-n)
	}
}

func firstUse(t *testing.T, s store.Store, id string, until, now time.Time) bool {
	t.Helper()
	ok, err := s.(store.ReplayGuard).FirstUse(ctx(t), id, until, now)
	if err != nil {
		t.Fatalf("FirstUse: %v", err)
	}
	return ok
}

func testFirstUse(t *testing.T, s store.Store) {
	c := newClock()
	id := randomHex(t, 32)
	if !firstUse(t, s, id, c.at(time.Hour), c.at(0)) {
		t.Fatal("the first use of an id was refused")
	}
	for _, now := range []time.Duration{0, time.Minute, time.Hour - time.Millisecond} {
		if firstUse(t, s, id, c.at(2*time.Hour), c.at(now)) {
			t.Fatalf("a second use at +%v, before the id expired, was taken as first", now)
		}
	}
	if !firstUse(t, s, randomHex(t, 32), c.at(time.Hour), c.at(0)) {
		t.Fatal("another id was refused")
	}
	// Past its end the id may be used again (the token it came from is
	// no longer valid anyway), and is remembered anew.
	if !firstUse(t, s, id, c.at(3*time.Hour), c.at(time.Hour)) {
		t.Fatal("an id was refused after it expired")
	}
	if firstUse(t, s, id, c.at(3*time.Hour), c.at(2*time.Hour)) {
		t.Fatal("an id used again after expiry was not remembered")
	}
	// The ids are not sessions.
	if rec, err := s.Find(ctx(t), id, c.at(0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find(id) = %+v, %v", rec, err)
	}
}

func testConcurrentFirstUse(t *testing.T, s store.Store) {
	c := newClock()
	for r := range rounds {
		id := randomHex(t, 32)
		firsts := make([]bool, concurrency)
		parallel(t, concurrency, func(i int) error {
			ctx, cancel := callCtx(t)
			defer cancel()
			ok, err := s.(store.ReplayGuard).FirstUse(ctx, id, c.at(time.Hour), c.at(0))
			firsts[i] = ok
			return err
		})
		if n := strings.Count(fmt.Sprint(firsts), "true"); n != 1 {
			t.Fatalf("round %d: %d of %d concurrent uses of one id were first", r, n, concurrency)
		}
	}
}

// createIdPSub creates a session of subject whose IdPSub is isub and
// whose Sid is sid.
func createIdPSub(t *testing.T, s store.Store, c clock, subject, isub, sid string, expires time.Time) string {
	t.Helper()
	key := newKey(t)
	rec := newRecord(c, `{"who":"`+subject+`"}`, expires)
	rec.Subject, rec.IdPSub, rec.Sid = subject, isub, sid
	mustCreate(t, s, key, rec)
	return key
}

func wantIdPSubDeleted(t *testing.T, s store.Store, sub string, n int) {
	t.Helper()
	got, err := s.(store.IdPSubIndex).DeleteByIdPSub(ctx(t), sub)
	if err != nil {
		t.Fatalf("DeleteByIdPSub: %v", err)
	}
	if got != n {
		t.Fatalf("DeleteByIdPSub(%q) deleted %d sessions, want %d", sub, got, n)
	}
}

// testDeleteByIdPSub: the IdP subject index is its own: DeleteByIdPSub
// ends the sessions whose IdPSub matches (whatever their Subject and
// Sid), never one whose Subject or Sid alone has that value, and follows
// an Update that moves or drops the IdPSub.
func testDeleteByIdPSub(t *testing.T, s store.Store) {
	c := newClock()
	subject := newSubject(t)
	isub, other := "idp-"+randomHex(t, 8), "idp-"+randomHex(t, 8)
	a := createIdPSub(t, s, c, subject, isub, "", c.at(time.Hour))
	b := createIdPSub(t, s, c, newSubject(t), isub, "sid-"+randomHex(t, 8), c.at(time.Hour))
	expired := createIdPSub(t, s, c, subject, isub, "", c.at(time.Minute))
	rotated := createIdPSub(t, s, c, subject, isub, "", c.at(time.Hour))
	mustRotate(t, s, rotated, 1, "successor10", c.at(time.Hour), c.at(time.Second))
	keep := createIdPSub(t, s, c, subject, other, "", c.at(time.Hour))
	asSubject := createIdPSub(t, s, c, isub, "", "", c.at(time.Hour))  // the value as a Subject
	asSid := createIdPSub(t, s, c, subject, "", isub, c.at(time.Hour)) // the value as a Sid
	moved := createIdPSub(t, s, c, subject, isub, "", c.at(time.Hour))
	up := update(c, 1, `{}`, subject, 0, c.at(time.Hour))
	up.IdPSub = other
	mustUpdate(t, s, moved, up, c.at(time.Second))
	dropped := createIdPSub(t, s, c, subject, isub, "", c.at(time.Hour))
	mustUpdate(t, s, dropped, update(c, 1, `{}`, subject, 0, c.at(time.Hour)), c.at(time.Second))

	// a, b and the expired one (still stored); not the tombstone, not the
	// sessions whose IdP subject moved or went, not the value as a
	// subject or a sid.
	wantIdPSubDeleted(t, s, isub, 3)
	wantNotFound(t, s, a, c.at(2*time.Second))
	wantNotFound(t, s, b, c.at(2*time.Second))
	wantNotFound(t, s, expired, c.at(0))
	wantRotated(t, s, rotated, c.at(2*time.Second), "successor10")
	for _, key := range []string{keep, asSubject, asSid, moved, dropped} {
		mustFind(t, s, key, c.at(2*time.Second))
	}
	wantIdPSubDeleted(t, s, isub, 0)
	wantIdPSubDeleted(t, s, "", 0)
	// The subject index forgot the deleted ones.
	wantListed(t, s, subject, c.at(2*time.Second),
		summaryOf(t, s, keep, c.at(2*time.Second)), summaryOf(t, s, asSid, c.at(2*time.Second)),
		summaryOf(t, s, moved, c.at(2*time.Second)), summaryOf(t, s, dropped, c.at(2*time.Second)))
	wantIdPSubDeleted(t, s, other, 2)
	// The sid index is untouched by it.
	wantSidDeleted(t, s, isub, 1)
}
