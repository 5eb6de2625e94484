package caddymodule

import (
	"errors"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// TLS early data (HTTP/3 0-RTT, RFC 8470). Caddy accepts 0-RTT by default,
// and a request sent in early data can be replayed by anyone who saw it.
// The gateway sees a session change only after the upstream has run, so
// the refusal that matters comes before proxying:
//
//   - an unsafe request (any method but GET, HEAD and OPTIONS, as
//     cross_origin counts them) that carries the session cookie and is
//     still in early data gets 425 Too Early before the upstream is
//     called; the client sends it again after the handshake;
//   - a safe request goes through: reverse_proxy tells the upstream with
//     Early-Data: 1, so an upstream that changes state on a GET can answer
//     425 itself. If its answer asks for a session change (any protocol
//     header), the gateway does not apply it and answers 425 instead, so
//     a replayed request never changes a session; the client's retry
//     after the handshake does, once.

// inEarlyData reports whether r arrived in TLS early data: the handshake
// had not completed when it was read.
func inEarlyData(r *http.Request) bool {
	return r.TLS != nil && !r.TLS.HandshakeComplete
}

// safeMethod reports whether a method is safe (RFC 9110): GET, HEAD and
// OPTIONS, the ones cross_origin lets through.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// tooEarly reports whether r must wait for the handshake before the
// upstream sees it: in early data, unsafe, with the session cookie.
func tooEarly(r *http.Request, hadCookie bool) bool {
	return hadCookie && inEarlyData(r) && !safeMethod(r.Method)
}

// answerTooEarly answers 425 before the upstream is called. The session
// is not loaded further, changed or extended.
func (h *Handler) answerTooEarly(w http.ResponseWriter, r *http.Request) error {
	h.logger.Debug("refused an unsafe request in TLS early data; the client retries after the handshake",
		zap.String("method", r.Method))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	addVary(hdr)
	w.WriteHeader(http.StatusTooEarly)
	_, err := io.WriteString(w, `{"error":"too early: retry after the TLS handshake"}`+"\n")
	return err
}

// errEarlyChange is the error of a session change asked for in answer to
// a request in early data.
func errEarlyChange() error {
	return caddyhttp.Error(http.StatusTooEarly,
		errors.New("session change asked for in answer to a request in TLS early data: not applied, the client retries after the handshake"))
}
