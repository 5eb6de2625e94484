// Package idptest runs a small OpenID Provider for tests: a discovery
// document and a JWK Set served over HTTP on a loopback address, and real
// RSA, EC P-256 and Ed25519 keys that sign back-channel logout tokens. Keys
// can be rotated while it runs, and it can be made unreachable. Test code
// only.
package idptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LogoutEvent is the events member of a logout token.
const LogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Alg names a signing algorithm the IdP has a key for.
type Alg string

// The algorithms.
const (
	RS256 Alg = "RS256"
	ES256 Alg = "ES256"
	EdDSA Alg = "EdDSA"
)

// Key is one signing key of the IdP.
type Key struct {
	Kid  string
	Alg  Alg
	priv crypto.Signer
}

// NewKey makes a fresh key for alg.
func NewKey(t testing.TB, alg Alg) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("idptest: unknown alg %q", alg)
	}
	if err != nil {
		t.Fatalf("idptest: generating a %s key: %v", alg, err)
	}
	return &Key{Kid: fmt.Sprintf("%s-%d", alg, kidSeq.Add(1)), Alg: alg, priv: priv}
}

var kidSeq atomic.Int64

// JWK is the public key as a JSON Web Key.
func (k *Key) JWK() map[string]any {
	m := map[string]any{"kid": k.Kid, "use": "sig", "alg": string(k.Alg)}
	switch pub := k.priv.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big(pub.E))
	case *ecdsa.PublicKey:
		raw, _ := pub.Bytes() // 0x04 || X || Y
		m["kty"], m["crv"] = "EC", "P-256"
		m["x"], m["y"] = b64(raw[1:33]), b64(raw[33:])
	case ed25519.PublicKey:
		m["kty"], m["crv"] = "OKP", "Ed25519"
		m["x"] = b64(pub)
	}
	return m
}

func big(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Sign signs any header and claims with k, as a compact JWS. The header's
// alg and kid default to the key's.
func (k *Key) Sign(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": string(k.Alg), "kid": k.Kid, "typ": "logout+jwt"}
	for name, v := range header {
		if v == nil {
			delete(h, name)
		} else {
			h[name] = v
		}
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("idptest: claims: %v", err)
	}
	return k.SignRaw(t, h, cb)
}

// SignRaw signs the claims bytes as they are (they need not be JSON)
// under the header h as given.
func (k *Key) SignRaw(t testing.TB, h map[string]any, claims []byte) string {
	t.Helper()
	hb, _ := json.Marshal(h)
	signed := b64(hb) + "." + b64(claims)
	return signed + "." + b64(k.signature(t, []byte(signed)))
}

func (k *Key) signature(t testing.TB, msg []byte) []byte {
	sum := sha256.Sum256(msg)
	switch priv := k.priv.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatalf("idptest: RSA sign: %v", err)
		}
		return sig
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
		if err != nil {
			t.Fatalf("idptest: EC sign: %v", err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, msg)
	}
	t.Fatalf("idptest: no signer")
	return nil
}

// IdP is a running test OpenID Provider.
type IdP struct {
	srv *httptest.Server
	// Issuer is the issuer identifier (the server's URL).
	Issuer string
	// ClientID is the audience tokens are issued for by default.
	ClientID string

	mu           sync.Mutex
	keys         []*Key
	cacheControl string
	down         bool
	stall        time.Duration

	// DiscoveryHits and JWKSHits count the requests served.
	DiscoveryHits, JWKSHits atomic.Int64
}

// New starts an IdP over plain HTTP on a loopback address with one key of
// each alg given (RS256 when none), and stops it when the test ends.
func New(t testing.TB, algs ...Alg) *IdP {
	t.Helper()
	return start(t, false, algs)
}

// NewTLS is New over HTTPS (a test certificate for 127.0.0.1); Transport
// trusts it.
func NewTLS(t testing.TB, algs ...Alg) *IdP {
	t.Helper()
	return start(t, true, algs)
}

// Transport is an HTTP transport that trusts the IdP's test certificate
// (http.DefaultTransport's settings otherwise).
func (idp *IdP) Transport() http.RoundTripper { return idp.srv.Client().Transport }

