// Package verify checks the signed assertion that caddy-session's gateway
// sends with every request it selects (X-Session-Assertion by default), so
// an upstream can refuse requests that did not come through the gateway,
// and data in X-Session that the gateway did not send.
//
// It uses the standard library only, as a module of its own: importing it
// pulls neither Caddy nor a MongoDB driver into an app.
//
//	v, err := verify.New(verify.Config{
//		JWKSURL:  "https://gateway.example/.well-known/caddy-session/jwks.json",
//		Issuer:   "caddy-session",
//		Audience: "https://app.example",
//	})
//	...
//	http.ListenAndServe(":8080", v.Handler(app))
//
// A request passes when its assertion is a compact JWS signed with EdDSA
// by an Ed25519 key or with ES256 by a P-256 key of the gateway's JWKS
// (the algorithm pinned to the key type: never "none", never HMAC), its
// iss and aud are the configured ones, it is within its iat..exp window
// (with a small leeway), and its sdh is the SHA-256 of the X-Session
// header the request carries.
package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"time"
)

// Refusal reasons. Every error Verify returns wraps one of them.
var (
	ErrMissing        = errors.New("verify: no assertion")
	ErrMalformed      = errors.New("verify: malformed assertion")
	ErrAlgorithm      = errors.New("verify: algorithm not allowed for the key")
	ErrUnknownKey     = errors.New("verify: unknown key id")
	ErrSignature      = errors.New("verify: bad signature")
	ErrExpired        = errors.New("verify: assertion expired")
	ErrIssuedInFuture = errors.New("verify: assertion issued in the future")
	ErrIssuer         = errors.New("verify: wrong issuer")
	ErrAudience       = errors.New("verify: wrong audience")
	ErrDataHash       = errors.New("verify: X-Session does not match the assertion's sdh")
	ErrKeySet         = errors.New("verify: key set unavailable")
)

// Defaults for Config.
const (
	DefaultIssuer          = "caddy-session"
	DefaultHeaderPrefix    = "X-Session"
	DefaultLeeway          = 10 * time.Second
	DefaultRefetchInterval = 30 * time.Second
	DefaultKeySetMaxAge    = time.Hour
)

