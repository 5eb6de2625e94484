package caddymodule

import (
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
type responseWriter struct {
	*caddyhttp.ResponseWriterWrapper
	rww         caddyhttp.ResponseWriterWrapper // what the pointer above points to
	st          state
	repl        *caddy.Replacer
	wroteHeader bool
	failure     error
}

// WriteHeader implements http.ResponseWriter.
func (rw *responseWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	hdr := rw.Header()
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		rw.st.h.stripSessionHeaders(hdr)
		rw.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	rw.wroteHeader = true
	req := rw.st.req
	if err := rw.st.commit(req, hdr); err != nil {
		rw.failure = err
		return
	}
	rw.st.setSubject(rw.repl)
	rw.ResponseWriterWrapper.WriteHeader(status)
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
	return http.NewResponseController(rw.ResponseWriterWrapper).Flush()
}
