package backchannel

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The key set's cache bounds.
const (
	// DefaultKeysTTL is how long a key set is used when its answer has no
	// Cache-Control max-age.
	DefaultKeysTTL = 10 * time.Minute
	// minKeysTTL and maxKeysTTL clamp the max-age the IdP sends.
	minKeysTTL = time.Minute
	maxKeysTTL = 24 * time.Hour
	// RefetchInterval is the shortest time between two fetches caused by
	// a token naming a key the cached set does not hold, so forged kids
	// cannot make the gateway hammer the IdP.
	RefetchInterval = time.Minute
	// maxDocument bounds the discovery document and the key set.
	maxDocument = 1 << 20
	// minRSABits refuses RSA keys too short to sign with.
	minRSABits = 2048
)

// key is one usable verification key with the one algorithm it is pinned
// to.
type key struct {
	kid string
	alg string
	pub crypto.PublicKey
}

// jwk is the part of a JSON Web Key (RFC 7517, 7518, 8037) this package
// reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseKeys reads a JWK Set and keeps the signature keys this package
// can verify with. Keys it cannot use (encryption keys, other curves, a
// declared alg that does not fit the key) are skipped, not errors: an IdP
// publishes keys for other purposes too.
func parseKeys(body []byte) ([]key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("key set is not JSON: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`key set has no "keys" array`)
	}
	var out []key
	for _, raw := range set.Keys {
		var j jwk
		if json.Unmarshal(raw, &j) != nil {
			continue
		}
		if k, ok := j.key(); ok {
			out = append(out, k)
		}
	}
	return out, nil
}

// key turns j into a verification key pinned to the algorithm its type
// allows: RSA is RS256, EC P-256 is ES256, OKP Ed25519 is EdDSA.
func (j jwk) key() (key, bool) {
	if j.Use != "" && j.Use != "sig" {
		return key{}, false
	}
	var k key
	switch j.Kty {
	case "RSA":
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return key{}, false
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			return key{}, false
		}
		k = key{alg: "RS256", pub: pub}
	case "EC":
		if j.Crv != "P-256" {
			return key{}, false
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return key{}, false
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return key{}, false
		}
		k = key{alg: "ES256", pub: pub}
	case "OKP":
		x, err := b64(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return key{}, false
		}
		k = key{alg: "EdDSA", pub: ed25519.PublicKey(x)}
	default:
		return key{}, false
	}
	if j.Alg != "" && j.Alg != k.alg {
		return key{}, false
	}
	k.kid = j.Kid
	return k, true
}

// b64 decodes base64url without padding, strictly.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// keySource fetches and caches the IdP's keys.
type keySource struct {
	client  *http.Client
	issuer  string
	jwksURI string // configured; empty means discovery

	mu         sync.Mutex
	discovered string // jwks_uri from discovery
	keys       []key
	fresh      time.Time // keys are used until then
	lastFetch  time.Time
	fetchedAny bool
}

// lookup returns the keys a token with kid and alg may be verified with.
// It fetches the set when none is cached or the cached one is stale, and
// once per RefetchInterval when kid is not in the set. An error wraps
// ErrUnreachable when the IdP could not be asked.
func (s *keySource) lookup(ctx context.Context, kid, alg string, now time.Time) ([]key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fetchedAny || !now.Before(s.fresh) {
		if err := s.fetch(ctx, now); err != nil {
			return nil, err
		}
	}
	found := match(s.keys, kid, alg)
	if len(found) == 0 && kid != "" && !has(s.keys, kid) && now.Sub(s.lastFetch) >= RefetchInterval {
		if err := s.fetch(ctx, now); err != nil {
			return nil, err
		}
		found = match(s.keys, kid, alg)
	}
	return found, nil
}

// match returns the keys named kid (any key when kid is empty) pinned to
// alg.
func match(keys []key, kid, alg string) []key {
	var out []key
	for _, k := range keys {
		if (kid == "" || k.kid == kid) && k.alg == alg {
			out = append(out, k)
		}
	}
	return out
}

func has(keys []key, kid string) bool {
	for _, k := range keys {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// fetch reads the key set (discovering its address first if needed) and
// caches it. The caller holds s.mu.
func (s *keySource) fetch(ctx context.Context, now time.Time) error {
	s.lastFetch = now
	uri := s.jwksURI
	if uri == "" {
		uri = s.discovered
	}
	if uri == "" {
		var err error
		if uri, err = s.discover(ctx); err != nil {
			return err
		}
		s.discovered = uri
	}
	body, ttl, err := s.get(ctx, uri)
	if err != nil {
		s.discovered = "" // the IdP may have moved its keys: discover again next time
		return err
	}
	keys, err := parseKeys(body)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, redactURL(uri), err)
	}
	s.keys, s.fresh, s.fetchedAny = keys, now.Add(ttl), true
	return nil
}

// discover reads jwks_uri from the issuer's OpenID Provider metadata.
func (s *keySource) discover(ctx context.Context) (string, error) {
	uri := strings.TrimSuffix(s.issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := s.get(ctx, uri)
	if err != nil {
		return "", err
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", fmt.Errorf("%w: discovery document is not JSON: %w", ErrUnreachable, err)
	}
	if meta.Issuer != s.issuer {
		return "", fmt.Errorf("%w: discovery document names issuer %q, not the configured %q", ErrUnreachable, meta.Issuer, s.issuer)
	}
	if err := CheckURL(meta.JWKSURI); err != nil {
		return "", fmt.Errorf("%w: discovery document's jwks_uri: %w", ErrUnreachable, err)
	}
	return meta.JWKSURI, nil
}

// get fetches uri and returns its body and how long it may be cached.
func (s *keySource) get(ctx context.Context, uri string) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: GET %s: %w", ErrUnreachable, redactURL(uri), unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%w: GET %s: status %d", ErrUnreachable, redactURL(uri), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: GET %s: %w", ErrUnreachable, redactURL(uri), err)
	}
	if len(body) > maxDocument {
		return nil, 0, fmt.Errorf("%w: GET %s: answer over %d bytes", ErrUnreachable, redactURL(uri), maxDocument)
	}
	return body, cacheTTL(resp.Header.Get("Cache-Control")), nil
}

// cacheTTL reads max-age from a Cache-Control value, clamped to
// [minKeysTTL, maxKeysTTL]; no-store and no-cache give the minimum,
// nothing gives DefaultKeysTTL.
func cacheTTL(cc string) time.Duration {
	ttl := DefaultKeysTTL
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return minKeysTTL
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(maxKeysTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, minKeysTTL), maxKeysTTL)
}

// CheckURL accepts an https URL, or an http URL whose host is a loopback
// address (for tests and a sidecar IdP on the same host).
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL without credentials", redactURL(raw))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
			return nil
		}
		return fmt.Errorf("%s: plain http is allowed only to a loopback address", redactURL(raw))
	}
	return fmt.Errorf("%s: the scheme must be https", redactURL(raw))
}

// redactURL drops the query and any user info from a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// URL with its query.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
