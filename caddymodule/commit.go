package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

const (
	// maxAttempts bounds the compare-and-set retries of one write.
	maxAttempts = 4
	// rotatedGrace is how long the key of a regenerated session answers
	// "rotated" rather than "not found", so requests that were already
	// running with the old cookie drop their changes quietly instead of
	// expiring the new cookie.
	rotatedGrace = 2 * time.Minute
	// retryAfter is the Retry-After value of a 503, in seconds.
	retryAfter = "5"
)

// errContention means a write lost its compare-and-set maxAttempts times.
var errContention = fmt.Errorf("%w: the session kept changing under concurrent writes", store.ErrUnavailable)

// takeInput moves the upstream's protocol headers out of hdr, and removes
// protocol names from the trailers it announces. Like
// stripSessionHeaders, it removes every name with the prefix; only the
// protocol's names, as written, are read.
func (h *Handler) takeInput(hdr http.Header) protocol.Input {
	var in protocol.Input
	for name, vals := range hdr {
		if !hasHeaderPrefix(name, h.hdr.prefix) {
			continue
		}
		switch name {
		case h.hdr.update:
			in.Update = vals
		case h.hdr.patch:
			in.Patch = vals
		case h.hdr.control:
			in.Control = vals
		}
		delete(hdr, name)
	}
	if vals := hdr["Trailer"]; h.hasPrefixToken(vals) {
		hdr["Trailer"] = h.withoutPrefixTokens(vals)
		h.warnTrailers()
	}
	return in
}

// commit applies in, the upstream's answer, to the session and sets the
// cookie. It runs when the final response header is written, before any
// of it reaches the client. An error replaces the response.
//
// It runs deep in reverse_proxy's stack, so the common case (no change)
// stays in small frames; apply holds the rest.
func (st *state) commit(hdr http.Header, in protocol.Input) error {
	st.sendPendingCookies(hdr)
	if in.Empty() {
		st.touch(hdr)
		st.markPrivate(hdr)
		return nil
	}
	err := st.apply(hdr, in)
	st.markPrivate(hdr)
	return err
}

// sendPendingCookies sends the cookies decided when the session was
// loaded: an expired one for a session ended on load, the expiry of
// adopted legacy cookies, and the cookie of an adopted session.
func (st *state) sendPendingCookies(hdr http.Header) {
	if st.expireCookie {
		st.setCookie(hdr, nil)
	}
	for _, c := range st.legacyExpire {
		hdr.Add("Set-Cookie", c)
	}
	if st.sendCookie {
		st.setCookie(hdr, st.rec)
	}
}

// apply carries out the changes the upstream asked for.
func (st *state) apply(hdr http.Header, in protocol.Input) error {
	if err := st.h.checkInputLines(in); err != nil {
		return st.badUpstream(err)
	}
	out, err := protocol.Evaluate(st.data(), in, st.h.maxValue())
	if err != nil {
		return st.badUpstream(err)
	}
	if st.rotated {
		st.h.logger.Info("session changes dropped: the request's session was regenerated or adopted by a concurrent request", zap.String("session", st.handle()))
		return nil
	}
	// Writes outlive a client that hangs up mid-response: a regenerate
	// half done would leave the old token alive.
	ctx := context.WithoutCancel(st.req.Context())
	switch {
	case out.Destroy || out.RevokeAll: // revoke-all ends this session too
		return st.destroy(ctx, hdr, &out)
	case st.rec == nil:
		return st.create(ctx, hdr, &out)
	case out.Regenerate:
		return st.regenerate(ctx, hdr, &out)
	}
	return st.update(ctx, hdr, &out)
}

// maxValue is the longest X-Session value that fits the header line cap.
func (h *Handler) maxValue() int { return h.maxLine - len(h.hdr.data) - len(": ") }

// checkInputLines refuses an Update or Patch line longer than the line
// cap, its name and ": " included (Evaluate caps the values by the
// shorter X-Session name).
func (h *Handler) checkInputLines(in protocol.Input) error {
	for _, line := range [...]struct {
		name string
		vals []string
	}{{h.hdr.update, in.Update}, {h.hdr.patch, in.Patch}} {
		for _, v := range line.vals {
			if n := len(line.name) + len(": ") + len(v); n > h.maxLine {
				return protocol.Bad(protocol.KindSize, "a %s line of %d bytes is over the %d-byte limit", line.name, n, h.maxLine)
			}
		}
	}
	return nil
}

