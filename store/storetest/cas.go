package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// mustRotate rotates a record and fails the test if the store refuses.
func mustRotate(t *testing.T, s store.Store, key string, version int64, successor string, until, now time.Time) {
	t.Helper()
	if err := s.Rotate(ctx(t), key, version, successor, until, now); err != nil {
		t.Fatalf("Rotate at version %d: %v", version, err)
	}
}

// update builds the record an Update writes: new data, subject, max-age
// and expiry, based on version. Created and Updated hold values a store
// must ignore.
func update(c clock, version int64, data, subject string, maxAge time.Duration, expires time.Time) *store.Record {
	return &store.Record{
		Data:    raw(data),
		Subject: subject,
		Created: c.at(-24 * time.Hour),
		Updated: c.at(-24 * time.Hour),
		Expires: expires,
		MaxAge:  maxAge,
		Version: version,
	}
}

// testUpdate checks a chain of compare-and-set hits: each replaces Data,
// Subject, MaxAge and Expires, sets Updated to now and adds one to
// Version, and keeps Created.
func testUpdate(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
	rec.Subject = "ann"
	mustCreate(t, s, key, rec)

	steps := []struct {
		name string
		rec  *store.Record
		now  time.Time
	}{
		{"longer expiry, new subject", update(c, 1, `{"a":2,"b":[true]}`, "bob", 90*time.Second, c.at(2*time.Hour)), c.at(time.Minute)},
		{"no subject, default max-age", update(c, 2, `{"a":3}`, "", 0, c.at(3*time.Hour)), c.at(2 * time.Minute)},
		{"shorter expiry", update(c, 3, `{"a":4}`, "carl", time.Minute, c.at(10*time.Minute)), c.at(3 * time.Minute)},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mustUpdate(t, s, key, st.rec, st.now)
			want := *st.rec
			want.Data = wantData(st.rec.Data)
			want.Created = rec.Created
			want.Updated = st.now
			want.Version = st.rec.Version + 1
			checkUnchanged(t, s, key, st.now, &want)
			// The new expiry is in force, later or earlier than before.
			mustFind(t, s, key, st.rec.Expires.Add(-time.Millisecond))
			wantNotFound(t, s, key, st.rec.Expires)
		})
	}
}

// testUpdateConflict checks every way an Update can miss: it returns
// ErrConflict, writes nothing and brings nothing back.
func testUpdateConflict(t *testing.T, s store.Store) {
	late := func(c clock, version int64) *store.Record {
		return update(c, version, `{"zombie":true}`, "zombie", time.Hour, c.at(5*time.Hour))
	}
	conflict := func(t *testing.T, key string, rec *store.Record, now time.Time) {
		t.Helper()
		wantErr(t, "Update", s.Update(ctx(t), key, rec, now), store.ErrConflict)
	}
	for _, version := range []int64{0, 1, 3} {
		t.Run(fmt.Sprintf("version %d of a session at 2", version), func(t *testing.T) {
			c := newClock()
			key := newKey(t)
			mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
			up := update(c, 1, `{"a":2}`, "ann", time.Minute, c.at(time.Hour))
			mustUpdate(t, s, key, up, c.at(time.Second))
			want := mustFind(t, s, key, c.at(time.Second))
			conflict(t, key, late(c, version), c.at(time.Minute))
			checkUnchanged(t, s, key, c.at(time.Minute), want)
		})
	}
	t.Run("missing", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		for _, v := range []int64{0, 1} {
			conflict(t, key, late(c, v), c.at(0))
		}
		wantNotFound(t, s, key, c.at(0))
		// The key is free: Create works and nothing of the Update leaked in.
		fresh := newRecord(c, `{"a":1}`, c.at(time.Hour))
		mustCreate(t, s, key, fresh)
		checkUnchanged(t, s, key, c.at(0), stored(fresh))
	})
	t.Run("deleted", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		conflict(t, key, late(c, 1), c.at(time.Second))
		wantNotFound(t, s, key, c.at(time.Second))
		fresh := newRecord(c, `{"b":2}`, c.at(time.Hour))
		mustCreate(t, s, key, fresh)
		checkUnchanged(t, s, key, c.at(time.Second), stored(fresh))
	})
	t.Run("expired", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
		mustCreate(t, s, key, rec)
		// At exactly Expires the session is dead.
		conflict(t, key, late(c, 1), c.at(time.Hour))
		conflict(t, key, late(c, 1), c.at(2*time.Hour))
		// Not revived: the refused Update's later expiry did not land.
		wantNotFound(t, s, key, c.at(2*time.Hour))
		wantNotFound(t, s, key, c.at(4*time.Hour))
		checkUnchanged(t, s, key, c.at(time.Minute), stored(rec))
	})
	t.Run("rotated", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
		mustRotate(t, s, key, 1, "successor02", c.at(time.Minute), c.at(time.Second))
		conflict(t, key, late(c, 1), c.at(2*time.Second))
		wantRotated(t, s, key, c.at(2*time.Second), "successor02")
		wantNotFound(t, s, key, c.at(2*time.Hour))
	})
}

