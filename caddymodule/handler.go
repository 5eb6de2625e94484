package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/adopt"
	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterDirective("session", parseSessionCaddyfile)
	httpcaddyfile.RegisterHandlerDirective("require_session", parseRequireCaddyfile)
	// Load the session early: after rewrites and try_files (so matchers see
	// the final path) and before authentication, request_header and the
	// handlers that answer, so all of them can use its placeholders; then
	// require_session, which reads it. Caddy orders a plugin's directive
	// only against standard ones, so the two go before basic_auth in this
	// order (testdata/adapt/order.txt checks it).
	for _, dir := range []string{"session", "require_session"} {
		httpcaddyfile.RegisterDirectiveOrder(dir, httpcaddyfile.Before, "basic_auth")
	}
}

// Defaults, documented in docs/caddyfile.md.
const (
	DefaultIdleTimeout   = time.Hour
	DefaultLifetime      = 24 * time.Hour
	DefaultTouchInterval = time.Minute
	DefaultCookieName    = "session"
	// storageSecretKey is where a generated signing key is kept in Caddy's
	// storage, next to certificates, so instances sharing storage share it.
	storageSecretKey = "caddy_session/secret"
	// maxHeaderLine bounds max_update_size: no common server takes a
	// longer header line.
	maxHeaderLine = 1 << 20
)

// Handler is the session gateway. It loads the session named by the signed
// cookie, hands its data to the rest of the route in a request header, and
// applies the changes the upstream sends back in response headers.
//
// The protocol is described in docs/protocol.md.
type Handler struct {
	// MatcherSetsRaw limits where sessions are loaded and saved. The
	// protocol headers and the session cookie are stripped from every
	// request the handler sees, matched or not, so the directive's matcher
	// lives here instead of on the route.
	MatcherSetsRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`

	// Store keeps sessions. Default: the in-process memory store.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.session.stores inline_key=type"`

	// Secrets sign the cookie. The first signs; all verify, so a key can
	// be rotated by putting a new one first. Each must be at least 32
	// bytes; {env.X} placeholders are resolved. Default: a random key
	// generated once and kept in Caddy's storage.
	Secrets []string `json:"secrets,omitempty"`

	// IdleTimeout ends a session not used for this long. Default: 1h.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// Lifetime ends a session this long after it was created, however
	// active it is. Default: 24h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`

	// TouchInterval is how often, at most, a request that changes nothing
	// writes to the store to extend the idle expiry. Default: 1m. It must
	// be at most half the idle timeout, and it is capped at half of each
	// session's own max-age.
	TouchInterval caddy.Duration `json:"touch_interval,omitempty"`

	// Cookie sets the session cookie's attributes.
	Cookie *CookieConfig `json:"cookie,omitempty"`

	// HeaderPrefix names the protocol headers. Default: X-Session.
	HeaderPrefix string `json:"header_prefix,omitempty"`

	// MaxUpdateSize caps, in bytes, every protocol header line: the name,
	// ": " and the value, for the X-Session the upstream is given and for
	// each update or patch it sends. Default: 8000, which fits Apache's
	// default 8190-byte limit with margin.
	MaxUpdateSize int `json:"max_update_size,omitempty"`

	// Subject is a dotted path into the session data (e.g. "user.id")
	// whose value becomes {http.auth.user.id}, so access logs show who
	// made each request. Stores that index it can end every session of
	// a subject (revoke-others, revoke-all, the admin API).
	Subject string `json:"subject,omitempty"`

	// Read lists the key paths (dotted, e.g. "user.name") the upstream is
	// given in X-Session, with the objects that hold them; "none" alone
	// gives it {}. Default: all the data. Paths name object keys: an
	// array is given whole, and a path into one is a config error.
	// Placeholders, require_session and subject still see all the data.
	// See docs/caddyfile.md#one-gateway-several-apps.
	Read []string `json:"read,omitempty"`

	// Write lists the key paths the upstream may change with
	// X-Session-Update and X-Session-Patch; "none" alone allows no change.
	// An update replaces the upstream's view (what read gave it), not the
	// session. Any change outside the list is refused with 502 and the
	// session left as it was. Default: every path. Adoption (adopt) is
	// the gateway's act and is not limited by it.
	Write []string `json:"write,omitempty"`

	// Control lists the X-Session-Control directives the upstream may
	// send: regenerate, destroy, max-age, revoke-others, revoke-all, or
	// "none" alone. A destroy in any spelling (max-age=0, an update of
	// null) needs destroy. Any other directive is refused with 502.
	// Default: every directive.
	Control []string `json:"control,omitempty"`

	// CrossOrigin configures the protection against cross-origin
	// requests that carry the session cookie. On by default.
	CrossOrigin *CrossOriginConfig `json:"cross_origin,omitempty"`

	// Adopt lists legacy session sources (koa-session, express-session):
	// a request without a live gateway session but with a valid legacy
	// session cookie gets a gateway session with the same data, once. See
	// docs/migrating.md.
	Adopt []adopt.Config `json:"adopt,omitempty"`

	// BackchannelLogout makes the handler answer OpenID Connect
	// Back-Channel Logout requests (POST from the IdP) on its path, before
	// any upstream. See docs/operations.md.
	BackchannelLogout *BackchannelConfig `json:"backchannel_logout,omitempty"`

	// Devices is a path where the handler answers, for the current
	// session's subject, GET (the list of its sessions) and DELETE
	// <path>/<id> (end one). Needs Subject.
	Devices string `json:"devices,omitempty"`

	// MaxSessionsPerSubject bounds the live sessions of one subject: when
	// a write gives a subject more, the least recently seen others are
	// ended. 0, the default, is no limit. Needs Subject.
	MaxSessionsPerSubject int `json:"max_sessions_per_subject,omitempty"`

	// Assertion signs every request the matcher selects: the upstream
	// gets <header_prefix>-Assertion, a JWT binding the X-Session value
	// sent, which it verifies with the keys session_jwks publishes. Off
	// by default. See docs/protocol.md, "Assertion".
	Assertion *AssertionConfig `json:"assertion,omitempty"`

	matchers caddyhttp.MatcherSets
	store    store.Store
	index    store.SubjectIndex // nil when the store cannot find by subject
	signer   *cookie.Signer
	attrs    cookie.Attributes
	hdr      headerNames
	policy   policy
	maxLine  int
	subject  []string
	scope    protocol.Scope // read, write and control, parsed
	views    *viewCache     // what was sent, per session version: read's projection and the assertion; nil without either
	csrf     *http.CrossOriginProtection
	sources  []*adopt.Source
	logger   *zap.Logger
	run      *runState
	sso      ssoState
	asserter *asserter // nil without assertion

	metrics         *sessionMetrics // prebuilt counters (metrics.go)
	unregisterStore func()          // undoes registerStore (livestores.go)
}

