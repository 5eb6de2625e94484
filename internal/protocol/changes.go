// Package protocol implements the header protocol between the gateway and
// upstream applications: it turns the X-Session-Update, X-Session-Patch and
// X-Session-Control response headers into a change against the snapshot
// of the session the upstream was given, and encodes session data for the
// X-Session request header.
//
// Everything here is pure: no I/O, no clock. The caddymodule package does
// the HTTP and store work around it.
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

// DefaultMaxSize is the default cap, in bytes, on one update header and
// on the encoded session: about what common upstream servers accept in
// one request header line (nginx, Apache, gunicorn, Tomcat: 8 KiB).
const DefaultMaxSize = 8 << 10

// ErrBadUpstream marks errors caused by what the upstream sent. The gateway
// answers them with 502 Bad Gateway and leaves the session untouched.
var ErrBadUpstream = errors.New("bad session headers from upstream")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadUpstream, fmt.Sprintf(format, args...))
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
	// Destroy says the session ends: delete it and expire the cookie.
	Destroy bool
	// Regenerate says the session moves to a new token.
	Regenerate bool
	// MaxAge is the new idle timeout the upstream asked for, or nil.
	MaxAge *time.Duration
	// Data is the session's data after the changes.
	Data map[string]json.RawMessage
	// Set and Unset are the top-level keys that changed against the
	// snapshot: the change a store applies atomically, so concurrent
	// requests that touch other keys keep theirs.
	Set   map[string]json.RawMessage
	Unset []string
}

// Changed reports whether the data changed.
func (o *Outcome) Changed() bool { return len(o.Set) > 0 || len(o.Unset) > 0 }

