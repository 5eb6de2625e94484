// Package storetest is the conformance suite for store.Store
// implementations. It checks every rule written in package store; an
// implementation that passes it is a valid Store.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// callTimeout bounds every store call the suite makes, so a hung store
// fails the test instead of hanging the whole run.
const callTimeout = 10 * time.Second

// concurrency is how many goroutines the concurrency tests start at once.
const concurrency = 16

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
// collection), because every subtest uses its own random keys. Register
// any teardown with t.Cleanup and fail with t.Fatal if the store cannot be
// built.
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
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"FindMissing", testFindMissing},
		{"CreateThenFind", testCreateThenFind},
		{"CreateNilAndEmptyData", testCreateNilAndEmptyData},
		{"CreateNeverOverwrites", testCreateNeverOverwrites},
		{"CreateNeverOverwritesExpired", testCreateNeverOverwritesExpired},
		{"FindFiltersExpired", testFindFiltersExpired},
		{"ApplySetsAndUnsets", testApplySetsAndUnsets},
		{"ApplyMaxAge", testApplyMaxAge},
		{"ApplyOnEmptySession", testApplyOnEmptySession},
		{"ApplyMissingDoesNotCreate", testApplyMissingDoesNotCreate},
		{"ApplyDeletedDoesNotRecreate", testApplyDeletedDoesNotRecreate},
		{"ApplyExpiredDoesNotRevive", testApplyExpiredDoesNotRevive},
		{"Touch", testTouch},
		{"TouchDead", testTouchDead},
		{"DeleteIdempotent", testDeleteIdempotent},
		{"UnusualDataKeys", testUnusualDataKeys},
		{"FindReturnsCopy", testFindReturnsCopy},
		{"CreateKeepsOwnCopy", testCreateKeepsOwnCopy},
		{"ApplyKeepsOwnCopy", testApplyKeepsOwnCopy},
		{"ConcurrentApply", testConcurrentApply},
		{"ConcurrentCreate", testConcurrentCreate},
	}
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

// newKey returns a random key shaped like a real one (64 hex chars, as a
// SHA-256), unique across tests sharing one database.
func newKey(t *testing.T) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random key: %v", err)
	}
	return hex.EncodeToString(b[:])
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// sampleData covers every JSON kind, nesting, unicode and numbers a store
// might re-encode (1.0 may come back as 1 from BSON).
func sampleData() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"user": raw(`{"id": 42, "name": "Zoë \u00e9 🚀 世界",
			"roles": ["admin", "dev"],
			"prefs": {"theme": "dark", "ratio": 1.5, "deep": {"list": [1, 2.0, {"x": null}, [true, false]]}}}`),
		"count":     raw(`7`),
		"negative":  raw(`-12`),
		"pi":        raw(`3.14159`),
		"one_float": raw(`1.0`),
		"exp":       raw(`6.02e23`),
		"flag":      raw(`true`),
		"off":       raw(`false`),
		"nothing":   raw(`null`),
		"greeting":  raw(`"héllo \"quoted\" \\ back\nslash \u2028 ✓"`),
		"empty_str": raw(`""`),
		"list":      raw(`[1, "two", 3.5, false, null, {"k": "v"}, []]`),
		"empty_obj": raw(`{}`),
		"empty_arr": raw(`[]`),
	}
}

// newRecord builds a record created at c.at(0) that expires at expires.
// Version is left zero: the contract says Create starts it at 1.
func newRecord(c clock, data map[string]json.RawMessage, expires time.Time) *store.Record {
	return &store.Record{
		Data:    data,
		Created: c.at(0),
		Updated: c.at(0),
		Expires: expires,
		MaxAge:  20 * time.Minute,
	}
}

// mustCreate creates a record and fails the test if the store refuses.
func mustCreate(t *testing.T, s store.Store, key string, rec *store.Record) {
	t.Helper()
	if err := s.Create(ctx(t), key, rec); err != nil {
		t.Fatalf("Create: %v", err)
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

// wantErr fails the test unless err is (or wraps) want.
func wantErr(t *testing.T, op string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", op, err, want)
	}
}

// checkData compares two data maps semantically: same keys, and values
// equal once decoded, so re-encoding by the store is allowed. Nil and
// empty maps are equal.
func checkData(t *testing.T, what string, got, want map[string]json.RawMessage) {
	t.Helper()
	if diff := dataDiff(got, want); diff != "" {
		t.Fatalf("%s: data differs:\n%s", what, diff)
	}
}

func dataDiff(got, want map[string]json.RawMessage) string {
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("  key %q missing, want %s", k, w))
			continue
		}
		if !jsonEqual(g, w) {
			diffs = append(diffs, fmt.Sprintf("  key %q = %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("  unexpected key %q = %s", k, g))
		}
	}
	sort.Strings(diffs)
	out := ""
	for _, d := range diffs {
		out += d + "\n"
	}
	return out
}