// testTouch checks that Touch moves Expires and Updated forward only, and
// leaves Data, Subject, MaxAge and Version alone.
func testTouch(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
	mustCreate(t, s, key, rec)
	up := update(c, 1, `{"a":2}`, "ann", 30*time.Minute, c.at(time.Hour))
	mustUpdate(t, s, key, up, c.at(time.Second))
	want := mustFind(t, s, key, c.at(time.Second))

	steps := []struct {
		name             string
		expires, now     time.Time
		wantExp, wantUpd time.Time
	}{
		{"both forward", c.at(3 * time.Hour), c.at(30 * time.Minute), c.at(3 * time.Hour), c.at(30 * time.Minute)},
		{"earlier expiry is ignored", c.at(40 * time.Minute), c.at(35 * time.Minute), c.at(3 * time.Hour), c.at(35 * time.Minute)},
		{"earlier now is ignored", c.at(4 * time.Hour), c.at(31 * time.Minute), c.at(4 * time.Hour), c.at(35 * time.Minute)},
		{"both earlier", c.at(2 * time.Hour), c.at(32 * time.Minute), c.at(4 * time.Hour), c.at(35 * time.Minute)},
		{"same values", c.at(4 * time.Hour), c.at(35 * time.Minute), c.at(4 * time.Hour), c.at(35 * time.Minute)},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := s.Touch(ctx(t), key, st.expires, st.now); err != nil {
				t.Fatalf("Touch: %v", err)
			}
			want.Expires, want.Updated = st.wantExp, st.wantUpd
			checkUnchanged(t, s, key, st.now, want)
		})
	}
	// The longest expiry is in force.
	mustFind(t, s, key, c.at(4*time.Hour-time.Millisecond))
	wantNotFound(t, s, key, c.at(4*time.Hour))
}

// testTouchDead checks that Touch answers ErrNotFound, and changes
// nothing, when no live session has the key.
func testTouchDead(t *testing.T, s store.Store) {
	touch := func(t *testing.T, key string, now time.Time) {
		t.Helper()
		c := newClock()
		wantErr(t, "Touch", s.Touch(ctx(t), key, c.at(5*time.Hour), now), store.ErrNotFound)
	}
	t.Run("missing", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		touch(t, key, c.at(0))
		wantNotFound(t, s, key, c.at(0))
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
	})
	t.Run("deleted", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		touch(t, key, c.at(0))
		wantNotFound(t, s, key, c.at(0))
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
	})
	t.Run("expired", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
		mustCreate(t, s, key, rec)
		touch(t, key, c.at(time.Hour))
		touch(t, key, c.at(2*time.Hour))
		wantNotFound(t, s, key, c.at(2*time.Hour))
		checkUnchanged(t, s, key, c.at(time.Minute), stored(rec))
	})
	t.Run("rotated", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
		mustRotate(t, s, key, 1, "successor03", c.at(time.Minute), c.at(time.Second))
		touch(t, key, c.at(2*time.Second))
		wantRotated(t, s, key, c.at(2*time.Second), "successor03")
		// The touch did not extend the tombstone.
		wantNotFound(t, s, key, c.at(time.Minute))
	})
}

