package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/internal/backchannel"
	"github.com/sessiongate/caddy-session/store"
)

const (
	// backchannelTimeout bounds one back-channel logout: fetching the
	// IdP's keys, the replay guard and the deletes.
	backchannelTimeout = 10 * time.Second
	// maxBackchannelBody bounds the form read from the IdP.
	maxBackchannelBody = backchannel.MaxTokenLen + 4096
)

// isBackchannel reports whether r is for the back-channel logout path.
func (h *Handler) isBackchannel(r *http.Request) bool {
	return h.sso.verifier != nil && r.URL.Path == h.BackchannelLogout.Path
}

// serveBackchannel answers an IdP's back-channel logout request itself:
// 200 (Cache-Control: no-store) once the sessions the logout token names
// are ended, also when none matched; 400 {"error":"invalid_request"} with
// one warn line giving the reason for a token it refuses; 503 when the
// IdP's keys or the store cannot be reached. The cross-origin check does
// not apply: the caller is a server and sends no cookie.
func (h *Handler) serveBackchannel(w http.ResponseWriter, r *http.Request) error {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		hdr.Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backchannelTimeout)
	defer cancel()
	token, err := logoutToken(w, r)
	if err != nil {
		return h.backchannelRefused(w, backchannel.ReasonMalformed, err)
	}
	now := h.now()
	claims, err := h.sso.verifier.Verify(ctx, token, now)
	switch {
	case backchannel.ReasonOf(err) != "":
		return h.backchannelRefused(w, backchannel.ReasonOf(err), err)
	case errors.Is(err, backchannel.ErrUnreachable):
		h.metrics.backchannel(bcUnavailable)
		h.logger.Warn("back-channel logout: the identity provider's keys could not be fetched; answered 503 so it retries", zap.Error(err))
		return backchannelUnavailable(w)
	case err != nil:
		return h.backchannelStoreFailed(w, "replay guard", err)
	}
	n, err := h.endByClaims(ctx, claims)
	if err != nil {
		return h.backchannelStoreFailed(w, "ending sessions", err)
	}
	h.metrics.backchannel(bcEnded)
	h.logger.Info("back-channel logout", zap.Bool("sid", claims.Sid != ""), zap.Bool("sub", claims.Subject != ""), zap.Int("ended", n))
	w.WriteHeader(http.StatusOK)
	return nil
}

// logoutToken reads the logout_token form field of a POST body.
func logoutToken(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBackchannelBody)
	if err := r.ParseForm(); err != nil {
		return "", errors.New("the body is not a form of at most 20 KB")
	}
	tokens := r.PostForm["logout_token"]
	if len(tokens) != 1 || tokens[0] == "" {
		return "", errors.New("want exactly one logout_token form field")
	}
	return tokens[0], nil
}

// endByClaims ends the sessions a verified token names: by sid when it
// has one and sid_key is set, else by sub: at sub_key when that is not
// the subject path, else by subject.
func (h *Handler) endByClaims(ctx context.Context, c *backchannel.Claims) (int, error) {
	if c.Sid != "" && h.sso.sids != nil {
		return h.sso.sids.DeleteBySid(ctx, c.Sid)
	}
	if c.Subject != "" && h.sso.isubs != nil {
		return h.sso.isubs.DeleteByIdPSub(ctx, c.Subject)
	}
	if c.Subject != "" && h.index != nil && !h.ownSubKey() {
		return h.index.DeleteBySubject(ctx, c.Subject, "")
	}
	return 0, nil // nothing this gateway can match the token by
}

// backchannelRefused answers 400 for a refused logout token and logs one
// warn line with the reason, never the token.
func (h *Handler) backchannelRefused(w http.ResponseWriter, reason backchannel.Reason, err error) error {
	h.metrics.backchannel(bcRefused)
	h.logger.Warn("back-channel logout refused", zap.String("reason", string(reason)), zap.Error(err))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, werr := io.WriteString(w, `{"error":"invalid_request"}`+"\n")
	return werr
}

// backchannelStoreFailed answers a logout the store could not carry out:
// 503 when it is unreachable (the IdP may retry), 500 otherwise.
func (h *Handler) backchannelStoreFailed(w http.ResponseWriter, op string, err error) error {
	h.metrics.backchannel(bcUnavailable)
	h.logger.Error("back-channel logout failed", zap.String("op", op), zap.Error(err))
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return backchannelUnavailable(w)
	}
	w.WriteHeader(http.StatusInternalServerError)
	return nil
}

func backchannelUnavailable(w http.ResponseWriter) error {
	w.Header().Set("Retry-After", retryAfter)
	w.WriteHeader(http.StatusServiceUnavailable)
	return nil
}
