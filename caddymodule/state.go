package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

// stateVarKey is the Caddy request variable that holds the request's
// *state, for require_session.
const stateVarKey = "caddy_session.state"

// state is one request's view of its session.
//
// The fields read after the upstream answered (commit) come first, so
// they share the first cache lines of the response writer: by then the
// request's memory has usually left the CPU cache (docs/benchmarks.md).
// TestStateCommitFieldsFirst holds them there.
type state struct {
	h            *Handler
	rec          *store.Record // nil when the visitor has no session yet
	passive      bool          // the matcher did not match: clean only
	hadCookie    bool          // the request carried a cookie of our name
	rotated      bool          // read-only: the session moved to a new token, or another request adopted it
	expireCookie bool          // the stored session was ended on load
	sendCookie   bool          // the session was created on load (adopted): set its cookie
	touchDue     bool          // the loaded session is due a touch (policy.touchDue)
	legacyExpire []string      // Set-Cookie values that expire legacy session cookies

	// vals backs the one-value headers the gateway sets on a request and
	// its response (see setOne), so setting them allocates nothing
	// (allocBudgets holds the count).
	vals [numVals]string

	req     *http.Request
	now     time.Time
	token   string // verified token; empty without a session
	key     string // store key of token
	adopted string // the legacy source a session was adopted from

	// With rotated set by a regenerate: the handles of the request's
	// session and of the session that replaced it, for the log.
	rotatedFrom, successor string

	// outer, for a handler nested in another session handler of the
	// same cookie, is the outer handler's state: this one narrows it
	// (serveNested). delegated, on the outer state, is the change the
	// nested handler let through, applied instead of the response's
	// headers.
	outer     *state
	delegated *protocol.Outcome
}

// Indexes into state.vals.
const (
	valData      = iota // X-Session
	valMeta             // X-Session-Meta
	valVary             // Vary
	valCache            // Cache-Control
	valAssertion        // X-Session-Assertion
	numVals
)

// setOne sets hdr[name] to the single value v, held in st.vals[i]. The
// slice's capacity is one, so whoever appends to it gets a copy.
func (st *state) setOne(hdr http.Header, name string, i int, v string) {
	st.vals[i] = v
	hdr[name] = st.vals[i : i+1 : i+1]
}

// String keeps the state out of logs and placeholders: it holds a token.
func (st *state) String() string { return "[session]" }

// emptyObject is the X-Session value of a request without a session.
const emptyObject = "{}"

// noSessionMeta is the X-Session-Meta value of a request without a session.
const noSessionMeta = `{"new":true,"id":"","created":0,"expires":0}`

// requestValues returns the X-Session value (the stored encoding as it
// is, or its projection under read) and the X-Session-Meta value. Without
// read both are cut from one string, so they cost one allocation; with
// read the projection comes from the handler's cache and the meta value
// costs the one allocation (allocBudgets holds the count).
func (st *state) requestValues() (data, meta string, err error) {
	if st.rec == nil {
		return emptyObject, noSessionMeta, nil
	}
	if st.h.scope.Read != nil {
		if data, err = st.view(); err != nil {
			return "", "", st.projectionFailed(err)
		}
		var scratch [128]byte
		return data, string(st.appendMeta(scratch[:0])), nil
	}
	d := st.rec.Data
	if len(d) == 0 {
		d = json.RawMessage(emptyObject)
	}
	var scratch [128]byte
	m := st.appendMeta(scratch[:0])
	var b strings.Builder
	b.Grow(len(d) + len(m))
	b.Write(d)
	b.Write(m)
	both := b.String()
	return both[:len(d)], both[len(d):], nil
}

// data returns the session data as stored, nil without a session.
func (st *state) data() json.RawMessage {
	if st.rec == nil {
		return nil
	}
	return st.rec.Data
}

