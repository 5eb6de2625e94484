// Package protocol implements the header protocol between the gateway and
// upstream applications: it turns the X-Session-Update, X-Session-Patch and
// X-Session-Control response headers into a change of the session data, and
// encodes session data as the canonical ASCII JSON of the X-Session request
// header (see Encode).
//
// Evaluate reads the headers against the snapshot the upstream was given and
// validates everything it can; Outcome.Apply then applies the change to a
// session's data. Apply exists for concurrency: the gateway writes with
// compare-and-set, and on a conflict it reads the session again and applies
// the same change to the fresh data. The change is kept as a merge patch
// (RFC 7396) relative to the snapshot:
//
//   - A patch header is kept as sent: applied to fresh data it still sets,
//     merges and removes exactly the members it names, at any depth, so
//     concurrent patches of a.b and a.c both survive.
//   - An update header replaces the data, but it is first diffed against the
//     snapshot at every depth: members it repeats are left out, members it
//     dropped become removals. Applied to fresh data it only touches what the
//     upstream changed. With both headers, the patch is merged on top.
//
// Nulls: in a patch, a null member removes the key (RFC 7396). In an update, a
// null member is a value like any other and is stored as null (an update
// {"a":null} gives data {"a":null}); only a top-level update null destroys the
// session. A patch cannot set a null value; an update can. Internally the
// change therefore distinguishes "remove" from "set to null", which plain RFC
// 7396 cannot.
//
// Numbers are canonical (see CanonicalNumber): integers are exact (int64, or up
// to 34 digits as written, which MongoDB keeps as Decimal128), every other
// number is a float64, so 1.0 becomes 1, -0 becomes 0, and 1e-400 (below the
// smallest float64) becomes 0. A number too large for a float64 (1e400) is
// refused as bad upstream input. Equal data therefore always encodes to equal
// bytes, in every store.
//
// Error messages never contain session data: they name the kind of problem and
// a key's depth or length, never a key or a value, because the gateway logs them.
// The one exception is a refusal under a Scope (scope.go): it names the
// refused path (keys quoted and cut at 64 bytes) or directive, never a value.
//
// Everything here is pure: no I/O, no clock. The caddymodule package does the
// HTTP and store work around it.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Default header names, for the default prefix "X-Session".
const (
	DefaultPrefix = "X-Session"
	SuffixMeta    = "-Meta"
	SuffixUpdate  = "-Update"
	SuffixPatch   = "-Patch"
	SuffixControl = "-Control"
)

// DefaultMaxLine is the default cap, in bytes, on a whole protocol header
// line: name, ": " and value. It fits Apache 2.4's default
// LimitRequestFieldSize (8190, counted over name, ": " and value) with margin.
const DefaultMaxLine = 8000

// defaultMaxValue is the value cap Evaluate uses when given none: the
// default line cap minus "X-Session: ".
const defaultMaxValue = DefaultMaxLine - len(DefaultPrefix) - len(": ")

// maxAgeLimit is the largest max-age directive accepted: ten years.
const maxAgeLimit = 10 * 365 * 24 * time.Hour

// ErrBadUpstream marks errors caused by what the upstream sent. The gateway
// answers them with 502 Bad Gateway and leaves the session untouched.
var ErrBadUpstream = errors.New("bad session headers from upstream")

// Kind says what was wrong with an upstream's session headers, for
// metrics: the message says it for people.
type Kind uint8

// Kinds of BadInput.
const (
	// KindJSON: malformed JSON, not an object, too deep, a forbidden key,
	// a number out of range, or two update or patch headers.
	KindJSON Kind = iota
	// KindSize: over the size limit.
	KindSize
	// KindControl: an unknown or malformed control directive.
	KindControl
	// KindRevoke: revoke-others or revoke-all where the gateway has no
	// subject to revoke by (no subject option, no subject index, or no
	// subject value in the session).
	KindRevoke
	// KindForbidden: a change or directive outside the handler's write or
	// control options (see Scope); BadInput.Refused names it.
	KindForbidden
	// KindSubject: a value at the subject path that cannot be a subject
	// (store.CanonicalSubject: an object, an array, a string holding NUL,
	// or over store.MaxSubjectLen).
	KindSubject
)

// BadInput is an error caused by what the upstream sent. It wraps
// ErrBadUpstream.
type BadInput struct {
	Kind Kind
	// Refused, for KindForbidden, is the refused path (dotted, its keys
	// quoted when not plain and cut at 64 bytes) or directive name.
	Refused string
	msg     string
}

func (e *BadInput) Error() string { return ErrBadUpstream.Error() + ": " + e.msg }

// Unwrap makes errors.Is(err, ErrBadUpstream) true.
func (e *BadInput) Unwrap() error { return ErrBadUpstream }

