package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/internal/assertion"
)

// AssertionConfig turns on the signed assertion: every request the
// handler's matcher selects carries <header_prefix>-Assertion, a JWT the
// upstream can verify with the keys that session_jwks publishes, binding
// the exact X-Session value sent (docs/protocol.md, "Assertion").
type AssertionConfig struct {
	// Key is the signing key: a PEM file, or a PEM block given through a
	// placeholder such as {env.SESSION_ASSERTION_KEY}. An Ed25519 key
	// signs with EdDSA, a P-256 key with ES256 (PKCS #8, or SEC 1 for
	// P-256). Default: an Ed25519 key generated once and kept in Caddy's
	// storage, like the default secret: instances share it only when
	// they share the storage.
	Key string `json:"key,omitempty"`

	// Previous are PEM files (or blocks) of public keys published in the
	// JWK Set without signing with them: the old key for one ttl after a
	// rotation, or the next key before any instance signs with it.
	Previous []string `json:"previous,omitempty"`

	// Issuer is the iss claim. Default: caddy-session.
	Issuer string `json:"issuer,omitempty"`

	// Audience is the aud claim. Default: the request's scheme://host, as
	// the gateway received it.
	Audience string `json:"audience,omitempty"`

	// TTL is how long an assertion is valid (exp - iat). Default: 60s;
	// at most 5m. An assertion is reused until half of it has passed.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// Assertion defaults and bounds, documented in docs/caddyfile.md.
const (
	DefaultAssertionIssuer = "caddy-session"
	DefaultAssertionTTL    = time.Minute
	maxAssertionTTL        = 5 * time.Minute
	minAssertionTTL        = 2 * time.Second
	// storageAssertionKey is where the generated signing key is kept in
	// Caddy's storage, next to the generated cookie secret.
	storageAssertionKey = "caddy_session/assertion_key.pem"
	// assertionSuffix follows the header prefix: X-Session-Assertion.
	assertionSuffix = "-Assertion"
)

// asserter signs one handler's assertions and remembers them.
type asserter struct {
	signer   *assertion.Signer
	keys     []assertion.JWK // the signing key's and the previous keys
	issuer   string
	audience string // "" for the request's scheme://host
	ttl      time.Duration
	cache    *viewCache
}

// loadedKeys are the keys an AssertionConfig names, read and parsed.
type loadedKeys struct {
	signer   *assertion.Signer // nil: the default key
	previous []assertion.JWK
}

// load resolves placeholders, then reads and parses the configured keys.
// Every error is a configuration error.
func (c *AssertionConfig) load() (loadedKeys, error) {
	var k loadedKeys
	repl := caddy.NewReplacer()
	if c.Key != "" {
		doc, err := assertion.ReadPEM(repl.ReplaceKnown(c.Key, ""))
		if err != nil {
			return k, fmt.Errorf("assertion key: %v", err)
		}
		if k.signer, err = assertion.ParsePrivateKeyPEM(doc); err != nil {
			return k, fmt.Errorf("assertion key: %v", err)
		}
	}
	for i, p := range c.Previous {
		doc, err := assertion.ReadPEM(repl.ReplaceKnown(p, ""))
		if err != nil {
			return k, fmt.Errorf("assertion previous key %d: %v", i+1, err)
		}
		keys, err := assertion.ParsePublicKeyPEM(doc)
		if err != nil {
			return k, fmt.Errorf("assertion previous key %d: %v", i+1, err)
		}
		k.previous = append(k.previous, keys...)
	}
	return k, nil
}

// check validates the settings and reads and parses the keys, for
// Validate and, before anything is opened, Provision. A nil config
// (no assertion) passes.
func (c *AssertionConfig) check() (loadedKeys, error) {
	if c == nil {
		return loadedKeys{}, nil
	}
	ttl := time.Duration(c.TTL)
	if c.TTL != 0 && (ttl < minAssertionTTL || ttl > maxAssertionTTL) {
		return loadedKeys{}, fmt.Errorf("assertion ttl %s: want between %s and %s", ttl, minAssertionTTL, maxAssertionTTL)
	}
	repl := caddy.NewReplacer()
	if c.Audience != "" && strings.TrimSpace(repl.ReplaceKnown(c.Audience, "")) == "" {
		return loadedKeys{}, fmt.Errorf("assertion audience %q is empty (is its environment variable set?)", c.Audience)
	}
	if c.Issuer != "" && strings.TrimSpace(repl.ReplaceKnown(c.Issuer, "")) == "" {
		return loadedKeys{}, fmt.Errorf("assertion issuer %q is empty (is its environment variable set?)", c.Issuer)
	}
	return c.load()
}

// provisionAssertion sets up the asserter from keys already loaded (and
// checked) by load; without a configured key it loads or creates the
// default key in Caddy's storage, and fails if the storage does.
func (h *Handler) provisionAssertion(ctx caddy.Context, k loadedKeys) error {
	c := h.Assertion
	if c == nil {
		return nil
	}
	if k.signer == nil {
		signer, created, err := loadOrCreateAssertionKey(ctx)
		if err != nil {
			return fmt.Errorf("assertion: no key configured, and none could be kept in Caddy's storage: %v", err)
		}
		k.signer = signer
		h.logger.Info("assertion: no key configured: signing with an Ed25519 key kept in Caddy's storage; instances that do not share that storage have different keys",
			zap.String("storage_key", storageAssertionKey), zap.String("kid", signer.Kid()), zap.Bool("generated", created))
	}
	if h.views == nil { // read set makes it in provisionScope: one cache for both
		h.views = newViewCache()
	}
	repl := caddy.NewReplacer()
	a := &asserter{
		signer:   k.signer,
		keys:     append([]assertion.JWK{k.signer.JWK()}, k.previous...),
		issuer:   stringOr(repl.ReplaceKnown(c.Issuer, ""), DefaultAssertionIssuer),
		audience: repl.ReplaceKnown(c.Audience, ""),
		ttl:      durationOr(c.TTL, DefaultAssertionTTL),
		cache:    h.views,
	}
	h.asserter = a
	registerKeys(a)
	return nil
}

// loadOrCreateAssertionKey returns the signing key kept in Caddy's
// storage, generating it under the storage lock the first time so that
// instances starting together agree on one key.
func loadOrCreateAssertionKey(ctx caddy.Context) (*assertion.Signer, bool, error) {
	st := ctx.Storage()
	load := func() (*assertion.Signer, error) {
		doc, err := st.Load(ctx, storageAssertionKey)
		if err != nil {
			return nil, err
		}
		s, err := assertion.ParsePrivateKeyPEM(doc)
		if err != nil {
			return nil, fmt.Errorf("stored key %s: %v", storageAssertionKey, err)
		}
		return s, nil
	}
	if s, err := load(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, false, err
	}
	if err := st.Lock(ctx, storageAssertionKey); err != nil {
		return nil, false, err
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), storageAssertionKey) }()
	if s, err := load(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, false, err
	}
	s := assertion.GenerateEd25519()
	doc, err := s.PrivateKeyPEM()
	if err != nil {
		return nil, false, err
	}
	if err := st.Store(ctx, storageAssertionKey, doc); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// setAssertion sets the request's assertion header, for the X-Session