// jsonEqual reports whether a and b decode to the same value.
func jsonEqual(a, b json.RawMessage) bool {
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// checkTime compares instants with Equal, so locations and monotonic
// readings do not matter.
func checkTime(t *testing.T, field string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s = %v, want %v", field, got, want)
	}
}

// checkRecord compares every field of got with want.
func checkRecord(t *testing.T, got, want *store.Record) {
	t.Helper()
	checkData(t, "record", got.Data, want.Data)
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

// cloneData copies a data map and its values, so expectations cannot be
// changed by a store that (wrongly) keeps the caller's slices.
func cloneData(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = append(json.RawMessage(nil), v...)
	}
	return out
}

func testFindMissing(t *testing.T, s store.Store) {
	c := newClock()
	wantNotFound(t, s, newKey(t), c.at(0))
}

func testCreateThenFind(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, sampleData(), c.at(time.Hour))
	mustCreate(t, s, key, rec)

	want := *rec
	want.Data = sampleData()
	want.Version = 1
	checkRecord(t, mustFind(t, s, key, c.at(time.Second)), &want)

	// A key is exact: a neighbour of a stored key is not found.
	wantNotFound(t, s, key[:len(key)-1], c.at(time.Second))
	wantNotFound(t, s, key+"0", c.at(time.Second))
}

func testCreateNilAndEmptyData(t *testing.T, s store.Store) {
	c := newClock()
	for _, data := range []map[string]json.RawMessage{nil, {}} {
		key := newKey(t)
		mustCreate(t, s, key, newRecord(c, data, c.at(time.Hour)))
		got := mustFind(t, s, key, c.at(0))
		if len(got.Data) != 0 {
			t.Fatalf("Create with data %#v: Find returned data %v, want none", data, got.Data)
		}
		if got.Version != 1 {
			t.Fatalf("Version = %d, want 1", got.Version)
		}
	}
}

func testCreateNeverOverwrites(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	first := newRecord(c, map[string]json.RawMessage{"who": raw(`"first"`)}, c.at(time.Hour))
	mustCreate(t, s, key, first)

	second := newRecord(c, map[string]json.RawMessage{"who": raw(`"second"`)}, c.at(2*time.Hour))
	second.Created = c.at(time.Minute)
	second.MaxAge = time.Minute
	wantErr(t, "second Create", s.Create(ctx(t), key, second), store.ErrExists)

	want := *first
	want.Data = map[string]json.RawMessage{"who": raw(`"first"`)}
	want.Version = 1
	checkRecord(t, mustFind(t, s, key, c.at(time.Minute)), &want)
}

func testCreateNeverOverwritesExpired(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	old := newRecord(c, map[string]json.RawMessage{"who": raw(`"old"`)}, c.at(time.Hour))
	mustCreate(t, s, key, old)
	// At c.at(2h) the old session is dead, but the key is still taken.
	wantNotFound(t, s, key, c.at(2*time.Hour))

	fresh := newRecord(c, map[string]json.RawMessage{"who": raw(`"new"`)}, c.at(3*time.Hour))
	fresh.Created = c.at(2 * time.Hour)
	wantErr(t, "Create over expired session", s.Create(ctx(t), key, fresh), store.ErrExists)

	// The old record is untouched: seen from a time it was live, it is
	// exactly what was created.
	want := *old
	want.Data = map[string]json.RawMessage{"who": raw(`"old"`)}
	want.Version = 1
	checkRecord(t, mustFind(t, s, key, c.at(time.Minute)), &want)
}

func testFindFiltersExpired(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	expires := c.at(time.Hour)
	mustCreate(t, s, key, newRecord(c, sampleData(), expires))

	mustFind(t, s, key, c.at(0))
	mustFind(t, s, key, expires.Add(-time.Millisecond))
	// Expires is the instant the session stops existing: at it, dead.
	wantNotFound(t, s, key, expires)
	wantNotFound(t, s, key, expires.Add(time.Millisecond))
	wantNotFound(t, s, key, c.at(24*time.Hour))
	// Finding does not delete: earlier instants still see it.
	mustFind(t, s, key, c.at(time.Minute))
}

