package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// Least privilege per route: the read, write and control options (see
// docs/caddyfile.md#one-gateway-several-apps). The rules themselves are
// in internal/protocol (Scope); this file parses the options, gives each
// request its view of the session and answers refusals.

// parseScope parses the read, write and control options. Validate and
// Provision both run it.
func (h *Handler) parseScope() (protocol.Scope, error) {
	read, err := protocol.ParsePaths(h.Read)
	if err != nil {
		return protocol.Scope{}, fmt.Errorf("read: %w", err)
	}
	write, err := protocol.ParsePaths(h.Write)
	if err != nil {
		return protocol.Scope{}, fmt.Errorf("write: %w", err)
	}
	control, err := protocol.ParseControls(h.Control)
	if err != nil {
		return protocol.Scope{}, fmt.Errorf("control: %w", err)
	}
	return protocol.Scope{Read: read, Write: write, Control: control}, nil
}

// provisionScope sets up read, write and control, before anything is
// opened.
func (h *Handler) provisionScope() error {
	scope, err := h.parseScope()
	if err != nil {
		return err
	}
	h.scope = scope
	if scope.Read != nil {
		h.views = newViewCache()
	}
	return nil
}

// describeScope names the handler in the log line of a refusal: what it
// may read, write and control, as configured.
func (h *Handler) describeScope() string {
	list := func(v []string, all string) string {
		if v == nil {
			return all
		}
		return strings.Join(v, " ")
	}
	return "read " + list(h.Read, "everything") + "; write " + list(h.Write, "everything") + "; control " + list(h.Control, "all")
}

// view is the X-Session value of the request's session under read (which
// is set): its projection, computed once per session version and handler
// (a decode and an encode cost microseconds; the lookup nanoseconds).
func (st *state) view() (string, error) {
	if st.rec == nil {
		return emptyObject, nil
	}
	if e := st.h.views.session(st.key, st.rec.Version); e != nil {
		return e.value, nil
	}
	v, err := st.h.scope.Read.Project(st.rec.Data)
	if err != nil {
		return "", err
	}
	e := &viewEntry{key: st.key, version: st.rec.Version, value: string(v)}
	st.h.views.put(st.h.views.index(st.key, "", "", ""), e)
	return e.value, nil
}

// snapshot is the data the upstream was given, for Evaluate.
func (st *state) snapshot() (json.RawMessage, error) {
	if st.h.scope.Read == nil {
		return st.data(), nil
	}
	v, err := st.view()
	if err != nil {
		return nil, st.projectionFailed(err)
	}
	return json.RawMessage(v), nil
}

// projectionFailed answers a request whose stored data could not be
// projected: 500, since the store handed back data that is not an object.
func (st *state) projectionFailed(err error) error {
	return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("session %s: projecting the session data for read: %w", st.handle(), err))
}

// forbidden answers a change or directive outside the handler's write or
// control options: 502, the session as it was, one warn line that names
// the handler (its options) and the refused path or directive, never a
// value, and the forbidden refusal counted. The response writer answers
// the 502 itself rather than returning the error to Caddy, which would
// log it a second time.
func (st *state) forbidden(bad *protocol.BadInput) error {
	h := st.h
	h.metrics.refuse(refusedForbidden)
	h.logger.Warn("refused the upstream's session change: outside this handler's write or control options; session left as it was",
		zap.String("session", st.handle()), zap.String("handler", h.describeScope()),
		zap.String("refused", bad.Refused), zap.String("path", st.req.URL.Path))
	return caddyhttp.Error(http.StatusBadGateway, errForbidden)
}

// errForbidden marks a forbidden refusal, logged and answered already
// (see forbidden and responseWriter.WriteHeader).
var errForbidden = errors.New("session: upstream change outside the handler's scope (logged)")

// forbiddenOf returns err's BadInput when it is a forbidden refusal.
func forbiddenOf(err error) *protocol.BadInput {
	var bad *protocol.BadInput
	if errors.As(err, &bad) && bad.Kind == protocol.KindForbidden {
		return bad
	}
	return nil
}

// nestedIn returns the state of an outer session handler that already
// loaded this request's session with the same cookie, or nil. The outer
// handler took the cookie, so this one cannot read it: it narrows the
// outer one instead (serveNested).
func nestedIn(r *http.Request, h *Handler) *state {
	outer, _ := caddyhttp.GetVar(r.Context(), stateVarKey).(*state)
	if outer == nil || outer.h == h || outer.h.attrs.Name != h.attrs.Name {
		return nil
	}
	return outer
}

// serveNested serves a request whose session an outer session handler
// of the same cookie loaded: a site-wide `session` with, inside a
// `handle` block, another one that limits what that route's upstream may
// read, write and control. This handler gives the upstream its own view
// of the outer session (read) and checks the upstream's answer against
// its own scope; what it lets through is handed to the outer handler,
// which writes it (delegate). The outer handler's headers are removed in
// both directions, so an upstream cannot reach past this handler by
// another header prefix.
func (h *Handler) serveNested(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, outer *state, match bool) error {
	outer.h.stripSessionHeaders(r.Header)
	rw := &responseWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	rw.st = state{h: h, req: r, now: outer.now, passive: !match, outer: outer,
		rec: outer.rec, key: outer.key, rotated: outer.rotated, adopted: outer.adopted}
	rw.keepHeaders()
	st := &rw.st
	if !match {
		return h.finish(rw, next.ServeHTTP(rw, r))
	}
	if err := h.handToUpstream(r, st); err != nil {
		return rw.answerError(err)
	}
	return h.finish(rw, next.ServeHTTP(rw, r))
}

// delegate checks the answer of a nested handler's upstream against this
// handler's scope and hands what it allows to the outer handler, which
// commits it when the response goes through it.
func (st *state) delegate(in protocol.Input) error {
	if in.Empty() {
		return nil
	}
	out, err := st.evaluate(in)
	if err != nil {
		return err
	}
	st.outer.delegated = &out
	return nil
}
