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
//
// Writes are compare-and-set on Record.Version: the gateway reads a
// session, works out the upstream's change against what it read, and
// writes only if nobody wrote in between. On ErrConflict it reads again and
// re-applies the change, so concurrent patches merge at any depth and a
// write that timed out can never land over a newer one.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// ErrNotFound is returned by Find and Touch when no live session has the
// key: it never existed, it was deleted, or it has expired.
var ErrNotFound = errors.New("session not found")

// ErrExists is returned by Create when the key is already taken, whether
// or not the session holding it has expired. The caller retries with a new
// token.
var ErrExists = errors.New("session key already exists")

// ErrConflict is returned by Update and Rotate when no live session under
// the key has the version the caller read: another write came first, or
// the session was deleted, expired or rotated. Nothing was written. The
// caller reads the session again to learn which.
var ErrConflict = errors.New("session changed since it was read")

// ErrRotated is returned (wrapped in a *RotatedError) by Find for a key
// whose session moved to a new key a short while ago (a regenerate). The
// session is not live under the old key; the error only lets a request that
// was already running with the old cookie drop its changes quietly instead
// of ending the new session's cookie.
var ErrRotated = errors.New("session moved to a new key")

// ErrUnavailable wraps errors that mean the store could not be reached or
// did not answer in time. The gateway answers such requests with 503 and
// Retry-After instead of 502 or 500.
var ErrUnavailable = errors.New("session store unavailable")

// RotatedError is the error Find returns for a rotated key.
type RotatedError struct {
	// Successor is the handle (see cookie.Handle) of the new key: enough
	// to name it in a log line, never enough to reach it.
	Successor string
}

func (e *RotatedError) Error() string { return ErrRotated.Error() }

// Is makes errors.Is(err, ErrRotated) true.
func (e *RotatedError) Is(target error) bool { return target == ErrRotated }

// Record is one stored session.
type Record struct {
	// Data is the session data: one JSON object, exactly as the gateway
	// encodes it (package internal/protocol: ASCII only, canonical
	// numbers). It is the X-Session header value as it stands, so reads
	// hand it out without re-encoding. Find returns the bytes Create or
	// Update was given; a nil or empty Data reads back as {}. Records
	// returned by Find, bytes included, are read-only.
	Data json.RawMessage

	// Subject is the value of the configured subject key path, as
	// CanonicalSubject spells it, or "" when the session has none. Stores
	// that implement SubjectIndex look sessions up by it.
	Subject string

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

	// Login marks a session created by a regenerate (a login). A store
	// that bounds how many sessions it holds (the memory store) evicts
	// such sessions, and sessions with a Subject, only after every other
	// one, so a flood of anonymous sessions cannot log users out. Create
	// reads it and the store keeps it for the session's life; Update
	// ignores it. A store that never evicts may drop it (Find then
	// returns false).
	Login bool

	// Version counts the writes of the session's data. Create stores 1
	// whatever the caller passed; every Update adds one; Touch does not
	// change it. It is what Update and Rotate compare.
	Version int64

	// Sid is the identity provider's session id the session belongs to
	// (the value of the configured sid key path, in the spelling of
	// CanonicalSubject), or "" when none. Stores that implement SidIndex
	// end sessions by it (back-channel logout). Update replaces it like
	// Subject.
	Sid string

	// IdPSub is the identity provider's subject the session belongs to
	// (the value of the configured back-channel sub_key path when that is
	// not the subject path, in the spelling of CanonicalSubject), or ""
	// when none. Stores that implement IdPSubIndex end sessions by it
	// (back-channel logout with sub alone). Update replaces it like Sid.
	IdPSub string

	// UserAgent is the User-Agent of the request that created the
	// session, cut to MaxUserAgentLen bytes. Addr is that request's
	// coarse client address (CoarseAddr). Both are set at Create and
	// never changed: Update keeps what Create stored.
	UserAgent string
	Addr      string
}

// MaxUserAgentLen is the most of a User-Agent a record keeps.
const MaxUserAgentLen = 256