func testApplySetsAndUnsets(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, sampleData(), c.at(time.Hour))
	mustCreate(t, s, key, rec)

	ch := store.Change{
		Set: map[string]json.RawMessage{
			"count":    raw(`8`),                            // replace a number
			"user":     raw(`{"id": 43, "tags": ["ß", 2]}`), // replace an object
			"added":    raw(`{"a": [1.25, null, "x"]}`),     // new key
			"nothing":  raw(`"now something"`),              // null becomes a string
			"new_null": raw(`null`),                         // new key holding null
		},
		Unset:   []string{"flag", "list", "never_existed"},
		Expires: c.at(2 * time.Hour),
	}
	if err := s.Apply(ctx(t), key, ch, c.at(time.Minute)); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	wantData := sampleData()
	for k, v := range ch.Set {
		wantData[k] = v
	}
	for _, k := range ch.Unset {
		delete(wantData, k)
	}
	want := &store.Record{
		Data:    wantData,
		Created: rec.Created,
		Updated: c.at(time.Minute),
		Expires: c.at(2 * time.Hour),
		MaxAge:  rec.MaxAge, // nil MaxAge in the change keeps it
		Version: 2,
	}
	checkRecord(t, mustFind(t, s, key, c.at(time.Minute)), want)
	// The new expiry is in force: alive after the old one.
	mustFind(t, s, key, c.at(90*time.Minute))

	// A second change, with only a set, bumps Version again.
	ch2 := store.Change{
		Set:     map[string]json.RawMessage{"count": raw(`9`)},
		Expires: c.at(3 * time.Hour),
	}
	if err := s.Apply(ctx(t), key, ch2, c.at(2*time.Minute)); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	want.Data["count"] = raw(`9`)
	want.Updated = c.at(2 * time.Minute)
	want.Expires = c.at(3 * time.Hour)
	want.Version = 3
	checkRecord(t, mustFind(t, s, key, c.at(2*time.Minute)), want)

	// A change that only unsets.
	ch3 := store.Change{Unset: []string{"count", "user"}, Expires: c.at(3 * time.Hour)}
	if err := s.Apply(ctx(t), key, ch3, c.at(3*time.Minute)); err != nil {
		t.Fatalf("third Apply: %v", err)
	}
	delete(want.Data, "count")
	delete(want.Data, "user")
	want.Updated = c.at(3 * time.Minute)
	want.Version = 4
	checkRecord(t, mustFind(t, s, key, c.at(3*time.Minute)), want)
}

func testApplyMaxAge(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, map[string]json.RawMessage{"a": raw(`1`)}, c.at(time.Hour))
	mustCreate(t, s, key, rec)

	maxAge := 90 * time.Second
	ch := store.Change{MaxAge: &maxAge, Expires: c.at(time.Minute + maxAge)}
	if err := s.Apply(ctx(t), key, ch, c.at(time.Minute)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := &store.Record{
		Data:    map[string]json.RawMessage{"a": raw(`1`)},
		Created: rec.Created,
		Updated: c.at(time.Minute),
		Expires: c.at(time.Minute + maxAge),
		MaxAge:  maxAge,
		Version: 2,
	}
	checkRecord(t, mustFind(t, s, key, c.at(time.Minute)), want)

	// Zero is a value too: back to the configured default.
	zero := time.Duration(0)
	ch = store.Change{MaxAge: &zero, Expires: c.at(time.Hour)}
	if err := s.Apply(ctx(t), key, ch, c.at(2*time.Minute)); err != nil {
		t.Fatalf("Apply with zero MaxAge: %v", err)
	}
	want.MaxAge = 0
	want.Updated = c.at(2 * time.Minute)
	want.Expires = c.at(time.Hour)
	want.Version = 3
	checkRecord(t, mustFind(t, s, key, c.at(2*time.Minute)), want)
}

