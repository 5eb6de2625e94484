package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("session", parseSessionCaddyfile)
	// Load the session early: after rewrites and try_files (so matchers see
	// the final path) and before authentication, request_header and the
	// handlers that answer, so all of them can use its placeholders.
	httpcaddyfile.RegisterDirectiveOrder("session", httpcaddyfile.Before, "basicauth")
	httpcaddyfile.RegisterHandlerDirective("require_session", parseRequireCaddyfile)
	// Directly after session ("basicauth" is a deprecated alias that sits
	// between them and is never used with it).
	httpcaddyfile.RegisterDirectiveOrder("require_session", httpcaddyfile.Before, "basic_auth")
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
)

// Handler is the session gateway. It loads the session named by the signed
// cookie, hands its data to the rest of the route in a request header, and
// applies the changes the upstream sends back in response headers.
//
// The protocol is described in docs/protocol.md.
type Handler struct {
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
	// writes to the store to extend the idle expiry. Default: 1m, and
	// never more than half the idle timeout.
	TouchInterval caddy.Duration `json:"touch_interval,omitempty"`

	// Cookie sets the session cookie's attributes.
	Cookie *CookieConfig `json:"cookie,omitempty"`

	// HeaderPrefix names the protocol headers. Default: X-Session.
	HeaderPrefix string `json:"header_prefix,omitempty"`

	// MaxUpdateSize caps, in bytes, each update or patch header from the
	// upstream and the encoded session. Default: 8192.
	MaxUpdateSize int `json:"max_update_size,omitempty"`

	// Subject is a dotted path into the session data (e.g. "user.id")
	// whose value becomes {http.auth.user.id}, so access logs show who
	// made each request.
	Subject string `json:"subject,omitempty"`

	store    store.Store
	signer   *cookie.Signer
	attrs    cookie.Attributes
	hdr      headerNames
	idle     time.Duration
	lifetime time.Duration
	touch    time.Duration
	maxSize  int
	subject  []string
	logger   *zap.Logger

	metrics         *sessionMetrics // ops: prebuilt counters (metrics.go)
	unregisterStore func()          // ops: undoes registerStore, in Cleanup
}