// CookieConfig holds the session cookie's attributes. HttpOnly is always
// set.
type CookieConfig struct {
	// Name of the cookie. Default: session. On HTTPS sites,
	// "__Host-session" (with secure always, path /, no domain) makes the
	// browser refuse the cookie from any other host.
	Name string `json:"name,omitempty"`
	// Domain attribute. Default: none (host-only cookie).
	Domain string `json:"domain,omitempty"`
	// Path attribute. Default: /.
	Path string `json:"path,omitempty"`
	// SameSite: lax (default), strict or none.
	SameSite string `json:"same_site,omitempty"`
	// Secure: auto (default: when the request came over TLS), always or
	// never.
	Secure string `json:"secure,omitempty"`
	// MaxAge caps how long browsers keep the cookie; the cookie is then
	// re-sent whenever the session is written, so an active session keeps
	// it. Default: until the session's lifetime ends. -1 (the Caddyfile's
	// `session`): a browser-session cookie, made persistent only when the
	// upstream sends max-age. Any other negative value is refused.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// runState is what a handler changes while it serves.
type runState struct {
	// warned is set once a dropped response trailer was logged.
	warned atomic.Bool
	// stop ends the adopted legacy sessions' sweep; nil without one.
	stop chan struct{}
}

// clock is the handlers' clock. Only tests replace it (export_test.go,
// before any handler runs), to move time through a real Caddy; no config
// reaches it.
var clock = time.Now

// now reads the handler's clock.
func (h *Handler) now() time.Time { return clock() }

// headerNames are the protocol's header names for one prefix.
type headerNames struct {
	prefix, data, meta, update, patch, control, assertion string
}

func newHeaderNames(prefix string) headerNames {
	c := http.CanonicalHeaderKey
	return headerNames{
		prefix:    strings.ToLower(strings.ReplaceAll(prefix, "_", "-")),
		data:      c(prefix),
		meta:      c(prefix + protocol.SuffixMeta),
		update:    c(prefix + protocol.SuffixUpdate),
		patch:     c(prefix + protocol.SuffixPatch),
		control:   c(prefix + protocol.SuffixControl),
		assertion: c(prefix + assertionSuffix),
	}
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.session",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the config, works out the defaults and sets up the
// matchers, the store and the signing keys. Caddy calls Provision before
// Validate, so the checks run first: a bad config opens nothing (no store
// client, no goroutine, no storage access).
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.check(); err != nil {
		return err
	}
	h.logger = ctx.Logger()
	h.run = new(runState)
	h.provisionDefaults()
	if err := h.provisionScope(); err != nil {
		return err
	}
	if h.MatcherSetsRaw != nil {
		mods, err := ctx.LoadModule(h, "MatcherSetsRaw")
		if err != nil {
			return fmt.Errorf("loading matchers: %v", err)
		}
		if err := h.matchers.FromInterface(mods); err != nil {
			return err
		}
	}
	// The assertion's keys are read and checked before anything is
	// opened: a bad key is a config error, not a half-started handler.
	keys, err := h.Assertion.check()
	if err != nil {
		return err
	}
	if err := h.provisionSecrets(ctx); err != nil {
		return err
	}
	if err := h.provisionAssertion(ctx, keys); err != nil {
		return err
	}
	if err := h.provisionStore(ctx); err != nil {
		return err
	}
	return nil
}

// provisionDefaults fills in every default in one place.
func (h *Handler) provisionDefaults() {
	h.policy = h.configPolicy()
	h.maxLine = h.MaxUpdateSize
	if h.maxLine == 0 {
		h.maxLine = protocol.DefaultMaxLine
	}
	h.hdr = h.configHeaderNames()
	if h.Subject != "" {
		h.subject, _ = protocol.ParseLookupPath(h.Subject) // checked in Validate
	}
	h.attrs = h.configAttributes()
	h.csrf = h.CrossOrigin.protection()
}

// cookieConfig is the cookie block, empty when there is none.
func (h *Handler) cookieConfig() *CookieConfig {
	if h.Cookie == nil {
		return &CookieConfig{}
	}
	return h.Cookie
}

// configPolicy is the expiry policy the config asks for, defaults filled in.
func (h *Handler) configPolicy() policy {
	return policy{
		idle:         durationOr(h.IdleTimeout, DefaultIdleTimeout),
		lifetime:     durationOr(h.Lifetime, DefaultLifetime),
		touch:        time.Duration(h.TouchInterval),
		cookieMaxAge: time.Duration(h.cookieConfig().MaxAge),
	}
}

// configHeaderNames are the protocol's header names for the config's
// prefix.
func (h *Handler) configHeaderNames() headerNames {
	return newHeaderNames(stringOr(h.HeaderPrefix, protocol.DefaultPrefix))
}

// configAttributes are the cookie attributes the config asks for,
// defaults filled in. check refuses a bad same_site or secure first.
func (h *Handler) configAttributes() cookie.Attributes {
	cc := h.cookieConfig()
	sameSite, _ := cookie.ParseSameSite(cc.SameSite)
	return cookie.Attributes{
		Name:     stringOr(cc.Name, DefaultCookieName),
		Domain:   cc.Domain,
		Path:     cc.Path,
		SameSite: sameSite,
		Secure:   cookie.SecureMode(stringOr(strings.ToLower(cc.Secure), string(cookie.SecureAuto))),
		MaxAge:   time.Duration(cc.MaxAge),
	}
}

// defaultStore is the store of a handler that names none: the memory
// store module (package memorystore, which registers it), loaded by name
// so this package depends on no store module.
const defaultStore = `{"type":"memory"}`

func (h *Handler) provisionStore(ctx caddy.Context) error {
	if h.StoreRaw == nil {
		h.StoreRaw = json.RawMessage(defaultStore)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading session store: %v", err)
	}
	sessions, ok := mod.(store.Store)
	if !ok {
		return fmt.Errorf("module %T is not a session store", mod)
	}
	if describe(sessions).inProcess {
		h.logger.Info("sessions are kept in memory: they live in this Caddy process only and are lost when it exits; configure `store mongodb` to share them between instances")
	}
	if h.metrics, err = provisionMetrics(ctx); err != nil {
		return fmt.Errorf("session metrics: %v", err)
	}
	// From here on every store call is timed (the memory store's are not:
	// see storeDescription.inProcess), and the admin API sees the store.
	h.store, h.unregisterStore = registerStore(sessions)
	if si, ok := h.store.(store.SubjectIndex); ok {
		h.index = si
	}
	if err := h.provisionSSO(ctx, sessions); err != nil {
		return err
	}
	return h.provisionAdopt(mod)
}

// Cleanup unregisters the handler from the admin API and stops the
// adopted legacy sessions' sweep.
func (h *Handler) Cleanup() error {
	if h.asserter != nil {
		unregisterKeys(h.asserter)
	}
	if h.unregisterStore != nil {
		h.unregisterStore()
	}
	if h.run != nil && h.run.stop != nil {
		close(h.run.stop)
		h.run.stop = nil
	}
	return nil
}

func durationOr(d caddy.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

func stringOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// Validate checks the configuration, JSON or Caddyfile alike: the same
// checks Provision runs first.
func (h *Handler) Validate() error {
	return h.check()
}

// check runs every check that can fail on the raw config, without
// opening anything, so Provision can run it before it opens anything and
// Validate can run it alone (caddy validate, caddy adapt --validate).
func (h *Handler) check() error {
	if h.Cookie != nil {
		if _, err := cookie.ParseSameSite(h.Cookie.SameSite); err != nil {
			return fmt.Errorf("session cookie: %v", err)
		}
		switch strings.ToLower(h.Cookie.Secure) {
		case "", "auto", "always", "never":
		default:
			return fmt.Errorf("session cookie: secure %q: want auto, always or never", h.Cookie.Secure)
		}
	}
	attrs := h.configAttributes()
	if err := attrs.Validate(); err != nil {
		return fmt.Errorf("session cookie: %v", err)
	}
	if err := h.checkDurations(); err != nil {
		return err
	}
	if h.HeaderPrefix != "" && !validHeaderPrefix(h.HeaderPrefix) {
		return fmt.Errorf("header_prefix %q: want a header name of at least 3 characters such as X-Session, with no standard header under it", h.HeaderPrefix)
	}
	if least := len(h.configHeaderNames().data) + 2 + 64; h.MaxUpdateSize != 0 && (h.MaxUpdateSize < least || h.MaxUpdateSize > maxHeaderLine) {
		return fmt.Errorf("max_update_size %d: want between %d bytes and 1MiB", h.MaxUpdateSize, least)
	}
	if err := h.checkAdopt(); err != nil {
		return err
	}
	if err := checkSecrets(h.Secrets); err != nil {
		return err
	}
	if h.Subject != "" {
		if _, err := protocol.ParseLookupPath(h.Subject); err != nil {
			return fmt.Errorf("subject: %v", err)
		}
	}
	if _, err := h.parseScope(); err != nil {
		return err
	}
	if err := h.validateSSO(); err != nil {
		return err
	}
	if _, err := h.Assertion.check(); err != nil {
		return err
	}
	return h.CrossOrigin.validate()
}

// browserSessionCookie is CookieConfig.MaxAge for a cookie without
// Max-Age: the JSON spelling of the Caddyfile's `cookie_max_age session`.
const browserSessionCookie = -1

// checkDurations checks the expiry settings against each other, in the
// order they are listed, so the error reported is always the same.
func (h *Handler) checkDurations() error {
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"idle_timeout", h.IdleTimeout}, {"lifetime", h.Lifetime}, {"touch_interval", h.TouchInterval}} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative", d.name)
		}
	}
	if h.Cookie != nil && h.Cookie.MaxAge < 0 && h.Cookie.MaxAge != browserSessionCookie {
		return fmt.Errorf("cookie max_age (%s) is negative: for a browser-session cookie write session (JSON: -1)", time.Duration(h.Cookie.MaxAge))
	}
	p := h.configPolicy()
	if p.lifetime < p.idle {
		return fmt.Errorf("lifetime (%s) is shorter than idle_timeout (%s)", p.lifetime, p.idle)
	}
	if p.touch > p.idle/2 {
		return fmt.Errorf("touch_interval (%s) is more than half of idle_timeout (%s): read-only use would not keep sessions alive", p.touch, p.idle)
	}
	if p.cookieMaxAge > 0 && p.cookieMaxAge < 2*p.touchInterval(nil) {
		return fmt.Errorf("cookie max_age (%s) is less than twice the touch interval (%s): an active session could lose its cookie", p.cookieMaxAge, p.touchInterval(nil))
	}
	return nil
}

// validHeaderPrefix accepts a token that cannot cover a standard header:
// stripping "C" would strip Cookie and Content-Type.
func validHeaderPrefix(s string) bool {
	if len(s) < 3 || !validHeaderName(s) {
		return false
	}
	lower := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	for _, std := range standardHeaders {
		if strings.HasPrefix(std, lower) {
			return false
		}
	}
	return true
}

// validHeaderName accepts letters, digits, '-' and '_'.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// standardHeaders are names a prefix must never cover.
var standardHeaders = []string{
	"accept", "authorization", "cache-control", "connection", "content-length", "content-type",
	"cookie", "date", "etag", "expect", "forwarded", "host", "if-match", "if-modified-since",
	"location", "origin", "referer", "sec-fetch-site", "server", "set-cookie", "te", "trailer",
	"transfer-encoding", "upgrade", "user-agent", "vary", "via", "www-authenticate", "x-forwarded-for",
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