func testApplyOnEmptySession(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, nil, c.at(time.Hour)))
	ch := store.Change{
		Set:     map[string]json.RawMessage{"first": raw(`{"x": [1, 2]}`)},
		Unset:   []string{"ghost"},
		Expires: c.at(time.Hour),
	}
	if err := s.Apply(ctx(t), key, ch, c.at(time.Second)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got := mustFind(t, s, key, c.at(time.Second))
	checkData(t, "after Apply on a session with no data", got.Data, ch.Set)
	if got.Version != 2 {
		t.Fatalf("Version = %d, want 2", got.Version)
	}
}

// changeFor is a change that would be visible if a store wrongly applied
// it to a dead session.
func changeFor(c clock) store.Change {
	return store.Change{
		Set:     map[string]json.RawMessage{"zombie": raw(`true`)},
		Expires: c.at(5 * time.Hour),
	}
}

func testApplyMissingDoesNotCreate(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	wantErr(t, "Apply on missing key", s.Apply(ctx(t), key, changeFor(c), c.at(0)), store.ErrNotFound)
	wantNotFound(t, s, key, c.at(0))

	// The key is free: Create works and nothing of the change leaked in.
	mustCreate(t, s, key, newRecord(c, map[string]json.RawMessage{"a": raw(`1`)}, c.at(time.Hour)))
	got := mustFind(t, s, key, c.at(0))
	checkData(t, "Create after Apply on missing key", got.Data, map[string]json.RawMessage{"a": raw(`1`)})
	if got.Version != 1 {
		t.Fatalf("Version = %d, want 1", got.Version)
	}
}

func testApplyDeletedDoesNotRecreate(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, sampleData(), c.at(time.Hour)))
	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantErr(t, "Apply on deleted key", s.Apply(ctx(t), key, changeFor(c), c.at(time.Second)), store.ErrNotFound)
	wantNotFound(t, s, key, c.at(time.Second))

	mustCreate(t, s, key, newRecord(c, map[string]json.RawMessage{"b": raw(`2`)}, c.at(time.Hour)))
	got := mustFind(t, s, key, c.at(time.Second))
	checkData(t, "Create after Apply on deleted key", got.Data, map[string]json.RawMessage{"b": raw(`2`)})
	if got.Version != 1 {
		t.Fatalf("Version = %d, want 1", got.Version)
	}
}

func testApplyExpiredDoesNotRevive(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, sampleData(), c.at(time.Hour))
	mustCreate(t, s, key, rec)

	// At exactly Expires the session is dead.
	wantErr(t, "Apply at Expires", s.Apply(ctx(t), key, changeFor(c), c.at(time.Hour)), store.ErrNotFound)
	wantErr(t, "Apply after Expires", s.Apply(ctx(t), key, changeFor(c), c.at(2*time.Hour)), store.ErrNotFound)
	// The change did not move the expiry, so it is still dead.
	wantNotFound(t, s, key, c.at(2*time.Hour))
	wantNotFound(t, s, key, c.at(4*time.Hour))

	// Create on the key: an expired session may or may not have been
	// cleaned up by now, so either answer is valid, but each has to be
	// consistent with the contract.
	fresh := newRecord(c, map[string]json.RawMessage{"c": raw(`3`)}, c.at(3*time.Hour))
	fresh.Created = c.at(2 * time.Hour)
	switch err := s.Create(ctx(t), key, fresh); {
	case errors.Is(err, store.ErrExists):
		// Still there: untouched by the refused Apply or the Create.
		want := *rec
		want.Data = sampleData()
		want.Version = 1
		checkRecord(t, mustFind(t, s, key, c.at(time.Minute)), &want)
	case err == nil:
		// Cleaned up: the new session holds only its own data.
		got := mustFind(t, s, key, c.at(2*time.Hour))
		checkData(t, "Create after cleanup", got.Data, map[string]json.RawMessage{"c": raw(`3`)})
		if got.Version != 1 {
			t.Fatalf("Version = %d, want 1", got.Version)
		}
	default:
		t.Fatalf("Create over expired key: %v", err)
	}
}