// CookieConfig holds the session cookie's attributes. HttpOnly is always
// set.
type CookieConfig struct {
	// Name of the cookie. Default: session.
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
	// MaxAge caps how long browsers keep the cookie. Default: until the
	// session's lifetime ends. Negative: a browser-session cookie, made
	// persistent only when the upstream sends max-age.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// headerNames are the protocol's header names for one prefix.
type headerNames struct {
	prefix, data, meta, update, patch, control string
}

func newHeaderNames(prefix string) headerNames {
	c := http.CanonicalHeaderKey
	return headerNames{
		prefix:  strings.ToLower(strings.ReplaceAll(prefix, "_", "-")),
		data:    c(prefix),
		meta:    c(prefix + protocol.SuffixMeta),
		update:  c(prefix + protocol.SuffixUpdate),
		patch:   c(prefix + protocol.SuffixPatch),
		control: c(prefix + protocol.SuffixControl),
	}
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.session",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets up the handler: store, signing keys and defaults.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.idle = durationOr(h.IdleTimeout, DefaultIdleTimeout)
	h.lifetime = durationOr(h.Lifetime, DefaultLifetime)
	h.touch = durationOr(h.TouchInterval, min(DefaultTouchInterval, h.idle/2))
	h.maxSize = h.MaxUpdateSize
	if h.maxSize == 0 {
		h.maxSize = protocol.DefaultMaxSize
	}
	prefix := h.HeaderPrefix
	if prefix == "" {
		prefix = protocol.DefaultPrefix
	}
	h.hdr = newHeaderNames(prefix)
	if h.Subject != "" {
		h.subject = strings.Split(h.Subject, ".")
	}

	cc := h.Cookie
	if cc == nil {
		cc = &CookieConfig{}
	}
	sameSite, err := cookie.ParseSameSite(cc.SameSite)
	if err != nil {
		return err
	}
	h.attrs = cookie.Attributes{
		Name:     cc.Name,
		Domain:   cc.Domain,
		Path:     cc.Path,
		SameSite: sameSite,
		Secure:   cookie.SecureMode(strings.ToLower(cc.Secure)),
		MaxAge:   time.Duration(cc.MaxAge),
	}
	if h.attrs.Name == "" {
		h.attrs.Name = DefaultCookieName
	}
	if h.attrs.Secure == "" {
		h.attrs.Secure = cookie.SecureAuto
	}

	if err := h.provisionSecrets(ctx); err != nil {
		return err
	}

	if h.StoreRaw == nil {
		h.StoreRaw = json.RawMessage(`{"type":"memory"}`)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading session store: %v", err)
	}
	st, ok := mod.(store.Store)
	if !ok {
		return fmt.Errorf("module %T is not a session store", mod)
	}
	h.store = st
	if _, ok := st.(*MemoryStore); ok {
		h.logger.Info("sessions are kept in memory: they live in this Caddy process only and are lost when it exits; configure `store mongodb` to share them between instances")
	}
	if h.metrics, err = provisionMetrics(ctx); err != nil { // ops
		return fmt.Errorf("session metrics: %v", err) // ops
	} // ops
	h.store, h.unregisterStore = registerStore(st) // ops: instrumented, and visible to the admin API
	return nil
}

func durationOr(d caddy.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

func (h *Handler) provisionSecrets(ctx caddy.Context) error {
	var keys [][]byte
	repl := caddy.NewReplacer()
	for i, s := range h.Secrets {
		s = repl.ReplaceKnown(s, "")
		if s == "" {
			return fmt.Errorf("secret %d is empty (is its environment variable set?)", i+1)
		}
		keys = append(keys, []byte(s))
	}
	if len(keys) == 0 {
		key, created, err := loadOrCreateSecret(ctx)
		if err != nil {
			return fmt.Errorf("no secret configured, and none could be kept in Caddy's storage: %v", err)
		}
		keys = append(keys, key)
		h.logger.Info("no secret configured: signing cookies with a random key kept in Caddy's storage; instances that share that storage share the key",
			zap.String("storage_key", storageSecretKey), zap.Bool("generated", created))
	}
	signer, err := cookie.NewSigner(keys...)
	if err != nil {
		return fmt.Errorf("session secret: %v", err)
	}
	h.signer = signer
	return nil
}

// loadOrCreateSecret returns the signing key kept in Caddy's storage,
// generating it under the storage lock the first time so that instances
// starting together agree on one key.
func loadOrCreateSecret(ctx caddy.Context) ([]byte, bool, error) {
	st := ctx.Storage()
	load := func() ([]byte, error) {
		b, err := st.Load(ctx, storageSecretKey)
		if err == nil && len(b) < cookie.MinSecretLen {
			return nil, fmt.Errorf("stored secret %s is too short", storageSecretKey)
		}
		return b, err
	}
	if b, err := load(); err == nil {
		return b, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := st.Lock(ctx, storageSecretKey); err != nil {
		return nil, false, err
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), storageSecretKey) }()
	if b, err := load(); err == nil {
		return b, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	key := []byte(hex.EncodeToString(raw[:]))
	if err := st.Store(ctx, storageSecretKey, key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if err := h.attrs.Validate(); err != nil {
		return fmt.Errorf("session cookie: %v", err)
	}
	if h.lifetime < h.idle {
		return fmt.Errorf("lifetime (%s) is shorter than idle_timeout (%s)", h.lifetime, h.idle)
	}
	if h.maxSize < 64 {
		return fmt.Errorf("max_update_size %d is too small", h.maxSize)
	}
	if h.touch > h.idle {
		return fmt.Errorf("touch_interval (%s) is longer than idle_timeout (%s)", h.touch, h.idle)
	}
	if strings.Contains(h.Subject, "..") || strings.HasPrefix(h.Subject, ".") || strings.HasSuffix(h.Subject, ".") {
		return fmt.Errorf("subject %q is not a dotted key path", h.Subject)
	}
	return nil
}

// clockSkew is added to the wall clock. It exists so integration tests can
// move time through a real Caddy; it is always zero otherwise.
var clockSkew atomic.Int64

func now() time.Time {
	return time.Now().Add(time.Duration(clockSkew.Load()))
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// One allocation holds the request's session state and the response
	// writer wrapper: this is the per-request path.
	rw := &responseWriter{st: state{h: h, now: now()}}
	st := &rw.st
	h.stripSessionHeaders(r.Header)

	// The cookie is always taken out of the request: the upstream never
	// sees the token, whether or not it is valid.
	count, value := cookie.Take(r.Header, h.attrs.Name)
	st.hadCookie = count > 0
	seen := outcomeNone // ops
	if count > 1 {      // ops
		seen = outcomeAmbiguous // ops
	} // ops
	if count == 1 { // several cookies of our name: ambiguous, so none
		seen = outcomeInvalid // ops
		if token, ok := h.signer.Verify(h.attrs.Name, value); ok {
			seen = outcomeExpired // ops
			key := cookie.Key(token)
			rec, err := h.store.Find(r.Context(), key, st.now)
			switch {
			case err == nil:
				if h.alive(rec, st.now) {
					st.token, st.key, st.rec = token, key, rec
					seen = outcomeValid // ops
				}
			case errors.Is(err, store.ErrNotFound):
			default:
				return h.storeFailed(w.Header(), "load", err)
			}
		}
	}
	h.metrics.request(seen) // ops

	r.Header[h.hdr.data] = []string{string(protocol.AppendObject(make([]byte, 0, 256), st.data()))}
	r.Header[h.hdr.meta] = []string{st.meta()}

	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Map(st.placeholder)
	st.setSubject(repl)

	r = r.WithContext(context.WithValue(r.Context(), stateCtxKey{}, st))
	st.req = r
	rw.rww.ResponseWriter = w
	rw.ResponseWriterWrapper = &rw.rww
	rw.repl = repl
	err := next.ServeHTTP(rw, r)
	if !rw.wroteHeader {
		if err != nil {
			// The route failed before answering: whatever session headers
			// an upstream left in the map must not reach the error page.
			h.stripSessionHeaders(w.Header())
			return err
		}
		rw.WriteHeader(http.StatusOK)
	}
	if rw.failure != nil {
		return rw.failure
	}
	return err
}

// alive enforces the idle timeout and the absolute lifetime as configured
// now, on top of the expiry the store filtered on: a shortened timeout
// applies at once to existing sessions.
func (h *Handler) alive(rec *store.Record, now time.Time) bool {
	return now.Before(rec.Created.Add(h.lifetime)) && now.Before(rec.Updated.Add(h.idleFor(rec)))
}

func (h *Handler) idleFor(rec *store.Record) time.Duration {
	if rec != nil && rec.MaxAge > 0 {
		return rec.MaxAge
	}
	return h.idle
}

// expiry is when a session created at created, with its own max age,
// expires if used at now: the idle timeout, capped by the lifetime.
func (h *Handler) expiry(created time.Time, idle time.Duration, now time.Time) time.Time {
	exp, deadline := now.Add(idle), created.Add(h.lifetime)
	if deadline.Before(exp) {
		return deadline
	}
	return exp
}

// storeFailed answers a request whose session could not be loaded or saved
// because the store failed: 503 with Retry-After when the store is
// unreachable, 500 otherwise. It fails closed: no request goes on without
// the session it asked for.
func (h *Handler) storeFailed(hdr http.Header, op string, err error) error {
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusServiceUnavailable
		h.logger.Error("session store unavailable", zap.String("op", op), zap.Error(err))
	} else {
		h.logger.Error("session store failed", zap.String("op", op), zap.Error(err))
	}
	clear(hdr) // nothing of an upstream's answer may go out with the error
	if status == http.StatusServiceUnavailable {
		hdr.Set("Retry-After", "5")
	}
	return caddyhttp.Error(status, fmt.Errorf("session store: %s: %w", op, err))
}

// stripSessionHeaders removes every header whose name starts with the
// prefix, in any letter case and with '_' for '-': PHP-FPM, CGI and WSGI
// fold both spellings into the same variable, so a client must not be
// able to slip one past under the other.
func (h *Handler) stripSessionHeaders(hdr http.Header) {
	for name := range hdr {
		if hasPrefixFold(name, h.hdr.prefix) {
			delete(hdr, name)
		}
	}
}

// hasPrefixFold reports whether name starts with prefix (lower case, '-'
// separators) ignoring case and treating '_' as '-'.
func hasPrefixFold(name, prefix string) bool {
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

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.ResponseWriter         = (*responseWriter)(nil)
)
