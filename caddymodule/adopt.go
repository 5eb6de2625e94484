package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/adopt"
	"github.com/sessiongate/caddy-session/store"
)

// adoptSweepInterval is how often claimed legacy documents are deleted.
const adoptSweepInterval = time.Minute

// adoptBackend is implemented by store modules whose database can hold
// legacy sessions (the MongoDB store): it builds the source of one adopt
// block on that database, refusing the store's own collection.
type adoptBackend interface {
	NewAdoptSource(cfg adopt.Config, keys [][]byte, check adopt.Check) (*adopt.Source, error)
}

// newCookieSource builds the source of an adopt block on a store without
// a database: cookie-only sources work, the others are refused.
func newCookieSource(cfg adopt.Config, keys [][]byte, check adopt.Check) (*adopt.Source, error) {
	return adopt.New(cfg, keys, nil, check)
}

// checkAdopt checks the adopt blocks, and refuses a key that is empty once
// its placeholders are resolved, before anything is opened.
func (h *Handler) checkAdopt() error {
	repl := caddy.NewReplacer()
	for i := range h.Adopt {
		cfg := &h.Adopt[i]
		if err := cfg.Validate(); err != nil {
			return err
		}
		// The source takes its cookies out of requests and expires them:
		// under the gateway's own name, a planted cookie would expire the
		// session cookie.
		own := h.configAttributes().Name
		for _, name := range cfg.CookieNames() {
			if name == own {
				return fmt.Errorf("adopt %s: legacy cookie %q clashes with the session cookie %q (cookie_name): give the legacy cookie's real name with cookie, or another cookie_name", cfg.Kind, name, own)
			}
		}
		for j, k := range cfg.Keys {
			if repl.ReplaceKnown(k, "") == "" {
				return fmt.Errorf("adopt %s: key %d is empty (unset environment variable?) (adopt block %d)", cfg.Kind, j+1, i+1)
			}
		}
	}
	return nil
}

// provisionAdopt builds the legacy session sources and starts their sweep.
func (h *Handler) provisionAdopt(mod any) error {
	if len(h.Adopt) == 0 {
		return nil
	}
	newSource := newCookieSource
	if b, ok := mod.(adoptBackend); ok {
		newSource = b.NewAdoptSource
	}
	repl := caddy.NewReplacer()
	for i, cfg := range h.Adopt {
		keys := make([][]byte, 0, len(cfg.Keys))
		for _, k := range cfg.Keys {
			keys = append(keys, []byte(repl.ReplaceKnown(k, "")))
		}
		src, err := newSource(cfg, keys, adopt.ProtocolCheck(h.maxValue()))
		if err != nil {
			return fmt.Errorf("%v (adopt block %d)", err, i+1)
		}
		h.sources = append(h.sources, src)
	}
	h.run.stop = make(chan struct{})
	go h.sweepAdopted(h.run.stop)
	return nil
}

// sweepAdopted deletes the legacy documents this instance claimed, once
// their grace time is over, until stop is closed.
func (h *Handler) sweepAdopted(stop <-chan struct{}) {
	t := time.NewTicker(adoptSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		h.sweepAdoptedOnce()
	}
}

// sweepAdoptedOnce is one round of sweepAdopted (tests call it directly
// rather than wait for the ticker).
func (h *Handler) sweepAdoptedOnce() {
	for _, src := range h.sources {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := src.Sweep(ctx, h.now()); err != nil {
			h.logger.Warn("could not delete adopted legacy sessions; the next sweep tries again", zap.String("source", src.Name()), zap.Error(err))
		}
		cancel()
	}
}

