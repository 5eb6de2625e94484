package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// MaxKeySetSize bounds the JWKS document a KeySet reads.
const MaxKeySetSize = 1 << 20

// JWK is one key of a JWK Set, as the gateway publishes it.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

// publicKey is a key with the one algorithm it may verify.
type publicKey struct {
	alg string
	ed  ed25519.PublicKey
	ec  *ecdsa.PublicKey
}

// parseJWK turns a JWK into a verification key. Only Ed25519 (OKP) and
// P-256 (EC) signing keys are taken; anything else, HMAC ("oct") keys
// included, is refused.
func parseJWK(k JWK) (publicKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return publicKey{}, fmt.Errorf("use %q is not sig", k.Use)
	}
	var pk publicKey
	switch {
	case k.Kty == "OKP" && k.Crv == "Ed25519":
		x, err := b64.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, fmt.Errorf("Ed25519 key: x is not 32 bytes of base64url")
		}
		pk = publicKey{alg: AlgEdDSA, ed: ed25519.PublicKey(x)}
	case k.Kty == "EC" && k.Crv == "P-256":
		x, errX := b64.DecodeString(k.X)
		y, errY := b64.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return publicKey{}, fmt.Errorf("P-256 key: x and y must be 32 bytes of base64url each")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return publicKey{}, fmt.Errorf("P-256 key: %v", err)
		}
		pk = publicKey{alg: AlgES256, ec: pub}
	default:
		return publicKey{}, fmt.Errorf("key type %q/%q is not Ed25519 or P-256", k.Kty, k.Crv)
	}
	if k.Alg != "" && k.Alg != pk.alg {
		return publicKey{}, fmt.Errorf("alg %q does not fit the key type (%s)", k.Alg, pk.alg)
	}
	return pk, nil
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 or P-256 JWK:
// base64url of the SHA-256 of its required members in lexicographic
// order. The gateway uses it as the kid.
func Thumbprint(k JWK) string {
	var canon string
	switch k.Kty {
	case "OKP":
		canon = `{"crv":"` + k.Crv + `","kty":"OKP","x":"` + k.X + `"}`
	default:
		canon = `{"crv":"` + k.Crv + `","kty":"` + k.Kty + `","x":"` + k.X + `","y":"` + k.Y + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:])
}

// parseKeySet reads a JWK Set. Keys of other types are skipped; a set
// with no usable key is an error. A key without kid is indexed by its
// thumbprint.
func parseKeySet(doc []byte) (map[string]publicKey, error) {
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	keys := make(map[string]publicKey, len(set.Keys))
	for _, k := range set.Keys {
		pk, err := parseJWK(k)
		if err != nil {
			continue
		}
		kid := k.Kid
		if kid == "" {
			kid = Thumbprint(k)
		}
		keys[kid] = pk
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no Ed25519 or P-256 signing key in the set", ErrKeySet)
	}
	return keys, nil
}

// keySet holds the keys of a JWKS, fetched from a URL or given once.
type keySet struct {
	url         string
	client      *http.Client
	minInterval time.Duration
	maxAge      time.Duration
	now         func() time.Time

	fetchMu sync.Mutex // one fetch at a time

	mu        sync.Mutex
	keys      map[string]publicKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch, successful or not
}

// key returns the key named kid. It fetches the set when it has none,
// when it is older than maxAge, or when kid is unknown; fetches are at
// least minInterval apart, so forged kids cannot make it hammer the
// gateway.
func (ks *keySet) key(ctx context.Context, kid string) (publicKey, error) {
	pk, ok, stale := ks.lookup(kid)
	if ok && !stale {
		return pk, nil
	}
	if ks.url == "" {
		if ok {
			return pk, nil
		}
		return publicKey{}, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	fetchErr := ks.refresh(ctx)
	if pk, ok, _ = ks.lookup(kid); ok {
		return pk, nil
	}
	if fetchErr != nil {
		return publicKey{}, fmt.Errorf("%w: %q (%v)", ErrUnknownKey, kid, fetchErr)
	}
	return publicKey{}, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
}

func (ks *keySet) lookup(kid string) (publicKey, bool, bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	pk, ok := ks.keys[kid]
	stale := ks.url != "" && ks.now().Sub(ks.fetched) > ks.maxAge
	return pk, ok, stale
}

// refresh fetches the set unless a fetch happened less than minInterval
// ago. A failed fetch keeps the keys already known.
func (ks *keySet) refresh(ctx context.Context) error {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	ks.mu.Lock()
	if !ks.attempted.IsZero() && ks.now().Sub(ks.attempted) < ks.minInterval {
		ks.mu.Unlock()
		return nil
	}
	ks.attempted = ks.now()
	ks.mu.Unlock()
	keys, err := ks.fetch(ctx)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	ks.keys, ks.fetched = keys, ks.now()
	ks.mu.Unlock()
	return nil
}

func (ks *keySet) fetch(ctx context.Context) (map[string]publicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s answered %d", ErrKeySet, ks.url, resp.StatusCode)
	}
	doc, err := io.ReadAll(io.LimitReader(resp.Body, MaxKeySetSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	if len(doc) > MaxKeySetSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrKeySet, MaxKeySetSize)
	}
	return parseKeySet(doc)
}