func testTouch(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, sampleData(), c.at(time.Hour))
	mustCreate(t, s, key, rec)
	if err := s.Apply(ctx(t), key, store.Change{Set: map[string]json.RawMessage{"n": raw(`1`)}, Expires: c.at(time.Hour)}, c.at(time.Second)); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	if err := s.Touch(ctx(t), key, c.at(3*time.Hour), c.at(30*time.Minute)); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	wantData := sampleData()
	wantData["n"] = raw(`1`)
	want := &store.Record{
		Data:    wantData,
		Created: rec.Created,
		Updated: c.at(30 * time.Minute),
		Expires: c.at(3 * time.Hour),
		MaxAge:  rec.MaxAge,
		Version: 2, // Touch leaves Version alone
	}
	checkRecord(t, mustFind(t, s, key, c.at(2*time.Hour)), want)

	// Touch can also bring the expiry closer.
	if err := s.Touch(ctx(t), key, c.at(40*time.Minute), c.at(35*time.Minute)); err != nil {
		t.Fatalf("second Touch: %v", err)
	}
	wantNotFound(t, s, key, c.at(40*time.Minute))
	want.Updated = c.at(35 * time.Minute)
	want.Expires = c.at(40 * time.Minute)
	checkRecord(t, mustFind(t, s, key, c.at(39*time.Minute)), want)
}

func testTouchDead(t *testing.T, s store.Store) {
	c := newClock()

	missing := newKey(t)
	wantErr(t, "Touch on missing key", s.Touch(ctx(t), missing, c.at(time.Hour), c.at(0)), store.ErrNotFound)
	wantNotFound(t, s, missing, c.at(0))

	deleted := newKey(t)
	mustCreate(t, s, deleted, newRecord(c, nil, c.at(time.Hour)))
	if err := s.Delete(ctx(t), deleted); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantErr(t, "Touch on deleted key", s.Touch(ctx(t), deleted, c.at(time.Hour), c.at(0)), store.ErrNotFound)
	wantNotFound(t, s, deleted, c.at(0))

	expired := newKey(t)
	rec := newRecord(c, map[string]json.RawMessage{"a": raw(`1`)}, c.at(time.Hour))
	mustCreate(t, s, expired, rec)
	wantErr(t, "Touch at Expires", s.Touch(ctx(t), expired, c.at(5*time.Hour), c.at(time.Hour)), store.ErrNotFound)
	wantNotFound(t, s, expired, c.at(2*time.Hour))
	// Untouched, as seen from when it was live.
	want := *rec
	want.Data = map[string]json.RawMessage{"a": raw(`1`)}
	want.Version = 1
	checkRecord(t, mustFind(t, s, expired, c.at(time.Minute)), &want)
}

func testDeleteIdempotent(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatalf("Delete of missing key: %v", err)
	}
	other := newKey(t)
	mustCreate(t, s, key, newRecord(c, sampleData(), c.at(time.Hour)))
	mustCreate(t, s, other, newRecord(c, sampleData(), c.at(time.Hour)))
	for i := range 2 {
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
		wantNotFound(t, s, key, c.at(0))
	}
	// Deleting one key leaves the others alone.
	mustFind(t, s, other, c.at(0))

	// A deleted key is free again, and so is a deleted expired one.
	mustCreate(t, s, key, newRecord(c, nil, c.at(time.Hour)))
	if err := s.Delete(ctx(t), other); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustCreate(t, s, other, newRecord(c, nil, c.at(time.Hour)))
}

// testUnusualDataKeys uses keys that are legal by the contract but easy to
// get wrong in a document store: unicode, spaces, "_id", and values that
// hold strings looking like operators. Keys starting with "$" or holding
// "." or NUL never reach a store: the gateway refuses them (see Record).
func testUnusualDataKeys(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	data := map[string]json.RawMessage{
		"user_name":  raw(`"$set"`),
		"inc":        raw(`{"x": "$inc", "y": ["a.b"]}`),
		"ünï código": raw(`"unicode key"`),
		"with space": raw(`1`),
		"_id":        raw(`"not the document id"`),
		"plain":      raw(`0`),
	}
	mustCreate(t, s, key, newRecord(c, cloneData(data), c.at(time.Hour)))
	checkData(t, "after Create", mustFind(t, s, key, c.at(0)).Data, data)

	ch := store.Change{
		Set: map[string]json.RawMessage{
			"user.name": raw(`"changed"`),
			"$new":      raw(`true`),
			"x.y":       raw(`{"z": null}`),
		},
		Unset:   []string{"a.b.c", "$set", "_id"},
		Expires: c.at(time.Hour),
	}
	if err := s.Apply(ctx(t), key, ch, c.at(time.Second)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for k, v := range ch.Set {
		data[k] = v
	}
	for _, k := range ch.Unset {
		delete(data, k)
	}
	checkData(t, "after Apply", mustFind(t, s, key, c.at(time.Second)).Data, data)
}

func testFindReturnsCopy(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, sampleData(), c.at(time.Hour))
	mustCreate(t, s, key, rec)

	got := mustFind(t, s, key, c.at(0))
	// Change everything a caller can change without writing into the
	// value bytes themselves (stores may share those read-only).
	got.Data["count"] = raw(`1000`)
	got.Data["intruder"] = raw(`"x"`)
	delete(got.Data, "user")
	got.Created = c.at(-time.Hour)
	got.Updated = c.at(-time.Hour)
	got.Expires = c.at(100 * time.Hour)
	got.MaxAge = time.Nanosecond
	got.Version = 99

	want := *rec
	want.Data = sampleData()
	want.Version = 1
	checkRecord(t, mustFind(t, s, key, c.at(0)), &want)
}