// setCookie sends the session's cookie, or expires it when rec is nil.
func (st *state) setCookie(hdr http.Header, rec *store.Record) {
	h, tls := st.h, st.req.TLS != nil
	c := h.attrs.Expired(tls)
	if rec != nil {
		c = h.attrs.New(h.signer.Sign(h.attrs.Name, st.token), tls, h.policy.cookieAge(rec, st.now))
	}
	hdr.Add("Set-Cookie", c.String())
}

// end forgets the session for the rest of the request.
func (st *state) end() { st.rec, st.key, st.token = nil, "", "" }

// touch extends the idle expiry of an unchanged session, at most once
// per touch interval, so unchanged requests cost no write.
func (st *state) touch(hdr http.Header) {
	if st.rec == nil || st.rotated || !st.touchDue {
		return
	}
	exp, _ := st.h.policy.touchDue(st.rec, st.now)
	st.extend(hdr, exp)
}

// extend moves the session's expiry to exp.
func (st *state) extend(hdr http.Header, exp time.Time) {
	h := st.h
	err := h.store.Touch(context.WithoutCancel(st.req.Context()), st.key, exp, st.now)
	switch {
	case err == nil:
		h.metrics.write(writeTouch)
		rec := *st.rec // found records are read-only
		rec.Expires, rec.Updated = exp, st.now
		st.rec = &rec
		if h.policy.refreshCookie() {
			st.setCookie(hdr, st.rec)
		}
	case !errors.Is(err, store.ErrNotFound):
		// The response is fine; the session just was not extended.
		h.logger.Warn("could not extend session expiry", zap.String("session", st.handle()), zap.Error(err))
	}
}

// destroy ends the session (and, with revoke-all, every session of its
// subject) and expires the cookie.
func (st *state) destroy(ctx context.Context, hdr http.Header, out *protocol.Outcome) error {
	h := st.h
	if err := st.checkRevoke(out, st.subject()); err != nil {
		return err
	}
	if out.RevokeAll {
		if err := st.revoke(ctx, st.subject(), ""); err != nil {
			return err
		}
	}
	if st.rec != nil {
		ended, err := st.retire(ctx, hdr)
		if ended || err != nil {
			return err
		}
		h.logger.Debug("session destroyed", zap.String("session", st.handle()))
		h.metrics.write(writeDestroy)
	}
	if st.hadCookie {
		st.setCookie(hdr, nil)
	}
	st.end()
	return nil
}

// retiredSuccessor marks the tombstone of a destroyed session. It expires
// at once, so the key reads as not found; it only makes the destroy a
// compare-and-set.
const retiredSuccessor = "destroyed"

// retire ends the session with compare-and-set, so a logout that started
// before a concurrent login never undoes it: if the session was
// regenerated meanwhile, the destroy is dropped and no cookie is sent,
// and if it ended meanwhile the cookie is expired (ended is true either
// way). A session changed meanwhile is retired all the same.
func (st *state) retire(ctx context.Context, hdr http.Header) (ended bool, err error) {
	err = st.casLoop(ctx, hdr, "destroy", func(base *store.Record) error {
		return st.h.store.Rotate(ctx, st.key, base.Version, retiredSuccessor, st.now, st.now)
	})
	return st.rec == nil, err
}

// subject is the current session's subject, "" without one.
func (st *state) subject() string {
	if st.rec == nil {
		return ""
	}
	return st.rec.Subject
}

// create stores a first session for a visitor who had none, if the
// upstream gave it any data.
func (st *state) create(ctx context.Context, hdr http.Header, out *protocol.Outcome) error {
	h := st.h
	data, changed, err := out.Apply(nil)
	if err != nil {
		return st.badUpstream(err)
	}
	if !changed {
		return nil // nothing to keep: no session, no cookie, no write
	}
	rec := &store.Record{Data: data, Subject: h.subjectOf(data), Created: st.now, Updated: st.now, Version: 1}
	if out.MaxAge != nil {
		rec.MaxAge = *out.MaxAge
	}
	if err := st.checkRevoke(out, rec.Subject); err != nil {
		return err
	}
	rec.Expires = h.policy.expiry(rec.Created, h.policy.idleFor(rec), st.now)
	token, key, err := h.newSession(ctx, rec)
	if err != nil {
		return st.storeFailed("create", err)
	}
	h.metrics.write(writeCreate)
	st.token, st.key, st.rec = token, key, rec
	st.setCookie(hdr, rec)
	if out.RevokeOthers {
		return st.revoke(ctx, rec.Subject, key)
	}
	return nil
}