// Config says where the keys are and what an assertion must say.
type Config struct {
	// JWKSURL is where the gateway publishes its keys (the session_jwks
	// directive). Either JWKSURL or JWKS is required.
	JWKSURL string
	// JWKS is a JWK Set given once, instead of fetching one.
	JWKS []byte
	// Issuer is the expected iss. Default "caddy-session".
	Issuer string
	// Audience is the expected aud: the gateway's configured audience,
	// or by default the scheme://host the clients use. Required.
	Audience string
	// HeaderPrefix names the headers: X-Session carries the data and
	// X-Session-Assertion the assertion. Default "X-Session".
	HeaderPrefix string
	// Leeway is the clock difference allowed on exp and iat. Default 10s.
	Leeway time.Duration
	// RefetchInterval is the least time between two fetches of the JWKS
	// (a fetch happens on an unknown kid). Default 30s.
	RefetchInterval time.Duration
	// KeySetMaxAge is how long fetched keys are used before the set is
	// fetched again. Default 1h.
	KeySetMaxAge time.Duration
	// Client fetches the JWKS. Default: a client with a 10s timeout.
	Client *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Verifier checks assertions. It is safe for concurrent use.
type Verifier struct {
	issuer, audience      string
	dataHeader, assertHdr string
	leeway                time.Duration
	keys                  *keySet
	now                   func() time.Time
}

// New checks the configuration and, for a given JWKS, parses it.
func New(c Config) (*Verifier, error) {
	if c.Audience == "" {
		return nil, errors.New("verify: Audience is required")
	}
	if (c.JWKSURL == "") == (c.JWKS == nil) {
		return nil, errors.New("verify: give exactly one of JWKSURL and JWKS")
	}
	prefix := or(c.HeaderPrefix, DefaultHeaderPrefix)
	v := &Verifier{
		issuer:     or(c.Issuer, DefaultIssuer),
		audience:   c.Audience,
		dataHeader: http.CanonicalHeaderKey(prefix),
		assertHdr:  http.CanonicalHeaderKey(prefix + "-Assertion"),
		leeway:     orDuration(c.Leeway, DefaultLeeway),
		now:        c.Now,
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.keys = &keySet{
		url:         c.JWKSURL,
		client:      c.Client,
		minInterval: orDuration(c.RefetchInterval, DefaultRefetchInterval),
		maxAge:      orDuration(c.KeySetMaxAge, DefaultKeySetMaxAge),
		now:         v.now,
	}
	if v.keys.client == nil {
		v.keys.client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.JWKS != nil {
		keys, err := parseKeySet(c.JWKS)
		if err != nil {
			return nil, err
		}
		v.keys.keys = keys
	}
	return v, nil
}

// Verify checks an assertion against the X-Session value sent with it
// (the empty string when the request had no X-Session header).
func (v *Verifier) Verify(ctx context.Context, assertion, data string) (*Claims, error) {
	if assertion == "" {
		return nil, ErrMissing
	}
	t, err := Parse(assertion)
	if err != nil {
		return nil, err
	}
	if t.Header.Alg != AlgEdDSA && t.Header.Alg != AlgES256 {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, t.Header.Alg)
	}
	pk, err := v.keys.key(ctx, t.Header.Kid)
	if err != nil {
		return nil, err
	}
	if pk.alg != t.Header.Alg {
		return nil, fmt.Errorf("%w: %s with a %s key", ErrAlgorithm, t.Header.Alg, pk.alg)
	}
	if !pk.verify(t.signed, t.signature) {
		return nil, ErrSignature
	}
	return &t.Claims, v.checkClaims(&t.Claims, data)
}

func (v *Verifier) checkClaims(c *Claims, data string) error {
	now := v.now().Unix()
	leeway := int64(v.leeway / time.Second)
	switch {
	case c.Issuer != v.issuer:
		return fmt.Errorf("%w: %q", ErrIssuer, c.Issuer)
	case !slices.Contains(c.Audience, v.audience):
		return fmt.Errorf("%w: %q", ErrAudience, []string(c.Audience))
	case now > c.Expires+leeway:
		return fmt.Errorf("%w: %ds ago", ErrExpired, now-c.Expires)
	case c.IssuedAt > now+leeway:
		return fmt.Errorf("%w: in %ds", ErrIssuedInFuture, c.IssuedAt-now)
	}
	want := DataHash(data)
	if subtle.ConstantTimeCompare([]byte(want), []byte(c.DataHash)) != 1 {
		return ErrDataHash
	}
	return nil
}

// VerifyRequest checks the assertion header of r against its X-Session
// header. A request with several copies of either header is refused.
func (v *Verifier) VerifyRequest(r *http.Request) (*Claims, error) {
	assertions := r.Header.Values(v.assertHdr)
	data := r.Header.Values(v.dataHeader)
	switch {
	case len(assertions) == 0:
		return nil, ErrMissing
	case len(assertions) > 1:
		return nil, fmt.Errorf("%w: %d assertion headers", ErrMalformed, len(assertions))
	case len(data) > 1:
		return nil, fmt.Errorf("%w: %d %s headers", ErrDataHash, len(data), v.dataHeader)
	}
	value := ""
	if len(data) == 1 {
		value = data[0]
	}
	return v.Verify(r.Context(), assertions[0], value)
}

type claimsKey struct{}

// Handler refuses with 401 every request whose assertion does not verify,
// and hands the others to next with the claims in their context
// (FromContext).
func (v *Verifier) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.VerifyRequest(r)
		if err != nil {
			http.Error(w, "401 unauthorized: the request did not come through the gateway", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

// FromContext returns the claims Handler verified.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// DataHash is the sdh of an X-Session value: base64url, unpadded, of its
// SHA-256.
func DataHash(data string) string {
	sum := sha256.Sum256([]byte(data))
	return b64.EncodeToString(sum[:])
}

func (pk publicKey) verify(signed string, sig []byte) bool {
	switch pk.alg {
	case AlgEdDSA:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(pk.ed, []byte(signed), sig)
	case AlgES256:
		if len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256([]byte(signed))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pk.ec, digest[:], r, s)
	}
	return false
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