// Bad returns a BadInput of kind with a formatted message. The message
// names the kind of problem, sizes and positions, never data.
func Bad(kind Kind, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	// A wrapped cause that is itself bad upstream input says so once.
	msg = strings.ReplaceAll(msg, ErrBadUpstream.Error()+": ", "")
	return &BadInput{Kind: kind, msg: msg}
}

// Input is what an upstream response said about the session: the values
// of the update, patch and control headers, each nil when absent.
type Input struct {
	Update  []string
	Patch   []string
	Control []string
}

// Empty reports whether the upstream said nothing about the session.
func (in *Input) Empty() bool {
	return in.Update == nil && in.Patch == nil && in.Control == nil
}

// Outcome is what should happen to the session after a response.
type Outcome struct {
	// Destroy says the session ends: delete it and expire the cookie. It
	// wins over everything else: Regenerate is then false, MaxAge nil and
	// there is no change to apply.
	Destroy bool
	// Regenerate says the session moves to a new token.
	Regenerate bool
	// RevokeOthers says every other session of the same subject ends.
	// With Destroy it becomes RevokeAll.
	RevokeOthers bool
	// RevokeAll says every session of the same subject ends, this one
	// included. The gateway then ends the session as for Destroy,
	// ignoring the change, Regenerate and MaxAge, and revokes by the
	// subject the session had when it was loaded.
	RevokeAll bool
	// MaxAge is the new idle timeout the upstream asked for, or nil.
	MaxAge *time.Duration

	sent     bool   // an update or patch was sent (and Destroy is false)
	change   *patch // the change relative to the snapshot; nil when none
	maxValue int    // cap on the encoded result
	guarded  bool   // the change was restricted to write paths: Apply checks blocked
}

// HasChanges reports whether the upstream sent an update or patch (it may
// still turn out to be a no-op). It is false when the session is destroyed.
func (o *Outcome) HasChanges() bool { return o.sent }

// Apply applies the change to base (the snapshot, or a fresh read of the
// session after a conflict) and returns the canonical encoding and whether
// it differs from base (byte-wise, so a base in another spelling counts as
// changed). The size check (maxValue from Evaluate) happens here, on the
// canonical form; its error wraps ErrBadUpstream. With no change it returns
// base (or "{}" for empty base), false, nil. base is never modified.
func (o *Outcome) Apply(base json.RawMessage) (data json.RawMessage, changed bool, err error) {
	if len(base) == 0 {
		base = json.RawMessage("{}")
	}
	if o.change == nil || len(o.change.members) == 0 {
		return base, false, nil
	}
	target, err := decodeObject(base)
	if err != nil {
		return nil, false, fmt.Errorf("session data: %w", err)
	}
	if o.guarded {
		if at := o.change.blocked(target, nil); at != nil {
			return nil, false, forbidden(at)
		}
	}
	enc, err := Encode(o.change.applyTo(target))
	if err != nil { // the change is valid, so base is at fault: not the upstream's error
		return nil, false, fmt.Errorf("session data: %v", err)
	}
	if len(enc) > o.maxValue {
		return nil, false, Bad(KindSize, "session would be %d bytes encoded, over the %d byte limit", len(enc), o.maxValue)
	}
	return enc, !bytes.Equal(enc, base), nil
}

// Evaluate parses the upstream's headers against snapshot, the data the
// upstream was given (canonical bytes; nil or empty means {}), for an
// upstream without restrictions: see Scope.Evaluate. maxValue
// caps each update/patch header value and the encoded result, in bytes (the
// caller subtracts the header name and ": " from its line cap); zero or
// less means DefaultMaxLine minus "X-Session: ". It validates everything it
// can up front (JSON syntax, keys, numbers, shapes, control directives), so
// that Apply on fresh data can only fail on size. Errors about the input
// wrap ErrBadUpstream.
func Evaluate(snapshot json.RawMessage, in Input, maxValue int) (Outcome, error) {
	return Unrestricted.Evaluate(snapshot, in, maxValue)
}

