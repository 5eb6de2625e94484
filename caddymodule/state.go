package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

// stateCtxKey is the request context key of the request's *state.
type stateCtxKey struct{}

// state is one request's view of its session.
type state struct {
	h         *Handler
	req       *http.Request
	now       time.Time
	hadCookie bool
	token     string        // verified token; empty without a session
	key       string        // store key of token
	rec       *store.Record // nil when the visitor has no session yet
}

// data returns the session data as the upstream was given it.
func (st *state) data() map[string]json.RawMessage {
	if st.rec == nil {
		return nil
	}
	return st.rec.Data
}

// meta is the value of the X-Session-Meta request header.
func (st *state) meta() string {
	if st.rec == nil {
		return `{"new":true,"id":"","created":0,"expires":0}`
	}
	b := make([]byte, 0, 80)
	b = append(b, `{"new":false,"id":"`...)
	b = append(b, cookie.Handle(st.key)...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, st.rec.Created.Unix(), 10)
	b = append(b, `,"expires":`...)
	b = strconv.AppendInt(b, st.rec.Expires.Unix(), 10)
	b = append(b, '}')
	return string(b)
}

// placeholder resolves {http.session.<path>} and {http.session_meta.*}.
func (st *state) placeholder(key string) (any, bool) {
	if path, ok := strings.CutPrefix(key, "http.session."); ok {
		// Absent data renders empty, not as the literal placeholder.
		v, _ := lookup(st.data(), strings.Split(path, "."))
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

// lookup finds the value at a key path in the data: objects by key,
// arrays by index. found is false when the path leads nowhere.
func lookup(data map[string]json.RawMessage, path []string) (v any, found bool) {
	if len(path) == 0 || data == nil {
		return nil, false
	}
	raw, ok := data[path[0]]
	if !ok {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	for _, p := range path[1:] {
		switch cur := v.(type) {
		case map[string]any:
			if v, ok = cur[p]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(cur) {
				return nil, false
			}
			v = cur[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// setSubject makes the subject's value {http.auth.user.id}, as Caddy's own
// authentication does, so access logs carry it.
func (st *state) setSubject(repl *caddy.Replacer) {
	if st.h.subject == nil {
		return
	}
	v, ok := lookup(st.data(), st.h.subject)
	if !ok || v == nil {
		repl.Delete("http.auth.user.id")
		return
	}
	repl.Set("http.auth.user.id", placeholderValue(v))
}

// commit reads the upstream's session headers from hdr, removes them,
// applies the changes to the store and sets the cookie. It runs when the
// upstream's final response header is written, before it reaches the
// client. An error means the response must be replaced by the error.
func (st *state) commit(r *http.Request, hdr http.Header) error {
	h := st.h
	in := protocol.Input{Update: hdr[h.hdr.update], Patch: hdr[h.hdr.patch], Control: hdr[h.hdr.control]}
	h.stripSessionHeaders(hdr)
	addVary(hdr)

	out, err := protocol.Evaluate(st.data(), in, h.maxSize)
	if err != nil {
		h.logger.Error("refused session changes from upstream; session left as it was",
			zap.String("session", st.handle()), zap.Error(err),
			zap.String("method", r.Method), zap.String("uri", r.RequestURI))
		clear(hdr)
		h.metrics.refuse(refusalOf(err)) // ops
		return caddyhttp.Error(http.StatusBadGateway, err)
	}

	// Writes outlive a client that hangs up mid-response: a regenerate
	// half done would leave the old token alive.
	ctx := withoutCancel{r.Context()}
	tls := r.TLS != nil
	setCookie := func(c *http.Cookie) { hdr.Add("Set-Cookie", c.String()) }

	switch {
	case out.Destroy:
		if st.rec != nil {
			if err := h.store.Delete(ctx, st.key); err != nil {
				return h.storeFailed(hdr, "destroy", err)
			}
			h.logger.Debug("session destroyed", zap.String("session", st.handle()))
			h.metrics.write(writeDestroy) // ops
		}
		if st.hadCookie {
			setCookie(h.attrs.Expired(tls))
		}
		st.rec, st.key, st.token = nil, "", ""

	case st.rec == nil || out.Regenerate:
		if st.rec == nil && len(out.Data) == 0 {
			break // nothing to keep: no session, no cookie, no write
		}
		rec := &store.Record{Data: out.Data, Created: st.now, Updated: st.now, Version: 1}
		if st.rec != nil { // regenerate: same session, new token
			rec.Created, rec.MaxAge = st.rec.Created, st.rec.MaxAge
		}
		if out.MaxAge != nil {
			rec.MaxAge = *out.MaxAge
		}
		rec.Expires = h.expiry(rec.Created, h.idleFor(rec), st.now)
		token, key, err := h.create(ctx, rec)
		if err != nil {
			return h.storeFailed(hdr, "create", err)
		}
		if st.rec != nil {
			if err := h.store.Delete(ctx, st.key); err != nil {
				// The new session exists but the old token still works:
				// fail the request rather than leave a fixation hole open.
				_ = h.store.Delete(ctx, key)
				return h.storeFailed(hdr, "regenerate", err)
			}
		}
		h.metrics.write(createOp(st.rec != nil)) // ops
		st.token, st.key, st.rec = token, key, rec
		setCookie(h.attrs.New(h.signer.Sign(h.attrs.Name, token), tls, h.cookieMaxAge(rec, st.now)))

	case out.Changed() || out.MaxAge != nil:
		ch := store.Change{Set: out.Set, Unset: out.Unset, MaxAge: out.MaxAge}
		idle := h.idleFor(st.rec)
		if out.MaxAge != nil {
			idle = *out.MaxAge
		}
		ch.Expires = h.expiry(st.rec.Created, idle, st.now)
		switch err := h.store.Apply(ctx, st.key, ch, st.now); {
		case errors.Is(err, store.ErrNotFound):
			// Destroyed or expired since this request loaded it: never
			// bring it back.
			h.logger.Warn("session ended while the request ran; its changes were dropped", zap.String("session", st.handle()))
			setCookie(h.attrs.Expired(tls))
			st.rec, st.key, st.token = nil, "", ""
		case err != nil:
			return h.storeFailed(hdr, "update", err)
		default:
			h.metrics.write(writeUpdate) // ops
			st.rec.Data, st.rec.Expires, st.rec.Updated = out.Data, ch.Expires, st.now
			if out.MaxAge != nil {
				st.rec.MaxAge = *out.MaxAge
				setCookie(h.attrs.New(h.signer.Sign(h.attrs.Name, st.token), tls, h.cookieMaxAge(st.rec, st.now)))
			}
		}

	default:
		// Nothing changed. Extend the idle expiry, at most once per touch
		// interval so unchanged requests cost no write.
		if st.now.Sub(st.rec.Updated) >= h.touch {
			exp := h.expiry(st.rec.Created, h.idleFor(st.rec), st.now)
			if exp.After(st.rec.Expires) {
				if err := h.store.Touch(ctx, st.key, exp, st.now); err != nil && !errors.Is(err, store.ErrNotFound) {
					// The response is fine; the session just was not
					// extended this time.
					h.logger.Warn("could not extend session expiry", zap.String("session", st.handle()), zap.Error(err))
				} else if err == nil { // ops
					h.metrics.write(writeTouch) // ops
				}
			}
		}
	}

	if st.rec != nil || hdr["Set-Cookie"] != nil {
		makePrivate(hdr)
	}
	return nil
}

// create stores rec under a new token, retrying on the (astronomically
// unlikely) collision of two tokens' keys.
func (h *Handler) create(ctx context.Context, rec *store.Record) (token, key string, err error) {
	for range 3 {
		token = cookie.NewToken()
		key = cookie.Key(token)
		if err = h.store.Create(ctx, key, rec); !errors.Is(err, store.ErrExists) {
			break
		}
	}
	if err != nil {
		return "", "", err
	}
	return token, key, nil
}

// cookieMaxAge is how long the browser should keep the cookie of rec:
// until the session's lifetime ends, capped by the configured max age;
// zero (a browser-session cookie) when so configured and the upstream did
// not ask for a persistent session.
func (h *Handler) cookieMaxAge(rec *store.Record, now time.Time) time.Duration {
	left := rec.Created.Add(h.lifetime).Sub(now)
	switch {
	case h.attrs.MaxAge < 0 && rec.MaxAge == 0:
		return 0
	case h.attrs.MaxAge > 0:
		return min(left, h.attrs.MaxAge)
	}
	return left
}

// handle names the session in logs without revealing anything usable.
func (st *state) handle() string {
	if st.key == "" {
		return ""
	}
	return cookie.Handle(st.key)
}

// addVary marks the response as depending on the Cookie header, so caches
// never serve one visitor's page to another.
func addVary(hdr http.Header) {
	for _, v := range hdr.Values("Vary") {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			if item == "*" || strings.EqualFold(item, "Cookie") {
				return
			}
		}
	}
	hdr.Add("Vary", "Cookie")
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

// withoutCancel is context.WithoutCancel without its allocation on the
// path where no store write happens.
type withoutCancel struct{ context.Context }

func (withoutCancel) Deadline() (time.Time, bool) { return time.Time{}, false }
func (withoutCancel) Done() <-chan struct{}       { return nil }
func (withoutCancel) Err() error                  { return nil }
