package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Every request of the route is cleaned, matched or not: no client
	// header may pose as the gateway's, by any channel.
	h.cleanRequest(r)
	if h.isBackchannel(r) {
		cookie.Take(r.Header, h.attrs.Name)
		return h.serveBackchannel(w, r)
	}
	match, err := h.matchers.AnyMatchWithError(r)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	if outer := nestedIn(r, h); outer != nil {
		return h.serveNested(w, r, next, outer, match)
	}
	rw := &responseWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	rw.st = state{h: h, req: r, now: h.now(), passive: !match}
	rw.keepHeaders()
	st := &rw.st
	if !match {
		h.metrics.request(outcomeSkipped)
		cookie.Take(r.Header, h.attrs.Name)
		return h.finish(rw, next.ServeHTTP(rw, r))
	}
	token, key, outcome := cookie.TakeVerified(r.Header, h.attrs.Name, h.signer)
	st.hadCookie = outcome != cookie.OutcomeNone
	if tooEarly(r, st.hadCookie) {
		h.metrics.request(outcomeTooEarly)
		return h.answerTooEarly(w, r)
	}
	if st.hadCookie && h.csrf != nil && checkCrossOrigin(h.csrf, r) != nil {
		h.metrics.request(outcomeCrossOrigin)
		return h.crossOrigin(w, r)
	}
	if outcome == cookie.OutcomeValid {
		if err := h.load(r, st, token, key); err != nil {
			h.metrics.request(outcomeError)
			return rw.answerError(err)
		}
	}
	h.metrics.request(requestOutcomeOf(outcome, st.rec != nil))
	if id, ok := h.devicesID(r); ok {
		return h.serveDevices(w, st, id)
	}
	if h.sources != nil {
		if err := h.adoptLegacy(r, st); err != nil {
			return rw.answerError(err)
		}
	}
	if err := h.handToUpstream(r, st); err != nil {
		return rw.answerError(err)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Map(st.placeholder)
	st.setSubject(repl)
	rw.repl = repl
	caddyhttp.SetVar(r.Context(), stateVarKey, st)
	return h.finish(rw, next.ServeHTTP(rw, r))
}

