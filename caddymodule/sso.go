package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/internal/backchannel"
	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

// BackchannelConfig configures OpenID Connect Back-Channel Logout: the
// handler answers POST on Path itself, before any upstream, and ends the
// sessions a valid logout token names.
type BackchannelConfig struct {
	// Path is the back-channel logout URL's path, registered at the IdP.
	Path string `json:"path"`

	// Issuer is the IdP's issuer identifier. The logout token's iss must
	// equal it, and its keys are found through
	// <issuer>/.well-known/openid-configuration unless JWKSURI is set.
	Issuer string `json:"issuer"`

	// Audiences are the client ids registered at the IdP; the token's aud
	// must contain one of them.
	Audiences []string `json:"audiences"`

	// JWKSURI is where the IdP's keys are fetched, skipping discovery.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// SidKey is the dotted path in the session data where the upstream
	// keeps the IdP's session id (the ID token's sid claim), e.g.
	// "oidc.sid". It is indexed: a token with sid ends every session whose
	// value there equals it.
	SidKey string `json:"sid_key,omitempty"`

	// SubKey is the dotted path whose value a token with sub and no sid
	// (or a sid without sid_key) is matched against. Default: the
	// handler's subject path. Any other path is indexed like sid_key:
	// the token ends every session whose value there equals its sub.
	SubKey string `json:"sub_key,omitempty"`
}

// ssoState is what a handler with the single sign-on options holds.
type ssoState struct {
	verifier *backchannel.Verifier // nil without backchannel_logout
	sidPath  []string              // nil without sid_key
	sids     store.SidIndex        // nil when the store cannot end by sid
	isubPath []string              // nil unless sub_key names a path other than the subject's
	isubs    store.IdPSubIndex     // set with isubPath
	limiter  store.SubjectLimiter  // nil when the store cannot limit
}

// validateSSO checks the single sign-on options against each other and
// the rest of the configuration.
func (h *Handler) validateSSO() error {
	if h.MaxSessionsPerSubject < 0 {
		return fmt.Errorf("max_sessions_per_subject must not be negative")
	}
	if h.MaxSessionsPerSubject > 0 && h.Subject == "" {
		return fmt.Errorf("max_sessions_per_subject needs the subject option")
	}
	if h.Devices != "" {
		if !strings.HasPrefix(h.Devices, "/") || strings.HasSuffix(h.Devices, "/") {
			return fmt.Errorf("devices %q: want a path starting with / and not ending with /", h.Devices)
		}
		if h.Subject == "" {
			return fmt.Errorf("devices needs the subject option")
		}
	}
	b := h.BackchannelLogout
	if b == nil {
		return nil
	}
	if !strings.HasPrefix(b.Path, "/") {
		return fmt.Errorf("backchannel_logout %q: want a path starting with /", b.Path)
	}
	if b.Path == h.Devices {
		return fmt.Errorf("backchannel_logout and devices must not share the path %q", b.Path)
	}
	if err := h.backchannelConfig(nil).Validate(); err != nil {
		return fmt.Errorf("backchannel_logout: %v", err)
	}
	if b.SidKey != "" && !validKeyPath(b.SidKey) {
		return fmt.Errorf("backchannel_logout: sid_key %q is not a dotted key path", b.SidKey)
	}
	if b.SubKey != "" && !validKeyPath(b.SubKey) {
		return fmt.Errorf("backchannel_logout: sub_key %q is not a dotted key path", b.SubKey)
	}
	if b.SidKey == "" && b.SubKey == "" && h.Subject == "" {
		return fmt.Errorf("backchannel_logout needs sid_key, sub_key or the subject option: nothing to match a logout token with")
	}
	return nil
}

// validKeyPath accepts a dotted key path without empty keys.
func validKeyPath(p string) bool {
	return p != "" && !strings.Contains(p, "..") && !strings.HasPrefix(p, ".") && !strings.HasSuffix(p, ".")
}

// backchannelConfig is the verifier's configuration; replay may be nil
// for validation.
func (h *Handler) backchannelConfig(replay backchannel.Replay) backchannel.Config {
	b := h.BackchannelLogout
	return backchannel.Config{Issuer: b.Issuer, Audiences: b.Audiences, JWKSURI: b.JWKSURI, Replay: replay}
}