func testCreateKeepsOwnCopy(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, sampleData(), c.at(time.Hour))
	mustCreate(t, s, key, rec)
	want := *rec
	want.Data = sampleData()
	want.Version = 1

	// The caller may reuse everything it passed, down to the bytes.
	for _, v := range rec.Data {
		for i := range v {
			v[i] = ' '
		}
	}
	rec.Data["intruder"] = raw(`"x"`)
	delete(rec.Data, "count")
	rec.Expires = c.at(100 * time.Hour)
	rec.Version = 42
	rec.MaxAge = time.Nanosecond

	checkRecord(t, mustFind(t, s, key, c.at(0)), &want)
}

func testApplyKeepsOwnCopy(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, nil, c.at(time.Hour)))

	maxAge := time.Minute
	ch := store.Change{
		Set:     map[string]json.RawMessage{"a": raw(`{"b": [1, 2, 3]}`), "s": raw(`"string"`)},
		Expires: c.at(time.Hour),
		MaxAge:  &maxAge,
	}
	wantData := cloneData(ch.Set)
	if err := s.Apply(ctx(t), key, ch, c.at(time.Second)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, v := range ch.Set {
		for i := range v {
			v[i] = ' '
		}
	}
	ch.Set["late"] = raw(`1`)
	maxAge = time.Hour

	got := mustFind(t, s, key, c.at(time.Second))
	checkData(t, "after the caller reused its change", got.Data, wantData)
	if got.MaxAge != time.Minute {
		t.Fatalf("MaxAge = %v, want %v", got.MaxAge, time.Minute)
	}
}

func testConcurrentApply(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, map[string]json.RawMessage{"base": raw(`"kept"`)}, c.at(time.Hour)))

	want := map[string]json.RawMessage{"base": raw(`"kept"`)}
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	start := make(chan struct{})
	for i := range concurrency {
		k := fmt.Sprintf("k%02d", i)
		v := raw(fmt.Sprintf(`{"worker": %d, "name": "w%d"}`, i, i))
		want[k] = v
		wg.Go(func() {
			<-start // release all goroutines together to maximise overlap
			ch := store.Change{
				Set:     map[string]json.RawMessage{k: v},
				Expires: c.at(time.Hour),
			}
			if err := s.Apply(ctx(t), key, ch, c.at(time.Duration(i)*time.Millisecond)); err != nil {
				errs <- fmt.Errorf("Apply %s: %w", k, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	got := mustFind(t, s, key, c.at(time.Second))
	checkData(t, "after concurrent Apply (lost update?)", got.Data, want)
	if got.Version != 1+concurrency {
		t.Fatalf("Version = %d, want %d", got.Version, 1+concurrency)
	}
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)

	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]error, concurrency)
	for i := range concurrency {
		wg.Go(func() {
			<-start
			rec := newRecord(c, map[string]json.RawMessage{"winner": raw(fmt.Sprint(i))}, c.at(time.Hour))
			results[i] = s.Create(ctx(t), key, rec)
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range results {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("Create succeeded twice for one key (goroutines %d and %d)", winner, i)
			}
			winner = i
		case errors.Is(err, store.ErrExists):
		default:
			t.Fatalf("Create #%d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent Create succeeded")
	}
	got := mustFind(t, s, key, c.at(0))
	checkData(t, "winner's data", got.Data, map[string]json.RawMessage{"winner": raw(fmt.Sprint(winner))})
	if got.Version != 1 {
		t.Fatalf("Version = %d, want 1", got.Version)
	}
}