// testRotate checks a successful Rotate: the data is gone, Find names the
// successor until `until` and then reports ErrNotFound, every write on
// the tombstone is refused, and Delete removes it.
func testRotate(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, `{"user":"ann"}`, c.at(time.Hour)))
	mustUpdate(t, s, key, update(c, 1, `{"user":"ann","n":1}`, "ann", 0, c.at(time.Hour)), c.at(time.Second))
	until := c.at(10 * time.Minute)
	mustRotate(t, s, key, 2, "successor04", until, c.at(time.Minute))

	// From any instant before until, even one before the rotation, the
	// data is gone and the successor is named.
	for _, now := range []time.Time{c.at(0), c.at(time.Minute), until.Add(-time.Millisecond)} {
		wantRotated(t, s, key, now, "successor04")
	}
	wantNotFound(t, s, key, until)
	wantNotFound(t, s, key, c.at(2*time.Hour))

	now := c.at(2 * time.Minute)
	wantErr(t, "Update on a tombstone", s.Update(ctx(t), key, update(c, 2, `{"zombie":1}`, "ann", 0, c.at(5*time.Hour)), now), store.ErrConflict)
	wantErr(t, "Touch on a tombstone", s.Touch(ctx(t), key, c.at(5*time.Hour), now), store.ErrNotFound)
	wantErr(t, "Rotate of a tombstone", s.Rotate(ctx(t), key, 2, "successor05", c.at(5*time.Hour), now), store.ErrConflict)
	wantErr(t, "Create over a tombstone", s.Create(ctx(t), key, newRecord(c, `{}`, c.at(5*time.Hour))), store.ErrExists)
	wantRotated(t, s, key, now, "successor04")
	wantNotFound(t, s, key, until)

	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatalf("Delete of a tombstone: %v", err)
	}
	wantNotFound(t, s, key, now)
	fresh := newRecord(c, `{"fresh":true}`, c.at(time.Hour))
	mustCreate(t, s, key, fresh)
	checkUnchanged(t, s, key, now, stored(fresh))
}

// testRotateOutlivesExpiry checks that the tombstone lasts until `until`
// even when the session would have expired before.
func testRotateOutlivesExpiry(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
	mustRotate(t, s, key, 1, "successor06", c.at(61*time.Minute), c.at(59*time.Minute))
	wantRotated(t, s, key, c.at(60*time.Minute), "successor06")
	wantNotFound(t, s, key, c.at(61*time.Minute))
}

// testRotateConflict checks every way a Rotate can miss: it returns
// ErrConflict and changes nothing.
func testRotateConflict(t *testing.T, s store.Store) {
	rotate := func(t *testing.T, key string, version int64, now time.Time) {
		t.Helper()
		c := newClock()
		err := s.Rotate(ctx(t), key, version, "loser", c.at(5*time.Hour), now)
		wantErr(t, "Rotate", err, store.ErrConflict)
	}
	for _, version := range []int64{0, 2} {
		t.Run(fmt.Sprintf("version %d of a session at 1", version), func(t *testing.T) {
			c := newClock()
			key := newKey(t)
			rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
			mustCreate(t, s, key, rec)
			rotate(t, key, version, c.at(time.Second))
			checkUnchanged(t, s, key, c.at(time.Second), stored(rec))
		})
	}
	t.Run("missing", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		rotate(t, key, 1, c.at(0))
		wantNotFound(t, s, key, c.at(0))
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
	})
	t.Run("deleted", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		rotate(t, key, 1, c.at(0))
		wantNotFound(t, s, key, c.at(0))
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
	})
	t.Run("expired", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
		mustCreate(t, s, key, rec)
		rotate(t, key, 1, c.at(time.Hour))
		// No tombstone was left: the expired session is still there,
		// unchanged, as seen from a time it was live.
		wantNotFound(t, s, key, c.at(2*time.Hour))
		checkUnchanged(t, s, key, c.at(time.Minute), stored(rec))
	})
	t.Run("already rotated", func(t *testing.T) {
		c := newClock()
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, `{}`, c.at(time.Hour)))
		mustRotate(t, s, key, 1, "successor07", c.at(time.Minute), c.at(time.Second))
		rotate(t, key, 1, c.at(2*time.Second))
		wantRotated(t, s, key, c.at(2*time.Second), "successor07")
		wantNotFound(t, s, key, c.at(time.Minute))
	})
}