// value data.
func (h *Handler) setAssertion(r *http.Request, st *state, data string) error {
	token, err := h.asserter.sign(r, st, data)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing the assertion: %w", err))
	}
	st.setOne(r.Header, h.hdr.assertion, valAssertion, token)
	return nil
}

// sign returns the assertion for a request whose X-Session value is data.
// A signed assertion is reused, for the same session version and
// audience, until half its ttl has passed; a reuse hashes nothing.
func (a *asserter) sign(r *http.Request, st *state, data string) (string, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	i := a.cache.index(st.key, a.audience, scheme, r.Host)
	e := a.cache.get(i, st.key, st.version(), a.audience, scheme, r.Host)
	if e != nil && st.now.UnixNano() < e.refresh {
		return e.token, nil
	}
	aud := a.audience
	if aud == "" {
		aud = scheme + "://" + r.Host
	}
	iat := time.Unix(st.now.Unix(), 0)
	c := assertion.Claims{
		Issuer: a.issuer, Audience: aud, IssuedAt: iat, Expires: iat.Add(a.ttl),
		New: st.rec == nil, DataHash: assertion.DataHash(data),
	}
	if st.rec != nil {
		c.SessionID = st.handle()
		if st.h.subject != nil {
			// A number or boolean subject is stored with its type tag
			// (store.CanonicalSubject): sub is its JSON text, as
			// {http.auth.user.id} shows it.
			c.Subject = strings.TrimPrefix(st.rec.Subject, "\x00")
		}
	}
	token, err := a.signer.Sign(&c)
	if err != nil {
		return "", err
	}
	a.cache.put(i, &viewEntry{
		key: st.key, version: st.version(), aud: aud,
		value: data, sdh: c.DataHash, token: token,
		refresh: st.now.Add(a.ttl / 2).UnixNano(),
	})
	return token, nil
}

// liveKeys are the public keys of every provisioned session handler with
// an assertion, for session_jwks and the admin API. A reload provisions
// the new config's handlers before it cleans up the old ones, so during a
// reload both configs' keys are published.
var liveKeys struct {
	sync.Mutex
	list []*asserter
}

func registerKeys(a *asserter) {
	liveKeys.Lock()
	defer liveKeys.Unlock()
	liveKeys.list = append(liveKeys.list, a)
}

func unregisterKeys(a *asserter) {
	liveKeys.Lock()
	defer liveKeys.Unlock()
	for i, x := range liveKeys.list {
		if x == a {
			liveKeys.list = append(liveKeys.list[:i], liveKeys.list[i+1:]...)
			return
		}
	}
}

// keySet is the JWK Set of the live handlers' keys, each key once.
func keySet() assertion.Set {
	liveKeys.Lock()
	defer liveKeys.Unlock()
	var keys []assertion.JWK
	for _, a := range liveKeys.list {
		keys = append(keys, a.keys...)
	}
	return assertion.NewSet(keys...)
}