// Store keeps sessions. All methods are safe for concurrent use.
type Store interface {
	// Find returns the session stored under key if it is live at now
	// (Expires after now). For a key that was rotated (see Rotate) and
	// whose tombstone has not expired it returns a *RotatedError.
	// Otherwise it returns ErrNotFound. The returned record is read-only
	// and stays as it was returned: a store may hand the same *Record to
	// every caller (the memory store does, to save a copy per request),
	// and then never changes it, but replaces it. A caller that wants to
	// change a record copies it first. A store never deletes
	// records because of a caller's now: cleaning up expired records is
	// its own background job (clocks may differ between instances).
	Find(ctx context.Context, key string, now time.Time) (*Record, error)

	// Create stores rec under key with Version 1. It never overwrites: if
	// the key is taken, even by an expired session or a tombstone not yet
	// cleaned up, it returns ErrExists and changes nothing. The store keeps
	// its own copy of rec.
	Create(ctx context.Context, key string, rec *Record) error

	// Update replaces Data, Subject, MaxAge and Expires of the session
	// under key, sets Updated to now and Version to rec.Version+1, as one
	// atomic step, if and only if a live session (at now) is stored under
	// key with Version equal to rec.Version. Otherwise it writes nothing
	// and returns ErrConflict: a session deleted, expired or rotated in
	// the meantime is never brought back, and a write based on an old
	// read never lands over a newer one. Created is never changed.
	Update(ctx context.Context, key string, rec *Record, now time.Time) error

	// Touch moves the expiry of the live session under key to expires if
	// that is later than the stored expiry, and sets Updated to now if
	// that is later than the stored Updated, leaving data and Version
	// alone: a late touch never shortens a session. It returns
	// ErrNotFound when no live session has the key.
	Touch(ctx context.Context, key string, expires, now time.Time) error

	// Rotate retires the live session under key, if its Version is
	// version, as one atomic step: it drops the data and leaves a
	// tombstone until `until`, for which Find returns a *RotatedError
	// naming successor (a handle, never a key). Otherwise it changes
	// nothing and returns ErrConflict. The gateway creates the successor
	// before it rotates, so a regenerate succeeds only if the old session
	// was still live, and unchanged, when it was retired. It also destroys
	// a session by rotating it with until = now (a tombstone that reads as
	// not found at once), so a logout that raced a login cannot undo it.
	//
	// A tombstone has no data and no subject: SubjectIndex never lists,
	// deletes or counts it. It lasts until `until` even past the session's
	// own expiry, and Create on its key returns ErrExists until the store
	// has cleaned it up.
	Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error

	// Delete removes the session (or tombstone) under key. Deleting a key
	// that does not exist is not an error.
	Delete(ctx context.Context, key string) error
}

// Summary describes a session without its data or key, for listings.
type Summary struct {
	// Handle names the session (cookie.Handle of its key).
	Handle  string
	Created time.Time
	// Updated is the last write or touch: the session was last seen then.
	Updated time.Time
	Expires time.Time
	// UserAgent and Addr are the record's (see Record).
	UserAgent string
	Addr      string
}

// SubjectIndex is implemented by stores that can find and end sessions
// other than by their key. The gateway uses it for the revoke-others and
// revoke-all directives and for the admin API.
type SubjectIndex interface {
	// FindBySubject lists the live sessions (at now) whose Subject is
	// subject, without scanning every session.
	FindBySubject(ctx context.Context, subject string, now time.Time) ([]Summary, error)

	// DeleteBySubject deletes every session whose Subject is subject,
	// except the one under exceptKey when it is not empty, and returns
	// how many it deleted, expired sessions not yet cleaned up included.
	DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error)

	// DeleteByHandle deletes the live session whose key starts with
	// handle and returns how many it deleted (0 or 1; two keys sharing a
	// handle are both deleted). A tombstone (see Rotate) or an expired
	// session is neither deleted nor counted: revoking the old handle of
	// a session that logged in since answers 0 and leaves the tombstone
	// its window. Expiry is judged by the store's own clock: the admin
	// API, the only caller, is not on a request path. The handle must be exactly 12 lower-case hex digits
	// (cookie.Handle); anything else deletes nothing. The lookup is
	// index-backed where the store has indexes.
	DeleteByHandle(ctx context.Context, handle string) (int, error)
}

// SidIndex is implemented by stores that index Record.Sid, so an
// identity provider's back-channel logout can end the sessions of one of
// its sessions without a scan.
type SidIndex interface {
	// DeleteBySid deletes every session whose Sid is sid, expired ones
	// not yet cleaned up included, and returns how many it deleted.
	// Tombstones have no Sid. An empty sid deletes nothing.
	DeleteBySid(ctx context.Context, sid string) (int, error)
}

// IdPSubIndex is implemented by stores that index Record.IdPSub, so an
// identity provider's back-channel logout naming only its subject can
// end that user's sessions without a scan when the gateway keeps the
// IdP's subject at a path other than the subject path.
type IdPSubIndex interface {
	// DeleteByIdPSub deletes every session whose IdPSub is sub, expired
	// ones not yet cleaned up included, and returns how many it deleted.
	// Tombstones have no IdPSub. An empty sub deletes nothing.
	DeleteByIdPSub(ctx context.Context, sub string) (int, error)
}