// Evaluate works out the outcome of in against snapshot, the data the
// upstream was given. An update replaces the data and a patch is then
// merged in (RFC 7396). maxSize caps each header value and the encoded
// result. Errors wrap ErrBadUpstream. snapshot is never modified.
func Evaluate(snapshot map[string]json.RawMessage, in Input, maxSize int) (Outcome, error) {
	out := Outcome{Data: snapshot}
	if in.Empty() {
		return out, nil
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if err := parseControl(in.Control, &out); err != nil {
		return Outcome{}, err
	}
	if len(in.Update) > 1 || len(in.Patch) > 1 {
		return Outcome{}, badf("more than one update or patch header")
	}
	var data map[string]any // decoded working copy, nil until needed
	if len(in.Update) == 1 {
		v, err := parseValue(in.Update[0], maxSize, "update")
		if err != nil {
			return Outcome{}, err
		}
		if v == nil {
			out.Destroy = true
		} else {
			obj, ok := v.(map[string]any)
			if !ok {
				return Outcome{}, badf("update is not a JSON object or null")
			}
			data = obj
		}
	}
	if len(in.Patch) == 1 {
		v, err := parseValue(in.Patch[0], maxSize, "patch")
		if err != nil {
			return Outcome{}, err
		}
		patch, ok := v.(map[string]any)
		if !ok {
			return Outcome{}, badf("patch is not a JSON object")
		}
		if data == nil && !out.Destroy {
			data = decodeAll(snapshot, patch)
		}
		if data != nil {
			mergeObject(data, patch)
		}
	}
	if out.Destroy {
		out.Data, out.Regenerate = nil, false
		return out, nil
	}
	if data == nil {
		return out, nil // control directives only
	}
	if err := diff(snapshot, data, &out); err != nil {
		return Outcome{}, err
	}
	if n := len(AppendObject(nil, out.Data)); n > maxSize {
		return Outcome{}, badf("session would be %d bytes encoded, over the %d byte limit", n, maxSize)
	}
	return out, nil
}

func parseValue(s string, maxSize int, what string) (any, error) {
	if len(s) > maxSize {
		return nil, badf("%s is %d bytes, over the %d byte limit", what, len(s), maxSize)
	}
	v, err := decode(s)
	if err != nil {
		return nil, badf("%s: %v", what, err)
	}
	if err := checkKeys(v, 0); err != nil {
		return nil, badf("%s: %v", what, err)
	}
	if obj, ok := v.(map[string]any); ok {
		if _, ok := obj[""]; ok {
			return nil, badf("%s: empty top-level key not allowed", what)
		}
	}
	return v, nil
}

// decodeAll decodes the snapshot values a patch needs to merge into
// (objects patched with objects); the others stay raw via rawValue.
func decodeAll(snapshot map[string]json.RawMessage, patch map[string]any) map[string]any {
	data := make(map[string]any, len(snapshot)+len(patch))
	for k, raw := range snapshot {
		data[k] = rawValue(raw)
	}
	for k, p := range patch {
		if _, isObj := p.(map[string]any); !isObj {
			continue
		}
		if rv, ok := data[k].(rawValue); ok {
			if v, err := decode(string(rv)); err == nil {
				data[k] = v
			}
		}
	}
	return data
}

// rawValue is a snapshot value that the changes did not need to look
// inside; it is compared and copied as bytes.
type rawValue json.RawMessage

// mergeObject applies an RFC 7396 merge patch to target in place.
func mergeObject(target, patch map[string]any) {
	for k, p := range patch {
		if p == nil {
			delete(target, k)
			continue
		}
		pobj, ok := p.(map[string]any)
		if !ok {
			target[k] = p
			continue
		}
		tobj, ok := target[k].(map[string]any)
		if !ok {
			tobj = map[string]any{}
		}
		mergeObject(tobj, pobj)
		target[k] = tobj
	}
}

// diff fills out.Data, out.Set and out.Unset from the new data against
// the snapshot, comparing canonical encodings.
func diff(snapshot map[string]json.RawMessage, data map[string]any, out *Outcome) error {
	out.Data = make(map[string]json.RawMessage, len(data))
	for k, v := range data {
		var enc json.RawMessage
		if rv, ok := v.(rawValue); ok {
			enc = json.RawMessage(rv)
		} else {
			enc = encode(nil, v)
		}
		out.Data[k] = enc
		old, had := snapshot[k]
		if had && sameJSON(old, enc) {
			continue
		}
		if out.Set == nil {
			out.Set = map[string]json.RawMessage{}
		}
		out.Set[k] = enc
	}
	for k := range snapshot {
		if _, ok := data[k]; !ok {
			out.Unset = append(out.Unset, k)
		}
	}
	return nil
}

// sameJSON compares two encodings, re-encoding the old one canonically
// when the bytes differ (a store may hand back another spelling).
func sameJSON(old, enc json.RawMessage) bool {
	if bytes.Equal(old, enc) {
		return true
	}
	n, err := Normalize(old)
	if err == nil && bytes.Equal(n, enc) {
		return true
	}
	v, err := decode(string(old))
	if err != nil {
		return false
	}
	return bytes.Equal(encode(nil, v), enc)
}

// parseControl reads X-Session-Control directives. Several header lines
// are read as one comma-separated list, as HTTP defines.
func parseControl(lines []string, out *Outcome) error {
	for _, line := range lines {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			name, arg, hasArg := strings.Cut(item, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "regenerate":
				if hasArg {
					return badf("control directive %q takes no value", name)
				}
				out.Regenerate = true
			case "destroy":
				if hasArg {
					return badf("control directive %q takes no value", name)
				}
				out.Destroy = true
			case "max-age":
				secs, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
				if !hasArg || err != nil || secs < 0 || secs > 10*365*24*3600 {
					return badf("max-age needs a number of seconds between 0 and ten years, got %q", arg)
				}
				if secs == 0 { // as with cookies: max-age=0 ends the session
					out.Destroy = true
					continue
				}
				d := time.Duration(secs) * time.Second
				out.MaxAge = &d
			default:
				return badf("unknown control directive %q", item)
			}
		}
	}
	return nil
}