// newSession stores rec under a new token, retrying on the
// (astronomically unlikely) collision of two tokens' keys.
func (h *Handler) newSession(ctx context.Context, rec *store.Record) (token, key string, err error) {
	for range 3 {
		token = cookie.NewToken()
		key = cookie.Key(token)
		if err = h.store.Create(ctx, key, rec); !errors.Is(err, store.ErrExists) {
			break
		}
	}
	return token, key, err
}

// next is the record the changes in out make of base, or changed false
// when they change nothing.
func (st *state) next(base *store.Record, out *protocol.Outcome) (rec store.Record, changed bool, err error) {
	h := st.h
	data, changed, err := out.Apply(base.Data)
	if err != nil {
		return rec, false, st.badUpstream(err)
	}
	rec = *base
	rec.Data, rec.Subject = data, h.subjectOf(data)
	if out.MaxAge != nil {
		rec.MaxAge, changed = *out.MaxAge, true
	}
	rec.Expires = h.policy.expiry(rec.Created, h.policy.idleFor(&rec), st.now)
	return rec, changed, nil
}

// update writes the upstream's changes with compare-and-set, re-reading
// and re-applying them to the fresh data when another write came first.
func (st *state) update(ctx context.Context, hdr http.Header, out *protocol.Outcome) error {
	h := st.h
	return st.casLoop(ctx, hdr, "update", func(base *store.Record) error {
		rec, changed, err := st.next(base, out)
		if err != nil {
			return err
		}
		if err := st.checkRevoke(out, rec.Subject); err != nil {
			return err
		}
		if !changed {
			st.touch(hdr)
			return st.revokeOthers(ctx, out)
		}
		if err := h.store.Update(ctx, st.key, &rec, st.now); err != nil {
			return err
		}
		h.metrics.write(writeUpdate)
		rec.Version, rec.Updated = rec.Version+1, st.now
		st.rec = &rec
		if out.MaxAge != nil || h.policy.refreshCookie() {
			st.setCookie(hdr, st.rec)
		}
		return st.revokeOthers(ctx, out)
	})
}

// casLoop runs step, one compare-and-set write on the session as last
// read (base), until it does not lose: after a lost write
// (store.ErrConflict) it re-reads the session and runs step again, at
// most maxAttempts times, then answers 503. step returns nil, an error
// that answers the request (badUpstream, storeFailed), or the error of
// its store call, which casLoop answers as op's store failure. A re-read
// that finds the session gone (rotated by a login, destroyed or expired)
// ends the loop without an error: the changes are dropped.
func (st *state) casLoop(ctx context.Context, hdr http.Header, op string, step func(base *store.Record) error) error {
	for range maxAttempts {
		err := step(st.rec)
		var answer caddyhttp.HandlerError
		switch {
		case err == nil || errors.As(err, &answer):
			return err
		case !errors.Is(err, store.ErrConflict):
			return st.storeFailed(op, err)
		}
		if ended, err := st.reread(ctx, hdr); ended || err != nil {
			return err
		}
	}
	return st.storeFailed(op, errContention)
}

// reread loads the session again after a lost compare-and-set. ended is
// true when it is gone: rotated by a login (the changes are dropped and
// no cookie is sent, so the login's cookie stands) or destroyed or
// expired (the changes are dropped and the cookie expired).
func (st *state) reread(ctx context.Context, hdr http.Header) (ended bool, err error) {
	h := st.h
	rec, err := h.store.Find(ctx, st.key, st.now)
	var rotated *store.RotatedError
	switch {
	case errors.As(err, &rotated):
		h.logger.Info("session was regenerated while the request ran; its changes were dropped",
			zap.String("session", st.handle()), zap.String("successor", rotated.Successor))
	case errors.Is(err, store.ErrNotFound) || (err == nil && !h.policy.alive(rec, st.now)):
		h.logger.Info("session ended while the request ran; its changes were dropped", zap.String("session", st.handle()))
		st.setCookie(hdr, nil)
	case err != nil:
		return true, st.storeFailed("reload", err)
	default:
		st.rec = rec
		return false, nil
	}
	st.end()
	return true, nil
}