// adoptLegacy runs when the request has no live gateway session: a valid
// legacy cookie becomes a gateway session, once. With a live session it
// only expires the legacy cookies, which a gateway session always wins
// over; an unsafe cross-origin request is not adopted. Requests without
// legacy cookies pay one substring search.
func (h *Handler) adoptLegacy(r *http.Request, st *state) error {
	for _, src := range h.sources {
		if !src.Present(r.Header) {
			continue
		}
		if st.rec != nil || st.rotated {
			st.legacyExpire = append(st.legacyExpire, src.Discard(r.Header, r.TLS != nil)...)
			continue
		}
		if h.csrf != nil && h.csrf.Check(r) != nil {
			// The cross-origin protection covers legacy cookies too. The
			// request goes on without a session; the legacy cookies are
			// kept in the browser for its next same-origin request.
			_ = src.Discard(r.Header, false)
			h.logger.Info("legacy session not adopted", zap.String("source", src.Name()), zap.String("reason", "cross-origin request"))
			continue
		}
		if err := h.adoptFrom(r, st, src); err != nil {
			return err
		}
	}
	return nil
}

// adoptFrom asks one source for the request's legacy session.
func (h *Handler) adoptFrom(r *http.Request, st *state, src *adopt.Source) error {
	token := cookie.NewToken()
	key := cookie.Key(token)
	leg, err := src.Adopt(r.Context(), r, st.now, key)
	if err != nil {
		return h.storeError("adopt "+src.Name(), "", err)
	}
	st.legacyExpire = append(st.legacyExpire, leg.Expire...)
	switch leg.Outcome {
	case adopt.OutcomeRefused:
		h.logger.Info("legacy session not adopted", zap.String("source", src.Name()), zap.String("reason", leg.Reason))
	case adopt.OutcomeAdopted:
		return h.createAdopted(r, st, src, leg, token, key)
	case adopt.OutcomeJoined:
		return h.joinAdopted(r, st, src, leg)
	}
	return nil
}

// createAdopted stores the legacy data as a new gateway session; the
// cookie is set when the response is committed.
func (h *Handler) createAdopted(r *http.Request, st *state, src *adopt.Source, leg *adopt.Legacy, token, key string) error {
	ctx := context.WithoutCancel(r.Context())
	subject, err := h.subjectOf(leg.Data)
	if err != nil {
		// A session that could not be listed or revoked by its subject is
		// not adopted; the claim is released and the legacy cookies kept.
		if rerr := leg.Release(ctx); rerr != nil {
			h.logger.Warn("could not release a legacy claim; it is adoptable again after its grace time", zap.String("source", src.Name()), zap.Error(rerr))
		}
		st.legacyExpire = st.legacyExpire[:len(st.legacyExpire)-len(leg.Expire)]
		h.logger.Info("legacy session not adopted", zap.String("source", src.Name()), zap.String("reason", "subject cannot be indexed"))
		return nil
	}
	rec := &store.Record{Data: leg.Data, Subject: subject, Created: st.now, Updated: st.now, Version: 1}
	rec.Expires = h.policy.expiry(rec.Created, h.policy.idle, st.now)
	if err := h.store.Create(ctx, key, rec); err != nil {
		if rerr := leg.Release(ctx); rerr != nil {
			h.logger.Warn("could not release a legacy claim; it is adoptable again after its grace time", zap.String("source", src.Name()), zap.Error(rerr))
		}
		return h.storeError("adopt "+src.Name(), cookie.Handle(key), err)
	}
	st.token, st.key, st.rec, st.adopted, st.sendCookie = token, key, rec, src.Name(), true
	h.logger.Info("adopted a legacy session", zap.String("source", src.Name()), zap.String("session", cookie.Handle(key)))
	h.metrics.write(writeAdopt)
	return nil
}

// joinAdopted serves a request that carries a legacy cookie another
// request just adopted: the adopted session (or, before it is stored, the
// legacy data), read-only and with no cookie of either kind.
func (h *Handler) joinAdopted(r *http.Request, st *state, src *adopt.Source, leg *adopt.Legacy) error {
	rec, err := h.store.Find(r.Context(), leg.Key, st.now)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrRotated):
		rec = &store.Record{Data: leg.Data, Created: st.now, Updated: st.now, Expires: st.now.Add(h.policy.idle)}
	default:
		return h.storeError("adopt "+src.Name(), cookie.Handle(leg.Key), err)
	}
	st.key, st.rec, st.adopted, st.rotated = leg.Key, rec, src.Name(), true
	return nil
}