// Evaluate is Evaluate for an upstream with the scope s: view is what it
// was given (s.Read's projection of the snapshot). Directives outside
// s.Control are refused; an update is diffed against the view (see
// diffView); the change is refused when it names a path outside s.Write,
// and Apply refuses it when it would replace a value on the way to one.
// Refusals are BadInput of KindForbidden.
func (s Scope) Evaluate(view json.RawMessage, in Input, maxValue int) (Outcome, error) {
	if in.Empty() {
		return Outcome{}, nil
	}
	if maxValue <= 0 {
		maxValue = defaultMaxValue
	}
	out := Outcome{maxValue: maxValue}
	if err := parseControl(in.Control, &out); err != nil {
		return Outcome{}, err
	}
	if len(in.Update) > 1 || len(in.Patch) > 1 {
		return Outcome{}, Bad(KindJSON, "more than one update or patch header")
	}
	update, err := parseUpdate(in.Update, maxValue)
	if err != nil {
		return Outcome{}, err
	}
	if update == nil && len(in.Update) == 1 {
		out.Destroy = true
	}
	merge, err := parsePatch(in.Patch, maxValue)
	if err != nil {
		return Outcome{}, err
	}
	if err := s.checkControl(&out); err != nil {
		return Outcome{}, err
	}
	if out.Destroy {
		return destroyed(out), nil
	}
	out.sent = update != nil || merge != nil
	if update != nil {
		snap, err := decodeObject(view)
		if err != nil {
			return Outcome{}, fmt.Errorf("snapshot: %w", err)
		}
		out.change = diffView(snap, update, s.Read)
		out.change.whole = nil // the data is always an object: never needed at the top
	}
	if merge != nil {
		out.change = compose(out.change, merge)
	}
	if s.Write != nil && out.change != nil && !s.Write.whole {
		if out.change, err = s.Write.restrict(out.change, nil); err != nil {
			return Outcome{}, err
		}
		out.guarded = true
	}
	return out, nil
}

// destroyed clears what Destroy overrides.
func destroyed(out Outcome) Outcome {
	out.Regenerate, out.MaxAge = false, nil
	out.sent, out.change = false, nil
	if out.RevokeOthers {
		out.RevokeOthers, out.RevokeAll = false, true
	}
	return out
}

// parseUpdate returns the update object, or nil for none or a null update.
func parseUpdate(lines []string, maxValue int) (map[string]any, error) {
	if len(lines) == 0 {
		return nil, nil
	}
	v, err := parseValue(lines[0], maxValue, "update")
	if err != nil || v == nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, Bad(KindJSON, "update is not a JSON object or null")
	}
	return obj, nil
}

// parsePatch returns the patch header as a change, or nil for none.
func parsePatch(lines []string, maxValue int) (*patch, error) {
	if len(lines) == 0 {
		return nil, nil
	}
	v, err := parseValue(lines[0], maxValue, "patch")
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, Bad(KindJSON, "patch is not a JSON object")
	}
	return fromMergePatch(obj), nil
}

// parseValue decodes one update or patch header value and checks it.
func parseValue(s string, maxValue int, what string) (any, error) {
	if len(s) > maxValue {
		return nil, Bad(KindSize, "%s is %d bytes, over the %d byte limit", what, len(s), maxValue)
	}
	v, err := decode([]byte(s))
	if err != nil {
		return nil, Bad(KindJSON, "%s: %v", what, err)
	}
	v, err = check(v, 0)
	if err != nil {
		return nil, Bad(KindJSON, "%s: %v", what, err)
	}
	if obj, ok := v.(map[string]any); ok {
		if _, ok := obj[""]; ok {
			return nil, Bad(KindJSON, "%s: empty top-level key", what)
		}
	}
	return v, nil
}

// parseControl reads X-Session-Control directives. Several header lines
// are read as one comma-separated list, as HTTP defines. Error messages
// name a directive only when it is one of ours.
func parseControl(lines []string, out *Outcome) error {
	n := 0
	for _, line := range lines {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			n++
			if err := directive(item, n, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// directive applies the n-th control directive, item, to out.
func directive(item string, n int, out *Outcome) error {
	name, arg, hasArg := strings.Cut(item, "=")
	name = strings.ToLower(strings.TrimSpace(name))
	if flag := out.flag(name); flag != nil {
		if hasArg {
			return Bad(KindControl, "control directive %s takes no value", name)
		}
		*flag = true
		return nil
	}
	if name != "max-age" {
		return Bad(KindControl, "unknown control directive (item %d, %d bytes)", n, len(item))
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
	if !hasArg || err != nil || secs < 0 || secs > int64(maxAgeLimit/time.Second) {
		return Bad(KindControl, "max-age needs a whole number of seconds between 0 and ten years")
	}
	if secs == 0 { // as with cookies: max-age=0 ends the session
		out.Destroy = true
		return nil
	}
	d := time.Duration(secs) * time.Second
	out.MaxAge = &d
	return nil
}

// flag returns the field of the directive name that takes no value, or nil.
func (o *Outcome) flag(name string) *bool {
	switch name {
	case "regenerate":
		return &o.Regenerate
	case "destroy":
		return &o.Destroy
	case "revoke-others":
		return &o.RevokeOthers
	case "revoke-all":
		return &o.RevokeAll
	}
	return nil
}
