// Package storetest is the conformance suite for store.Store
// implementations. It checks every rule written in package store; an
// implementation that passes it is a valid Store.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// callTimeout bounds every store call the suite makes, so a hung store
// fails the test instead of hanging the whole run.
const callTimeout = 10 * time.Second

// concurrency is how many goroutines the concurrency tests start at once.
const concurrency = 16

// test is one named conformance test.
type test struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// coreTests check the store.Store methods.
var coreTests = []test{
	{"FindMissing", testFindMissing},
	{"CreateThenFind", testCreateThenFind},
	{"DataRoundTrip", testDataRoundTrip},
	{"EmptyDataReadsAsObject", testEmptyData},
	{"CreateNeverOverwrites", testCreateNeverOverwrites},
	{"FindFiltersExpired", testFindFiltersExpired},
	{"Update", testUpdate},
	{"UpdateConflict", testUpdateConflict},
	{"Touch", testTouch},
	{"TouchDead", testTouchDead},
	{"Rotate", testRotate},
	{"RotateOutlivesExpiry", testRotateOutlivesExpiry},
	{"RotateConflict", testRotateConflict},
	{"DeleteIdempotent", testDeleteIdempotent},
	{"FoundRecordStaysAsFound", testFoundRecordStaysAsFound},
	{"CreateKeepsOwnCopy", testCreateKeepsOwnCopy},
	{"UpdateKeepsOwnCopy", testUpdateKeepsOwnCopy},
	{"ConcurrentCASCounter", testConcurrentCASCounter},
	{"ConcurrentUpdateRotate", testConcurrentUpdateRotate},
	{"ConcurrentUpdateRotateDelete", testConcurrentUpdateRotateDelete},
	{"ConcurrentTouch", testConcurrentTouch},
	{"ConcurrentCreate", testConcurrentCreate},
}

// Run runs the conformance suite against the Store implementation that
// newStore builds. Call it from a test in the implementation's package:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s := memstore.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// newStore is called once per subtest with that subtest's t; it may return
// a fresh store or the same shared one (for example one MongoDB
// collection), because every subtest uses its own random keys and
// subjects. Register any teardown with t.Cleanup and fail with t.Fatal if
// the store cannot be built.
//
// When the store also implements store.SubjectIndex, Run runs the subject
// index tests too (see RunSubjectIndex) and logs which case it was.
//
// The suite owns the clock: every "now" it hands the store is a base time
// plus an offset, truncated to milliseconds because MongoDB keeps
// milliseconds. The base is the wall-clock time at the start of the
// subtest and every expiry the suite writes lies in the future of the wall
// clock, so background expiry (a memstore sweeper using time.Now, a
// MongoDB TTL index) never removes a record during a test: records are
// only "expired" relative to the now arguments the suite passes.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	runTests(t, coreTests, newStore)
	t.Run("SubjectIndex", func(t *testing.T) {
		if _, ok := newStore(t).(store.SubjectIndex); !ok {
			t.Log("the store does not implement store.SubjectIndex: subject index tests not run")
			return
		}
		t.Log("the store implements store.SubjectIndex: running the subject index tests")
		runTests(t, subjectTests, newStore)
	})
	t.Run("SSO", func(t *testing.T) {
		s := newStore(t)
		_, sid := s.(store.SidIndex)
		_, isub := s.(store.IdPSubIndex)
		_, limit := s.(store.SubjectLimiter)
		_, replay := s.(store.ReplayGuard)
		if !sid || !isub || !limit || !replay {
			t.Logf("the store does not implement store.SidIndex, store.IdPSubIndex, store.SubjectLimiter and store.ReplayGuard (%v %v %v %v): their tests not run",
				sid, isub, limit, replay)
			return
		}
		runTests(t, ssoTests, newStore)
	})
}

// RunSubjectIndex runs only the subject index tests, and fails if the
// store newStore builds does not implement store.SubjectIndex. Run already
// includes them; call this to insist on the interface.
func RunSubjectIndex(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	if _, ok := newStore(t).(store.SubjectIndex); !ok {
		t.Fatal("the store does not implement store.SubjectIndex")
	}
	runTests(t, subjectTests, newStore)
}

func runTests(t *testing.T, tests []test, newStore func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// clock is the suite's fake clock: a fixed base and offsets from it.
type clock struct{ base time.Time }

func newClock() clock {
	return clock{base: time.Now().Truncate(time.Millisecond)}
}

// at returns base+d, truncated to milliseconds so the value survives a
// round trip through MongoDB unchanged.
func (c clock) at(d time.Duration) time.Time {
	return c.base.Add(d).Truncate(time.Millisecond)
}

// ctx returns a context for one store call, cancelled when the test ends
// or after callTimeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return c
}

// callCtx is ctx for goroutines that make many calls: the caller cancels.
func callCtx(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), callTimeout)
}

// newKey returns a random key shaped like a real one (64 hex chars, as a
// SHA-256), unique across tests sharing one database.
func newKey(t *testing.T) string {
	return randomHex(t, 32)
}