// SubjectLimiter is implemented by stores that can bound the number of
// live sessions of one subject.
type SubjectLimiter interface {
	// LimitSubject keeps the n most recently seen sessions of subject
	// live at now and deletes the other live ones, with one indexed query
	// and one delete, and returns how many it deleted. "Most recently
	// seen" orders by Updated, then Created, then key, all descending:
	// one order every caller agrees on, so concurrent calls for one
	// subject never leave fewer than min(n, live sessions) nor, once the
	// last of them has run, more than n. A session written at now by the
	// caller is kept unless n sessions of the subject were seen later
	// still (concurrent writes, or another instance's clock ahead). n
	// less than 1 deletes nothing.
	LimitSubject(ctx context.Context, subject string, n int, now time.Time) (int, error)
}

// ReplayGuard is implemented by stores that remember one-time ids (the
// jti of a logout token) until they expire, so a token used once is
// refused on every instance sharing the store.
type ReplayGuard interface {
	// FirstUse records id until `until` and reports true if it was not
	// already recorded with an end after now. It returns an error, and
	// records nothing, when it cannot tell; the caller fails closed.
	FirstUse(ctx context.Context, id string, until, now time.Time) (bool, error)
}

// MaxSubjectLen is the longest subject, in bytes of its canonical
// spelling (CanonicalSubject), that a session may carry. The gateway
// refuses a write whose subject is longer (502), and the admin API
// accepts exactly the subjects a session can have, so every stored
// subject can be listed and revoked.
const MaxSubjectLen = 1024

// ErrBadSubject is returned (wrapped) by CanonicalSubject for a value
// that cannot be a subject. The gateway refuses such a write with 502.
var ErrBadSubject = errors.New("value cannot be a session subject")

// subjectTag starts the spelling of every subject that is not a JSON
// string. No string subject contains it, so no two JSON values share a
// subject.
const subjectTag = "\x00"

// CanonicalSubject returns the one spelling of a subject: the value v
// found at the configured subject path, as package internal/protocol
// decodes JSON (string, json.Number, bool, nil, map[string]any or []any).
// Every part of the gateway that names sessions by subject goes through
// it: Record.Subject, the subject index of both stores, the revoke-others
// and revoke-all directives, the admin API and the command line, and
// anything keyed on the user (an identity provider's session index, a
// per-user limit, a keyed hash of the subject).
//
//   - A string is its own spelling, so subjects stored before this rule
//     keep matching: "42" is "42".
//   - A number or a boolean is NUL followed by its canonical JSON text:
//     42 (or 42.0 or 4.2e1) is "\x0042" and true is "\x00true". No string
//     subject starts with NUL, so 42 and "42", true and "true" are two
//     different users.
//   - null, or no value (nil), is no subject: "" and no error.
//   - An object, an array, a string holding NUL and a spelling longer
//     than MaxSubjectLen bytes are errors wrapping ErrBadSubject: such a
//     session could not be looked up, listed or revoked.
//
// An empty string is no subject either, as it always was.
func CanonicalSubject(v any) (string, error) {
	var s string
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return "", fmt.Errorf("%w: a string holding NUL", ErrBadSubject)
		}
		s = v
	case bool:
		s = subjectTag + strconv.FormatBool(v)
	case json.Number:
		c, err := protocol.CanonicalNumber(string(v))
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadSubject, err)
		}
		s = subjectTag + c
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("%w: not a JSON number", ErrBadSubject)
		}
		s = subjectTag + string(protocol.AppendFloat(nil, v))
	case int:
		s = subjectTag + strconv.Itoa(v)
	case int64:
		s = subjectTag + strconv.FormatInt(v, 10)
	default:
		return "", fmt.Errorf("%w: a JSON object or array (%T)", ErrBadSubject, v)
	}
	if len(s) > MaxSubjectLen {
		return "", fmt.Errorf("%w: %d bytes, over the %d byte limit", ErrBadSubject, len(s), MaxSubjectLen)
	}
	return s, nil
}

// CoarseAddr returns the network a client address belongs to, the most a
// session record keeps of it: the IPv4 /24 or the IPv6 /48, in prefix
// notation ("203.0.113.0/24", "2001:db8:1::/48"). An IPv4-mapped IPv6
// address counts as IPv4. An invalid address gives "".
func CoarseAddr(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.WithZone("").Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// CutUserAgent cuts ua to MaxUserAgentLen bytes, at a UTF-8 boundary.
func CutUserAgent(ua string) string {
	if len(ua) <= MaxUserAgentLen {
		return ua
	}
	ua = ua[:MaxUserAgentLen]
	for i := 0; i < 3 && len(ua) > 0 && !utf8.ValidString(ua); i++ {
		ua = ua[:len(ua)-1]
	}
	return ua
}
