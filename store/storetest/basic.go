package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

func testFindMissing(t *testing.T, s store.Store) {
	c := newClock()
	wantNotFound(t, s, newKey(t), c.at(0))
}

func testCreateThenFind(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, `{"user":{"id":42,"name":"Zo\u00eb"}}`, c.at(time.Hour))
	rec.Subject = "user-42"
	rec.Version = 99 // ignored: Create stores 1
	mustCreate(t, s, key, rec)
	checkUnchanged(t, s, key, c.at(time.Second), stored(rec))

	// A key is exact: a neighbour of a stored key is not found.
	wantNotFound(t, s, key[:len(key)-1], c.at(time.Second))
	wantNotFound(t, s, key+"0", c.at(time.Second))
}

// testCreateNeverOverwrites checks that Create refuses a taken key, whether
// the session under it is live, expired or a tombstone, and changes
// nothing.
func testCreateNeverOverwrites(t *testing.T, s store.Store) {
	intruder := func(c clock) *store.Record {
		rec := newRecord(c, `{"who":"second"}`, c.at(5*time.Hour))
		rec.Subject = "intruder"
		rec.Created = c.at(2 * time.Hour)
		rec.MaxAge = time.Minute
		return rec
	}
	t.Run("live", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		first := newRecord(c, `{"who":"first"}`, c.at(time.Hour))
		mustCreate(t, s, key, first)
		wantErr(t, "second Create", s.Create(ctx(t), key, intruder(c)), store.ErrExists)
		checkUnchanged(t, s, key, c.at(time.Minute), stored(first))
	})
	t.Run("expired", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		old := newRecord(c, `{"who":"old"}`, c.at(time.Hour))
		mustCreate(t, s, key, old)
		// At c.at(2h) the old session is dead, but the key is still taken.
		wantNotFound(t, s, key, c.at(2*time.Hour))
		wantErr(t, "Create over an expired session", s.Create(ctx(t), key, intruder(c)), store.ErrExists)
		wantNotFound(t, s, key, c.at(2*time.Hour))
		// Seen from a time it was live, it is exactly what was created.
		checkUnchanged(t, s, key, c.at(time.Minute), stored(old))
	})
	t.Run("tombstone", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{"who":"old"}`, c.at(time.Hour)))
		mustRotate(t, s, key, 1, "successor01", c.at(time.Minute), c.at(0))
		wantErr(t, "Create over a tombstone", s.Create(ctx(t), key, intruder(c)), store.ErrExists)
		wantRotated(t, s, key, c.at(0), "successor01")
		// Past the tombstone's end the key is still taken until cleaned up.
		wantErr(t, "Create over an ended tombstone", s.Create(ctx(t), key, intruder(c)), store.ErrExists)
		wantNotFound(t, s, key, c.at(2*time.Hour))
	})
}

func testFindFiltersExpired(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	expires := c.at(time.Hour)
	mustCreate(t, s, key, newRecord(c, `{"a":1}`, expires))

	mustFind(t, s, key, c.at(0))
	mustFind(t, s, key, expires.Add(-time.Millisecond))
	// Expires is the instant the session stops existing: at it, dead.
	wantNotFound(t, s, key, expires)
	wantNotFound(t, s, key, expires.Add(time.Millisecond))
	wantNotFound(t, s, key, c.at(24*time.Hour))
	// Finding does not delete: earlier instants still see it.
	mustFind(t, s, key, c.at(time.Minute))
}

func testDeleteIdempotent(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatalf("Delete of missing key: %v", err)
	}
	other := newKey(t)
	mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
	mustCreate(t, s, other, newRecord(c, `{"b":2}`, c.at(time.Hour)))
	for i := range 2 {
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
		wantNotFound(t, s, key, c.at(0))
	}
	// Deleting one key leaves the others alone.
	mustFind(t, s, other, c.at(0))

	// A deleted key is free again: Create starts from scratch.
	fresh := newRecord(c, `{"c":3}`, c.at(time.Hour))
	mustCreate(t, s, key, fresh)
	checkUnchanged(t, s, key, c.at(0), stored(fresh))

	// An expired session is deleted as well, and its key freed.
	expired := newKey(t)
	mustCreate(t, s, expired, newRecord(c, `{"d":4}`, c.at(time.Minute)))
	if err := s.Delete(ctx(t), expired); err != nil {
		t.Fatalf("Delete of an expired session: %v", err)
	}
	wantNotFound(t, s, expired, c.at(0))
	mustCreate(t, s, expired, newRecord(c, `{"e":5}`, c.at(time.Hour)))
}

// testFoundRecordStaysAsFound checks that a record Find returned does not
// change when the session is written afterwards (Update with a new
// subject, Touch, Rotate): found records are read-only snapshots, which a
// store may share between callers but never edits in place.
func testFoundRecordStaysAsFound(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, `{"count":1,"user":"ann"}`, c.at(time.Hour))
	rec.Subject = "ann"
	mustCreate(t, s, key, rec)
	up := newRecord(c, `{"count":2,"user":"bob"}`, c.at(2*time.Hour))
	up.Version, up.Subject, up.MaxAge = 1, "bob", time.Minute
	for _, w := range []struct {
		name  string
		write func(now time.Time) error
	}{
		{"Update", func(now time.Time) error { return s.Update(ctx(t), key, up, now) }},
		{"Touch", func(now time.Time) error { return s.Touch(ctx(t), key, c.at(3*time.Hour), now) }},
		{"Rotate", func(now time.Time) error { return s.Rotate(ctx(t), key, 2, "successor01", c.at(4*time.Hour), now) }},
	} {
		now := c.at(time.Second)
		got := mustFind(t, s, key, now)
		want := *got
		want.Data = bytes.Clone(got.Data)
		if err := w.write(now); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		t.Logf("after %s", w.name)
		checkRecord(t, got, &want)
	}
}

// testCreateKeepsOwnCopy checks that a caller may reuse everything it
// passed to Create, down to the bytes.
func testCreateKeepsOwnCopy(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, `{"count":1,"user":"ann"}`, c.at(time.Hour))
	rec.Subject = "ann"
	rec.Data = append(make([]byte, 0, 64), rec.Data...) // spare capacity too
	mustCreate(t, s, key, rec)
	want := stored(rec)

	scribble(rec.Data)
	_ = append(rec.Data, "XXXX"...)
	rec.Subject = "mallory"
	rec.Expires = c.at(100 * time.Hour)
	rec.Version = 42
	rec.MaxAge = time.Nanosecond

	checkUnchanged(t, s, key, c.at(0), want)
}

// testUpdateKeepsOwnCopy checks the same for Update.
func testUpdateKeepsOwnCopy(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))

	up := newRecord(c, `{"a":{"b":[1,2,3]},"s":"string"}`, c.at(time.Hour))
	up.Version, up.Subject, up.MaxAge = 1, "ann", time.Minute
	mustUpdate(t, s, key, up, c.at(time.Second))
	want := stored(up)
	want.Updated, want.Version = c.at(time.Second), 2

	scribble(up.Data)
	up.Subject = "mallory"
	up.MaxAge = time.Hour
	up.Version = 41

	checkUnchanged(t, s, key, c.at(time.Second), want)
}

// scribble overwrites b in place.
func scribble(b []byte) {
	for i := range b {
		b[i] = ' '
	}
}
