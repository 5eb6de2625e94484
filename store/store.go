// Package store defines the contract between the session gateway and the
// places sessions are kept, and the types that cross it.
//
// A Store keeps session records under a key. The key is never the session
// token itself: the gateway hands the store the SHA-256 of the token (see
// package cookie), so a leaked database does not leak live cookies.
//
// The contract is small on purpose. Every method takes the current time from
// the caller instead of reading a clock, so expiry is decided in one place
// and tests can move time freely. Implementations must be safe for
// concurrent use. The conformance suite in package storetest checks every
// rule written here; an implementation that passes it is a valid Store.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound is returned by Find, Apply and Touch when no live session has
// the key: it never existed, it was deleted, or it has expired.
var ErrNotFound = errors.New("session not found")

// ErrExists is returned by Create when the key is already taken, whether
// or not the session holding it has expired. The caller retries with a new
// token.
var ErrExists = errors.New("session key already exists")

// ErrUnavailable wraps errors that mean the store could not be reached or
// did not answer in time. The gateway answers such requests with 503 and
// Retry-After instead of 502 or 500.
var ErrUnavailable = errors.New("session store unavailable")

// Record is one stored session.
type Record struct {
	// Data holds the session's top-level keys, each with its value as raw
	// JSON. A nil map and an empty one both mean "no data". No key, at
	// any depth, starts with "$" or holds "." or NUL: the gateway refuses
	// such data from upstreams, so stores may rely on it (and may refuse
	// such keys with an error). Value bytes handed out by Find are shared
	// with the store and must be treated as read-only.
	Data map[string]json.RawMessage

	// Created is when the session was first written. It never changes and
	// anchors the absolute lifetime.
	Created time.Time

	// Updated is when the session was last written, by a change or a touch.
	Updated time.Time

	// Expires is the instant the session stops existing. The gateway
	// computes it (idle timeout, capped by the absolute lifetime); the
	// store only compares it with now.
	Expires time.Time

	// MaxAge is this session's own idle timeout, set by the upstream
	// (X-Session-Control: max-age=N). Zero means the configured default.
	MaxAge time.Duration

	// Version counts the changes applied to the session. Create stores 1
	// whatever the caller passed; every Apply adds one; Touch does not
	// change it.
	Version int64
}

// Change is a set of edits applied to a session atomically. Keys not named
// in Set or Unset keep whatever value they have in the store at the moment
// the change is applied, so two requests that change different keys of the
// same session both keep their changes.
type Change struct {
	// Set maps top-level keys to their new raw JSON values.
	Set map[string]json.RawMessage

	// Unset lists top-level keys to remove. A key must not be in both.
	Unset []string

	// Expires is the session's new expiry instant.
	Expires time.Time

	// MaxAge, when non-nil, replaces the session's own idle timeout.
	MaxAge *time.Duration
}

// Empty reports whether the change edits no data and no max-age, so only
// the expiry would move.
func (c *Change) Empty() bool {
	return len(c.Set) == 0 && len(c.Unset) == 0 && c.MaxAge == nil
}

// Store keeps sessions. All methods are safe for concurrent use.
type Store interface {
	// Find returns the session stored under key if it is live at now
	// (Expires after now). Otherwise it returns ErrNotFound. The returned
	// record and map belong to the caller; the value bytes are read-only.
	// A store never deletes records because of a caller's now: cleaning
	// up expired records is its own background job (clocks may differ
	// between gateway instances).
	Find(ctx context.Context, key string, now time.Time) (*Record, error)

	// Create stores rec under key. It never overwrites: if the key is
	// taken, even by an expired session not yet cleaned up, it returns
	// ErrExists and changes nothing. The store keeps its own copy of rec.
	Create(ctx context.Context, key string, rec *Record) error

	// Apply applies ch to the session under key as one atomic step,
	// setting Updated to now and adding one to Version. If no live session
	// has the key at now it returns ErrNotFound and creates nothing: a
	// session deleted or expired in the meantime is never brought back.
	Apply(ctx context.Context, key string, ch Change, now time.Time) error

	// Touch moves the expiry of the live session under key to expires and
	// sets Updated to now, leaving data and Version alone. It returns
	// ErrNotFound like Apply.
	Touch(ctx context.Context, key string, expires, now time.Time) error

	// Delete removes the session under key. Deleting a key that does not
	// exist is not an error.
	Delete(ctx context.Context, key string) error
}