func start(t testing.TB, tls bool, algs []Alg) *IdP {
	if len(algs) == 0 {
		algs = []Alg{RS256}
	}
	idp := &IdP{ClientID: "gateway-client", cacheControl: "max-age=300"}
	for _, a := range algs {
		idp.keys = append(idp.keys, NewKey(t, a))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", idp.discovery)
	mux.HandleFunc("GET /jwks", idp.jwks)
	if tls {
		idp.srv = httptest.NewTLSServer(mux)
	} else {
		idp.srv = httptest.NewServer(mux)
	}
	idp.Issuer = idp.srv.URL
	t.Cleanup(idp.srv.Close)
	return idp
}

// JWKSURI is where the key set is served.
func (idp *IdP) JWKSURI() string { return idp.srv.URL + "/jwks" }

func (idp *IdP) discovery(w http.ResponseWriter, _ *http.Request) {
	idp.DiscoveryHits.Add(1)
	if idp.isDown(w) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                idp.Issuer,
		"jwks_uri":                              idp.JWKSURI(),
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA"},
	})
}

func (idp *IdP) jwks(w http.ResponseWriter, _ *http.Request) {
	idp.JWKSHits.Add(1)
	if idp.isDown(w) {
		return
	}
	idp.mu.Lock()
	set := make([]map[string]any, 0, len(idp.keys))
	for _, k := range idp.keys {
		set = append(set, k.JWK())
	}
	cc := idp.cacheControl
	idp.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	json.NewEncoder(w).Encode(map[string]any{"keys": set})
}

func (idp *IdP) isDown(w http.ResponseWriter) bool {
	idp.mu.Lock()
	stall := idp.stall
	idp.mu.Unlock()
	time.Sleep(stall)
	idp.mu.Lock()
	defer idp.mu.Unlock()
	if idp.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}
	return idp.down
}

// SetDown makes discovery and the key set answer 503 (down) or work again.
func (idp *IdP) SetDown(down bool) {
	idp.mu.Lock()
	idp.down = down
	idp.mu.Unlock()
}

// SetStall makes every answer wait d first (0: answer at once).
func (idp *IdP) SetStall(d time.Duration) {
	idp.mu.Lock()
	idp.stall = d
	idp.mu.Unlock()
}

// Close stops the server: the IdP is unreachable from then on.
func (idp *IdP) Close() { idp.srv.Close() }

// SetCacheControl sets the key set's Cache-Control answer.
func (idp *IdP) SetCacheControl(cc string) {
	idp.mu.Lock()
	idp.cacheControl = cc
	idp.mu.Unlock()
}

// Key returns the current key for alg (the last one added).
func (idp *IdP) Key(t testing.TB, alg Alg) *Key {
	t.Helper()
	idp.mu.Lock()
	defer idp.mu.Unlock()
	for i := len(idp.keys) - 1; i >= 0; i-- {
		if idp.keys[i].Alg == alg {
			return idp.keys[i]
		}
	}
	t.Fatalf("idptest: no %s key", alg)
	return nil
}

// Rotate replaces every key of alg by a new one and returns it: tokens
// signed by the old key no longer verify once the gateway refetches.
func (idp *IdP) Rotate(t testing.TB, alg Alg) *Key {
	t.Helper()
	k := NewKey(t, alg)
	idp.mu.Lock()
	defer idp.mu.Unlock()
	kept := idp.keys[:0]
	for _, old := range idp.keys {
		if old.Alg != alg {
			kept = append(kept, old)
		}
	}
	idp.keys = append(kept, k)
	return k
}

var jtiSeq atomic.Int64

// Claims returns the claims of a valid logout token for sid and sub (either
// may be ""), issued now, with a fresh jti.
func (idp *IdP) Claims(sid, sub string) map[string]any {
	c := map[string]any{
		"iss":    idp.Issuer,
		"aud":    idp.ClientID,
		"iat":    time.Now().Unix(),
		"exp":    time.Now().Add(2 * time.Minute).Unix(),
		"jti":    "jti-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(jtiSeq.Add(1), 10),
		"events": map[string]any{LogoutEvent: map[string]any{}},
	}
	if sid != "" {
		c["sid"] = sid
	}
	if sub != "" {
		c["sub"] = sub
	}
	return c
}

// LogoutToken signs a valid logout token for sid and sub with the IdP's
// current key for alg.
func (idp *IdP) LogoutToken(t testing.TB, alg Alg, sid, sub string) string {
	t.Helper()
	return idp.Key(t, alg).Sign(t, nil, idp.Claims(sid, sub))
}