// finish ends a request after the rest of the route returned err: it
// commits if nothing was written yet, and makes sure no protocol header
// leaves in a trailer or on an error page.
func (h *Handler) finish(rw *responseWriter, err error) error {
	hdr := rw.Header()
	if !rw.wroteHeader && err != nil {
		// The route failed before answering: the error page goes out
		// with the headers that were set before the upstream ran.
		return rw.answerError(err)
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	h.dropTrailers(hdr)
	if rw.failure != nil && !errors.Is(rw.failure, errForbidden) {
		return rw.failure
	}
	return err
}

// load reads the session of a verified token, stored under key, into st.
// Only a store failure is an error: an unknown or expired session means a
// request without a session.
func (h *Handler) load(r *http.Request, st *state, token, key string) error {
	rec, err := h.store.Find(r.Context(), key, st.now)
	if err != nil {
		return h.notLoaded(st, key, err)
	}
	if !h.policy.alive(rec, st.now) {
		return nil
	}
	st.token, st.key, st.rec = token, key, rec
	// Decided now, while the record is at hand (touch runs after the
	// upstream answered).
	_, st.touchDue = h.policy.touchDue(rec, st.now)
	if len(rec.Data) > h.maxValue() {
		return h.dropOversized(r, st)
	}
	return nil
}

// notLoaded handles a load whose Find failed with err: a session
// regenerated away or gone is no session, anything else is a store
// failure. Apart from load, so a request that finds its session does not
// allocate errors.As's target.
func (h *Handler) notLoaded(st *state, key string, err error) error {
	var rotated *store.RotatedError
	switch {
	case errors.As(err, &rotated):
		// A request racing a login: read-only, no cookie.
		st.rotated, st.rotatedFrom, st.successor = true, cookie.Handle(key), rotated.Successor
		return nil
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return h.storeError("load", cookie.Handle(key), err)
}

// dropOversized ends a stored session that no longer fits the header
// line cap (the cap was lowered, or it was written by another config):
// the upstream could not be given it, and keeping it would lock its user
// out. The visitor goes on without a session and the cookie is expired.
func (h *Handler) dropOversized(r *http.Request, st *state) error {
	h.logger.Warn("stored session is over max_update_size; it was ended and its cookie expired",
		zap.String("session", st.handle()), zap.Int("bytes", len(st.rec.Data)), zap.Int("limit", h.maxLine))
	if err := h.store.Delete(r.Context(), st.key); err != nil {
		return h.storeError("delete oversized", st.handle(), err)
	}
	st.rec, st.key, st.token, st.expireCookie = nil, "", "", true
	return nil
}

// crossOrigin answers an unsafe cross-origin request that carries the
// session cookie, before the upstream is called. The session is not
// loaded further, changed or extended.
func (h *Handler) crossOrigin(w http.ResponseWriter, r *http.Request) error {
	h.logger.Info("refused a cross-origin request carrying the session cookie",
		zap.String("method", r.Method), zap.String("origin", r.Header.Get("Origin")),
		zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	addVary(hdr)
	w.WriteHeader(http.StatusForbidden)
	_, err := io.WriteString(w, `{"error":"cross-origin request refused"}`+"\n")
	return err
}

// cleanRequest removes every protocol header a client sent, by any
// channel: headers, declared trailers and Connection tokens (which would
// make reverse_proxy drop the gateway's own headers as hop-by-hop).
func (h *Handler) cleanRequest(r *http.Request) {
	h.stripSessionHeaders(r.Header)
	if vals := r.Header["Connection"]; h.hasPrefixToken(vals) {
		r.Header["Connection"] = h.withoutPrefixTokens(vals)
	}
	if r.Trailer != nil {
		h.stripSessionHeaders(r.Trailer)
		// Trailer values arrive when the body is read to its end, and
		// net/http merges every received trailer into the map then.
		r.Body = &trailerCleaner{ReadCloser: r.Body, h: h, trailer: r.Trailer}
	}
}

// withoutPrefixTokens returns the comma-separated tokens of vals minus
// the protocol's names.
func (h *Handler) withoutPrefixTokens(vals []string) []string {
	var kept []string
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !hasHeaderPrefix(tok, h.hdr.prefix) {
				kept = append(kept, tok)
			}
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return []string{strings.Join(kept, ", ")}
}

// trailerCleaner strips protocol names from the request trailers once
// they have arrived, before the body's reader sees the end.
type trailerCleaner struct {
	io.ReadCloser
	h       *Handler
	trailer http.Header
}

func (t *trailerCleaner) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		t.h.stripSessionHeaders(t.trailer)
	}
	return n, err
}

// dropTrailers removes protocol headers an upstream sent as response
// trailers, once the route is done. They come too late to apply (the
// cookie is already out), so they are dropped and logged once per handler.
func (h *Handler) dropTrailers(hdr http.Header) {
	dropped := false
	for name := range hdr {
		if hasHeaderPrefix(strings.TrimPrefix(name, http.TrailerPrefix), h.hdr.prefix) {
			delete(hdr, name)
			dropped = true
		}
	}
	if dropped {
		h.warnTrailers()
	}
}

// warnTrailers logs, once per handler, that an upstream sent protocol
// headers as response trailers.
func (h *Handler) warnTrailers() {
	if h.run.warned.CompareAndSwap(false, true) {
		h.logger.Warn("the upstream sent session headers as response trailers; trailers come after the cookie and are dropped (logged once)")
	}
}

// hasPrefixToken reports whether a comma-separated list names a protocol
// header.
func (h *Handler) hasPrefixToken(vals []string) bool {
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			if hasHeaderPrefix(strings.TrimSpace(tok), h.hdr.prefix) {
				return true
			}
		}
	}
	return false
}

// stripSessionHeaders removes every header whose name starts with the
// prefix, in any letter case and with '_' for '-': PHP-FPM, CGI and WSGI
// fold both spellings into the same variable, so a client must not be
// able to slip one past under the other.
func (h *Handler) stripSessionHeaders(hdr http.Header) {
	for name := range hdr {
		if hasHeaderPrefix(name, h.hdr.prefix) {
			delete(hdr, name)
		}
	}
}

// hasHeaderPrefix reports whether the header name starts with prefix
// (lower case, '-' separators) ignoring case and treating '_' as '-'. It
// is not cookie.NeedsSecure's fold: cookie names keep their '_'.
func hasHeaderPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// handToUpstream sets the request headers the upstream reads: the session
// data as this handler lets it see it, its meta and, when configured, the
// signed assertion that covers exactly that data.
func (h *Handler) handToUpstream(r *http.Request, st *state) error {
	data, meta, err := st.requestValues()
	if err != nil {
		return err
	}
	st.setOne(r.Header, h.hdr.data, valData, data)
	st.setOne(r.Header, h.hdr.meta, valMeta, meta)
	if h.asserter != nil {
		return h.setAssertion(r, st, data)
	}
	return nil
}