// appendMeta appends the X-Session-Meta value of a request with a session.
func (st *state) appendMeta(b []byte) []byte {
	b = append(b, `{"new":false,"id":"`...)
	b = append(b, cookie.Handle(st.key)...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, st.rec.Created.Unix(), 10)
	b = append(b, `,"expires":`...)
	b = strconv.AppendInt(b, st.rec.Expires.Unix(), 10)
	if st.adopted != "" {
		b = append(b, `,"adopted":"`...)
		b = append(b, st.adopted...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// placeholder resolves {http.session.<path>} and {http.session_meta.*}.
func (st *state) placeholder(key string) (any, bool) {
	if path, ok := strings.CutPrefix(key, "http.session."); ok {
		// Absent data renders empty, not as the literal placeholder.
		v, _ := protocol.Lookup(st.data(), strings.Split(path, "."))
		return placeholderValue(v), true
	}
	if field, ok := strings.CutPrefix(key, "http.session_meta."); ok {
		switch field {
		case "new":
			return st.rec == nil, true
		case "id":
			if st.rec == nil {
				return "", true
			}
			return cookie.Handle(st.key), true
		case "expires":
			if st.rec == nil {
				return "", true
			}
			return st.rec.Expires.UTC().Format(time.RFC3339), true
		}
	}
	return nil, false
}

// placeholderValue renders a JSON value for use in a Caddy placeholder:
// strings as they are, null as empty, anything else as JSON.
func placeholderValue(v any) any {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return v
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// setSubject makes the subject's value {http.auth.user.id}, as Caddy's own
// authentication does, so access logs carry it.
func (st *state) setSubject(repl *caddy.Replacer) {
	if st.h.subject == nil || repl == nil {
		return
	}
	if st.rec == nil || st.rec.Subject == "" {
		repl.Delete("http.auth.user.id")
		return
	}
	// A number or boolean subject is stored with its type tag (see
	// store.CanonicalSubject); the log shows its JSON text.
	repl.Set("http.auth.user.id", strings.TrimPrefix(st.rec.Subject, "\x00"))
}

// subjectOf is the subject's value in data, spelled by
// store.CanonicalSubject (so 42 and "42" are two subjects); "" when no
// subject is configured or the data has none (or null). A value that
// cannot be a subject (an object, an array, NUL, over
// store.MaxSubjectLen) is an error of kind protocol.KindSubject: the
// gateway refuses the write with 502.
func (h *Handler) subjectOf(data json.RawMessage) (string, error) {
	if h.subject == nil {
		return "", nil
	}
	v, ok := protocol.Lookup(data, h.subject)
	if !ok {
		return "", nil
	}
	s, err := store.CanonicalSubject(v)
	if err != nil {
		return "", protocol.Bad(protocol.KindSubject, "subject: %v", err)
	}
	return s, nil
}

// version is the loaded record's version; 0 without a session.
func (st *state) version() int64 {
	if st.rec == nil {
		return 0
	}
	return st.rec.Version
}

// handle names the session in logs without revealing anything usable.
func (st *state) handle() string {
	if st.key == "" {
		return ""
	}
	return cookie.Handle(st.key)
}

// markPrivate marks a response as depending on the cookie, and as private
// when the request had or got a session.
func (st *state) markPrivate(hdr http.Header) {
	if hdr["Vary"] == nil {
		st.setOne(hdr, "Vary", valVary, "Cookie")
	} else {
		addVary(hdr)
	}
	if st.rec == nil && !st.hadCookie && hdr["Set-Cookie"] == nil {
		return
	}
	if hdr["Cache-Control"] == nil {
		st.setOne(hdr, "Cache-Control", valCache, "private")
	} else {
		makePrivate(hdr)
	}
}

// addVary marks the response as depending on the Cookie header, so caches
// never serve one visitor's page to another.
func addVary(hdr http.Header) {
	for _, v := range hdr["Vary"] {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			if item == "*" || strings.EqualFold(item, "Cookie") {
				return
			}
		}
	}
	hdr["Vary"] = append(hdr["Vary"], "Cookie")
}

// makePrivate keeps shared caches from storing a response that depends on
// a session: "public" is dropped and "private" added unless the response
// already forbids storing.
func makePrivate(hdr http.Header) {
	cc := hdr["Cache-Control"]
	if len(cc) == 0 {
		hdr["Cache-Control"] = []string{"private"}
		return
	}
	var kept []string
	for _, v := range cc {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			name := strings.ToLower(item)
			switch {
			case name == "private" || name == "no-store":
				return
			case name == "public", name == "":
				continue
			case strings.HasPrefix(name, "s-maxage"):
				continue
			}
			kept = append(kept, item)
		}
	}
	hdr.Set("Cache-Control", strings.Join(append([]string{"private"}, kept...), ", "))
}