// regenerate moves the session to a new token with the changes applied.
// The new session is created first, then the old one is rotated with
// compare-and-set: a regenerate succeeds only if the old session was
// still live and unchanged, so a concurrent logout is never undone.
func (st *state) regenerate(ctx context.Context, hdr http.Header, out *protocol.Outcome) error {
	h := st.h
	return st.casLoop(ctx, hdr, "regenerate", func(base *store.Record) error {
		rec, _, err := st.next(base, out)
		if err != nil {
			return err
		}
		if err := st.checkRevoke(out, rec.Subject); err != nil {
			return err
		}
		rec.Updated, rec.Version = st.now, 1
		token, key, err := h.newSession(ctx, &rec)
		if err != nil {
			return err
		}
		if err := h.store.Rotate(ctx, st.key, base.Version, cookie.Handle(key), st.now.Add(rotatedGrace), st.now); err != nil {
			// The new session must not outlive a failed rotation.
			if derr := h.store.Delete(ctx, key); derr != nil {
				h.logger.Warn("could not remove the new session of a failed regenerate; it expires unused",
					zap.String("session", cookie.Handle(key)), zap.Error(derr))
			}
			return err
		}
		h.logger.Debug("session regenerated", zap.String("session", st.handle()), zap.String("successor", cookie.Handle(key)))
		h.metrics.write(writeRegenerate)
		st.token, st.key, st.rec = token, key, &rec
		st.setCookie(hdr, &rec)
		return st.revokeOthers(ctx, out)
	})
}

// checkRevoke refuses revoke-others and revoke-all as bad upstream input
// when there is no subject to revoke by.
func (st *state) checkRevoke(out *protocol.Outcome, subject string) error {
	if !out.RevokeOthers && !out.RevokeAll {
		return nil
	}
	switch {
	case st.h.subject == nil:
		return st.badUpstream(protocol.Bad(protocol.KindRevoke, "revoke needs the subject option"))
	case st.h.index == nil:
		return st.badUpstream(protocol.Bad(protocol.KindRevoke, "revoke needs a store that indexes subjects"))
	case subject == "":
		return st.badUpstream(protocol.Bad(protocol.KindRevoke, "revoke needs a session with a subject value"))
	}
	return nil
}

func (st *state) revokeOthers(ctx context.Context, out *protocol.Outcome) error {
	if !out.RevokeOthers || st.rec == nil {
		return nil
	}
	return st.revoke(ctx, st.rec.Subject, st.key)
}

// revoke ends every session of subject but the one under except. The
// caller has run checkRevoke before writing anything.
func (st *state) revoke(ctx context.Context, subject, except string) error {
	n, err := st.h.index.DeleteBySubject(ctx, subject, except)
	if err != nil {
		return st.storeFailed("revoke", err)
	}
	st.h.metrics.write(writeRevoke)
	st.h.logger.Info("revoked the sessions of a subject", zap.String("session", st.handle()), zap.Int("revoked", n))
	return nil
}

// badUpstream refuses the upstream's answer: 502, the session as it was.
// Caddy logs the error once; it names the kind of problem, never data.
func (st *state) badUpstream(err error) error {
	st.h.metrics.refuse(refusalOf(err))
	return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("session %s: refused the upstream's session headers; session left as it was: %w", st.handle(), err))
}

// storeFailed is the error of a store write that failed.
func (st *state) storeFailed(op string, err error) error {
	return st.h.storeError(op, st.handle(), err)
}

// storeError answers a request whose session could not be loaded or saved
// because the store failed: 503 (with Retry-After, set by the caller's
// error path) when the store is unreachable, 500 otherwise. It fails
// closed: no request goes on without the session it asked for. Caddy logs
// the error once.
func (h *Handler) storeError(op, handle string, err error) error {
	return caddyhttp.Error(storeStatus(err), fmt.Errorf("session store: %s: session %s: %w", op, handle, err))
}

// storeStatus is the status of an answer to a store failure: 503 when
// the store is unreachable or timed out, 500 otherwise.
func storeStatus(err error) int {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