// newSubject returns a random subject, unique across tests sharing one
// database.
func newSubject(t *testing.T) string {
	return "subject-" + randomHex(t, 8)
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// newRecord builds a record created at c.at(0) that expires at expires.
// Version is set to a value a store must ignore: Create stores 1.
func newRecord(c clock, data string, expires time.Time) *store.Record {
	return &store.Record{
		Data:    raw(data),
		Created: c.at(0),
		Updated: c.at(0),
		Expires: expires,
		MaxAge:  20 * time.Minute,
		Version: 7,
	}
}

// stored is what Find must return for a record just created from rec:
// the same fields, Version 1, and {} for empty data.
func stored(rec *store.Record) *store.Record {
	want := *rec
	want.Data = wantData(rec.Data)
	want.Version = 1
	return &want
}

// wantData is the Data Find returns for data written as given: a copy of
// the bytes, or {} when there are none.
func wantData(data json.RawMessage) json.RawMessage {
	if len(data) == 0 {
		return raw(`{}`)
	}
	return bytes.Clone(data)
}

// mustCreate creates a record and fails the test if the store refuses.
func mustCreate(t *testing.T, s store.Store, key string, rec *store.Record) {
	t.Helper()
	if err := s.Create(ctx(t), key, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

// mustUpdate updates a record and fails the test if the store refuses.
func mustUpdate(t *testing.T, s store.Store, key string, rec *store.Record, now time.Time) {
	t.Helper()
	if err := s.Update(ctx(t), key, rec, now); err != nil {
		t.Fatalf("Update at version %d: %v", rec.Version, err)
	}
}

// mustFind finds a live record and fails the test if there is none.
func mustFind(t *testing.T, s store.Store, key string, now time.Time) *store.Record {
	t.Helper()
	rec, err := s.Find(ctx(t), key, now)
	if err != nil {
		t.Fatalf("Find at %v: %v", now, err)
	}
	if rec == nil {
		t.Fatalf("Find at %v: nil record and nil error", now)
	}
	return rec
}

// wantNotFound fails the test unless Find reports ErrNotFound.
func wantNotFound(t *testing.T, s store.Store, key string, now time.Time) {
	t.Helper()
	rec, err := s.Find(ctx(t), key, now)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find at %v: got (%+v, %v), want ErrNotFound", now, rec, err)
	}
}

// wantRotated fails the test unless Find reports a *store.RotatedError
// naming successor.
func wantRotated(t *testing.T, s store.Store, key string, now time.Time, successor string) {
	t.Helper()
	rec, err := s.Find(ctx(t), key, now)
	var rot *store.RotatedError
	if !errors.As(err, &rot) {
		t.Fatalf("Find at %v: got (%+v, %v), want a *store.RotatedError", now, rec, err)
	}
	if !errors.Is(err, store.ErrRotated) {
		t.Fatalf("Find at %v: errors.Is(%v, ErrRotated) is false", now, err)
	}
	if rec != nil {
		t.Fatalf("Find at %v: a rotated key returned a record %+v", now, rec)
	}
	if rot.Successor != successor {
		t.Fatalf("Find at %v: Successor = %q, want %q", now, rot.Successor, successor)
	}
}

// wantErr fails the test unless err is (or wraps) want.
func wantErr(t *testing.T, op string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", op, err, want)
	}
}

// checkTime compares instants with Equal, so locations and monotonic
// readings do not matter.
func checkTime(t *testing.T, field string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s = %v, want %v", field, got, want)
	}
}

// checkRecord compares every field of got with want; Data byte for byte.
func checkRecord(t *testing.T, got, want *store.Record) {
	t.Helper()
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("Data differs:\n got  %s\n want %s", got.Data, want.Data)
	}
	if got.Subject != want.Subject {
		t.Fatalf("Subject = %q, want %q", got.Subject, want.Subject)
	}
	if got.Sid != want.Sid || got.IdPSub != want.IdPSub || got.UserAgent != want.UserAgent || got.Addr != want.Addr {
		t.Fatalf("Sid, IdPSub, UserAgent, Addr = %q, %q, %q, %q, want %q, %q, %q, %q",
			got.Sid, got.IdPSub, got.UserAgent, got.Addr, want.Sid, want.IdPSub, want.UserAgent, want.Addr)
	}
	checkTime(t, "Created", got.Created, want.Created)
	checkTime(t, "Updated", got.Updated, want.Updated)
	checkTime(t, "Expires", got.Expires, want.Expires)
	if got.MaxAge != want.MaxAge {
		t.Fatalf("MaxAge = %v, want %v", got.MaxAge, want.MaxAge)
	}
	if got.Version != want.Version {
		t.Fatalf("Version = %d, want %d", got.Version, want.Version)
	}
}

// checkUnchanged fails the test unless the record under key, seen at now,
// is exactly want.
func checkUnchanged(t *testing.T, s store.Store, key string, now time.Time, want *store.Record) {
	t.Helper()
	checkRecord(t, mustFind(t, s, key, now), want)
}
