package caddymodule

import (
	"errors"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// responseWriter catches the moment the upstream's response header is
// written. Informational (1xx) headers are cleaned and passed on; at the
// final header the session changes are committed, the cookie is set and
// the protocol headers are removed, all before anything reaches the
// client. If committing fails, the upstream's response is dropped and the
// handler answers with the error instead.
//
// It also holds the request's session state, so one allocation serves
// both.
type responseWriter struct {
	caddyhttp.ResponseWriterWrapper
	wroteHeader bool
	failure     error
	st          state // its commit fields first: see state
	repl        *caddy.Replacer

	// kept remembers the headers earlier handlers set (Server, Alt-Svc,
	// HSTS, ...) with copies of their values: an error answer restores
	// them exactly, whatever the route did to them (reverse_proxy replaces
	// Server with the upstream's), and drops what the route added. More
	// than four headers or values are cloned into keptMore.
	kept     [4]keptHeader
	nkept    int
	keptVals [4]string   // the values of kept, copied (no allocation for up to four)
	keptMore http.Header // when there were more than len(kept) headers or values
}

type keptHeader struct {
	name string
	vals []string // a copy of the values, in keptVals
}

// keepHeaders records the response headers set before the route runs.
func (rw *responseWriter) keepHeaders() {
	hdr := rw.Header()
	if len(hdr) > len(rw.kept) {
		rw.keptMore = hdr.Clone()
		return
	}
	used := 0
	for name, vals := range hdr {
		if used+len(vals) > len(rw.keptVals) {
			rw.nkept, rw.keptMore = 0, hdr.Clone()
			return
		}
		end := used + copy(rw.keptVals[used:], vals)
		rw.kept[rw.nkept] = keptHeader{name, rw.keptVals[used:end:end]}
		rw.nkept, used = rw.nkept+1, end
	}
}

// restoreHeaders puts the response headers back as keepHeaders found
// them: the route's headers are dropped, and the earlier ones get their
// values back exactly, even where the route replaced or removed them.
func (rw *responseWriter) restoreHeaders() {
	hdr := rw.Header()
	clear(hdr)
	if rw.keptMore != nil {
		for k, v := range rw.keptMore {
			hdr[k] = v
		}
		return
	}
	for _, k := range rw.kept[:rw.nkept] {
		hdr[k.name] = k.vals
	}
}

// answerError prepares the headers of an error answer: those set before
// the route ran, Vary and Cache-Control, and Retry-After on a 503.
func (rw *responseWriter) answerError(err error) error {
	rw.restoreHeaders()
	hdr := rw.Header()
	rw.st.markPrivate(hdr)
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode == http.StatusServiceUnavailable {
		hdr.Set("Retry-After", retryAfter)
	}
	return err
}

// WriteHeader implements http.ResponseWriter.
func (rw *responseWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		rw.st.h.stripSessionHeaders(rw.Header())
		rw.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	rw.wroteHeader = true
	if err := rw.commit(); err != nil {
		rw.failure = rw.answerError(err)
		if errors.Is(err, errForbidden) {
			// Logged once already, as a warning (state.forbidden): the
			// 502 is answered here, so Caddy does not log it again.
			rw.ResponseWriterWrapper.WriteHeader(http.StatusBadGateway)
		}
		return
	}
	rw.ResponseWriterWrapper.WriteHeader(status)
}

// commit takes the upstream's protocol headers out of the response and,
// on a request the matcher selected, commits them.
func (rw *responseWriter) commit() error {
	hdr := rw.Header()
	in := rw.st.h.takeInput(hdr)
	if rw.st.outer != nil { // nested: the outer handler's names go too
		rw.st.outer.h.stripSessionHeaders(hdr)
	}
	if rw.st.passive {
		return nil
	}
	if !in.Empty() && inEarlyData(rw.st.req) {
		return errEarlyChange()
	}
	if err := rw.st.commit(hdr, in); err != nil {
		return err
	}
	rw.st.setSubject(rw.repl)
	return nil
}

// Write implements http.ResponseWriter.
func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.failure != nil {
		return len(p), nil // discarded: the error response replaces it
	}
	return rw.ResponseWriterWrapper.Write(p)
}

// ReadFrom keeps io.Copy from bypassing WriteHeader and Write.
func (rw *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.failure != nil {
		return io.Copy(io.Discard, r)
	}
	return rw.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError keeps a flush from sending headers that were not committed.
func (rw *responseWriter) FlushError() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.failure != nil {
		return nil
	}
	return http.NewResponseController(&rw.ResponseWriterWrapper).Flush()
}

var _ http.ResponseWriter = (*responseWriter)(nil)