// provisionSSO sets up the single sign-on options on the store module st
// (the store itself, not the timing decorator). Validate has run.
func (h *Handler) provisionSSO(ctx caddy.Context, st store.Store) error {
	if err := h.validateSSO(); err != nil {
		return err
	}
	if err := registerSSOMetrics(ctx); err != nil {
		return fmt.Errorf("session metrics: %v", err)
	}
	if h.MaxSessionsPerSubject > 0 {
		lim, ok := st.(store.SubjectLimiter)
		if !ok {
			return fmt.Errorf("max_sessions_per_subject: the store cannot limit sessions per subject")
		}
		h.sso.limiter = lim
	}
	if h.Devices != "" && h.index == nil {
		return fmt.Errorf("devices: the store cannot find sessions by subject")
	}
	b := h.BackchannelLogout
	if b == nil {
		return nil
	}
	replay, ok := st.(store.ReplayGuard)
	if !ok {
		return fmt.Errorf("backchannel_logout: the store cannot remember used logout tokens")
	}
	if b.SidKey != "" {
		sids, ok := st.(store.SidIndex)
		if !ok {
			return fmt.Errorf("backchannel_logout: the store cannot find sessions by sid")
		}
		h.sso.sids, h.sso.sidPath = sids, strings.Split(b.SidKey, ".")
	}
	if h.ownSubKey() {
		isubs, ok := st.(store.IdPSubIndex)
		if !ok {
			return fmt.Errorf("backchannel_logout: the store cannot find sessions by sub_key")
		}
		h.sso.isubs, h.sso.isubPath = isubs, strings.Split(b.SubKey, ".")
	} else if b.SidKey == "" && h.index == nil {
		return fmt.Errorf("backchannel_logout: the store cannot find sessions by subject")
	}
	v, err := backchannel.New(h.backchannelConfig(replay))
	if err != nil {
		return fmt.Errorf("backchannel_logout: %v", err)
	}
	h.sso.verifier = v
	return nil
}

// ownSubKey reports whether backchannel_logout's sub_key names a path
// other than the subject's, which the store then indexes as
// Record.IdPSub.
func (h *Handler) ownSubKey() bool {
	b := h.BackchannelLogout
	return b != nil && b.SubKey != "" && b.SubKey != h.Subject
}

// sidOf is the IdP session id in data (the value at sid_key), "" without
// one or without sid_key.
func (h *Handler) sidOf(data json.RawMessage) string { return indexedValue(data, h.sso.sidPath) }

// idpSubOf is the IdP subject in data (the value at a sub_key other than
// the subject path), "" without one or without such a sub_key.
func (h *Handler) idpSubOf(data json.RawMessage) string { return indexedValue(data, h.sso.isubPath) }

// indexedValue is the value at path in data, spelled as
// store.CanonicalSubject spells it, "" without one or without a path. A
// value that cannot be a subject (an object, an array) counts as none.
func indexedValue(data json.RawMessage, path []string) string {
	if path == nil {
		return ""
	}
	v, ok := protocol.Lookup(data, path)
	if !ok {
		return ""
	}
	s, err := store.CanonicalSubject(v)
	if err != nil {
		return ""
	}
	return s
}

// device fills in what a new session records of the request that
// creates it: the User-Agent (cut) and the coarse client address.
func device(r *http.Request, rec *store.Record) {
	rec.UserAgent = store.CutUserAgent(r.UserAgent())
	rec.Addr = ""
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		if a, err := netip.ParseAddr(ip); err == nil {
			rec.Addr = store.CoarseAddr(a)
		}
	}
}

// limitSubject ends the least recently seen sessions of subject beyond
// max_sessions_per_subject, after a write that gave the subject a
// session. The count goes to the request's log line and a metric. A
// failure is logged: the write itself stands.
func (st *state) limitSubject(ctx context.Context, subject string) {
	h := st.h
	if h.sso.limiter == nil || subject == "" {
		return
	}
	n, err := h.sso.limiter.LimitSubject(ctx, subject, h.MaxSessionsPerSubject, st.now)
	if err != nil {
		h.logger.Warn("could not apply max_sessions_per_subject", zap.String("session", st.handle()), zap.Error(err))
		return
	}
	if n == 0 {
		return
	}
	h.metrics.limitEnded(n)
	h.logger.Info("ended the least recently seen sessions of a subject over max_sessions_per_subject",
		zap.String("session", st.handle()), zap.Int("ended_by_limit", n))
	if extra, ok := st.req.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Set(zap.Int("ended_by_limit", n))
	}
}
