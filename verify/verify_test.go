package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testKey is a signing key with its JWK, as the gateway publishes it.
type testKey struct {
	alg  string
	priv crypto.Signer
	jwk  JWK
}

func newEd25519(t testing.TB) testKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := JWK{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(pub), Alg: AlgEdDSA, Use: "sig"}
	jwk.Kid = Thumbprint(jwk)
	return testKey{alg: AlgEdDSA, priv: priv, jwk: jwk}
}

func newP256(t testing.TB) testKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := priv.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	jwk := JWK{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:]), Alg: AlgES256, Use: "sig"}
	jwk.Kid = Thumbprint(jwk)
	return testKey{alg: AlgES256, priv: priv, jwk: jwk}
}

// sign builds a compact JWS the way the gateway does, with any header.
func sign(t testing.TB, k testKey, header map[string]any, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	switch k.alg {
	case AlgEdDSA:
		sig = ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(input))
	case AlgES256:
		digest := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + b64.EncodeToString(sig)
}

func keySetJSON(keys ...JWK) []byte {
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	return doc
}

var now = time.Unix(1_800_000_000, 0)

const data = `{"user":{"id":"7"}}`

func goodClaims() map[string]any {
	return map[string]any{
		"iss": "caddy-session", "aud": "https://app.example",
		"iat": now.Unix(), "exp": now.Unix() + 60,
		"sid": "0123456789ab", "new": false, "sdh": DataHash(data),
	}
}

func with(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

func TestVerify(t *testing.T) {
	ed, ec, other := newEd25519(t), newP256(t), newEd25519(t)
	v, err := New(Config{JWKS: keySetJSON(ed.jwk, ec.jwk), Audience: "https://app.example", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	edHeader := map[string]any{"alg": AlgEdDSA, "kid": ed.jwk.Kid, "typ": "JWT"}
	ecHeader := map[string]any{"alg": AlgES256, "kid": ec.jwk.Kid}
	good := sign(t, ed, edHeader, goodClaims())
	parts := strings.Split(good, ".")
	hmacKey := []byte(ed.jwk.X)
	hs := b64.EncodeToString([]byte(`{"alg":"HS256","kid":"`+ed.jwk.Kid+`"}`)) + "." + parts[1]
	mac := hmac.New(sha256.New, hmacKey)
	mac.Write([]byte(hs))

	tests := []struct {
		name  string
		token string
		data  string
		want  error
	}{
		{"EdDSA", good, data, nil},
		{"ES256", sign(t, ec, ecHeader, goodClaims()), data, nil},
		{"no session", sign(t, ed, edHeader, with(with(goodClaims(), "sid", nil), "sdh", DataHash(""))), "", nil},
		{"audience in a list", sign(t, ed, edHeader, with(goodClaims(), "aud", []string{"x", "https://app.example"})), data, nil},
		{"expired within leeway", sign(t, ed, edHeader, with(goodClaims(), "exp", now.Unix()-5)), data, nil},
		{"missing", "", data, ErrMissing},
		{"bad signature", parts[0] + "." + parts[1] + "." + b64.EncodeToString(make([]byte, 64)), data, ErrSignature},
		{"claims changed", parts[0] + "." + b64.EncodeToString([]byte(`{"iss":"caddy-session","aud":"https://app.example","iat":1800000000,"exp":1800000060,"sub":"admin","new":false,"sdh":"`+DataHash(data)+`"}`)) + "." + parts[2], data, ErrSignature},
		{"signed by another key", sign(t, other, edHeader, goodClaims()), data, ErrSignature},
		{"wrong alg for the key", sign(t, ec, map[string]any{"alg": AlgES256, "kid": ed.jwk.Kid}, goodClaims()), data, ErrAlgorithm},
		{"EdDSA header on a P-256 key", sign(t, ed, map[string]any{"alg": AlgEdDSA, "kid": ec.jwk.Kid}, goodClaims()), data, ErrAlgorithm},
		{"none", b64.EncodeToString([]byte(`{"alg":"none","kid":"`+ed.jwk.Kid+`"}`)) + "." + parts[1] + ".", data, ErrAlgorithm},
		{"HS256 with the public key as secret", hs + "." + b64.EncodeToString(mac.Sum(nil)), data, ErrAlgorithm},
		{"RS256", sign(t, ed, map[string]any{"alg": "RS256", "kid": ed.jwk.Kid}, goodClaims()), data, ErrAlgorithm},
		{"expired", sign(t, ed, edHeader, with(goodClaims(), "exp", now.Unix()-11)), data, ErrExpired},
		{"issued in the future", sign(t, ed, edHeader, with(goodClaims(), "iat", now.Unix()+30)), data, ErrIssuedInFuture},
		{"wrong audience", sign(t, ed, edHeader, with(goodClaims(), "aud", "https://other.example")), data, ErrAudience},
		{"wrong issuer", sign(t, ed, edHeader, with(goodClaims(), "iss", "someone")), data, ErrIssuer},
		{"sdh mismatch", good, `{"user":{"id":"admin"}}`, ErrDataHash},
		{"sdh of another value, no X-Session", good, "", ErrDataHash},
		{"unknown kid", sign(t, other, map[string]any{"alg": AlgEdDSA, "kid": other.jwk.Kid}, goodClaims()), data, ErrUnknownKey},
		{"no kid", sign(t, ed, map[string]any{"alg": AlgEdDSA}, goodClaims()), data, ErrUnknownKey},
		{"two parts", parts[0] + "." + parts[1], data, ErrMalformed},
		{"four parts", good + ".x", data, ErrMalformed},
		{"padded", good + "=", data, ErrMalformed},
		{"crit header", sign(t, ed, map[string]any{"alg": AlgEdDSA, "kid": ed.jwk.Kid, "crit": []string{"exp"}}, goodClaims()), data, ErrMalformed},
		{"no sdh", sign(t, ed, edHeader, with(goodClaims(), "sdh", nil)), data, ErrMalformed},
		{"no exp", sign(t, ed, edHeader, with(goodClaims(), "exp", nil)), data, ErrMalformed},
		{"exp not a number", sign(t, ed, edHeader, with(goodClaims(), "exp", "soon")), data, ErrMalformed},
		{"too long", strings.Repeat("a", MaxTokenSize+1), data, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tt.token, tt.data)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if err == nil && c.Issuer != "caddy-session" {
				t.Fatalf("claims: %+v", c)
			}
		})
	}
}

func TestThumbprint(t *testing.T) {
	for _, tt := range []struct {
		jwk  JWK
		want string
	}{
		// RFC 8037 appendix A.3.
		{JWK{Kty: "OKP", Crv: "Ed25519", X: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
		// The example of jose's calculateJwkThumbprint.
		{JWK{Kty: "EC", Crv: "P-256", X: "jJ6Flys3zK9jUhnOHf6G49Dyp5hah6CNP84-gY-n9eo", Y: "nhI6iD5eFXgBTLt_1p3aip-5VbZeMhxeFSpjfEAf7Ww"}, "w9eYdC6_s_tLQ8lH6PUpc0mddazaqtPgeC2IgWDiqY8"},
	} {
		if got := Thumbprint(tt.jwk); got != tt.want {
			t.Errorf("Thumbprint(%+v) = %s, want %s", tt.jwk, got, tt.want)
		}
	}
}

func TestKeySetRefusesOtherKeys(t *testing.T) {
	ed := newEd25519(t)
	for name, jwk := range map[string]JWK{
		"oct":           {Kty: "oct", Kid: "k", Alg: "HS256"},
		"RSA":           {Kty: "RSA", Kid: "k"},
		"P-384":         {Kty: "EC", Crv: "P-384", X: ed.jwk.X, Y: ed.jwk.X, Kid: "k"},
		"alg mismatch":  {Kty: "OKP", Crv: "Ed25519", X: ed.jwk.X, Alg: AlgES256, Kid: "k"},
		"encryption":    {Kty: "OKP", Crv: "Ed25519", X: ed.jwk.X, Use: "enc", Kid: "k"},
		"short x":       {Kty: "OKP", Crv: "Ed25519", X: "AAAA", Kid: "k"},
		"off the curve": {Kty: "EC", Crv: "P-256", X: ed.jwk.X, Y: ed.jwk.X, Kid: "k"},
	} {
		if _, err := New(Config{JWKS: keySetJSON(jwk), Audience: "a"}); !errors.Is(err, ErrKeySet) {
			t.Errorf("%s: New = %v, want ErrKeySet", name, err)
		}
	}
}

func TestConfig(t *testing.T) {
	ed := newEd25519(t)
	for name, c := range map[string]Config{
		"no audience":  {JWKS: keySetJSON(ed.jwk)},
		"no keys":      {Audience: "a"},
		"both sources": {Audience: "a", JWKS: keySetJSON(ed.jwk), JWKSURL: "http://x"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// jwksServer serves a key set that the test can change, and counts the
// fetches.
type jwksServer struct {
	*httptest.Server
	doc     atomic.Value
	fetches atomic.Int32
	status  atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...JWK) *jwksServer {
	s := &jwksServer{}
	s.doc.Store(keySetJSON(keys...))
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		w.WriteHeader(int(s.status.Load()))
		w.Write(s.doc.Load().([]byte))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestKeySetFetch(t *testing.T) {
	old, next := newEd25519(t), newP256(t)
	srv := newJWKSServer(t, old.jwk)
	clock := now
	v, err := New(Config{JWKSURL: srv.URL, Audience: "https://app.example", Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(k testKey) error {
		claims := with(with(goodClaims(), "iat", clock.Unix()), "exp", clock.Unix()+60)
		_, err := v.Verify(context.Background(), sign(t, k, map[string]any{"alg": k.alg, "kid": k.jwk.Kid}, claims), data)
		return err
	}
	if err := verify(old); err != nil {
		t.Fatalf("first verify: %v", err)
	}
	if err := verify(old); err != nil || srv.fetches.Load() != 1 {
		t.Fatalf("second verify: %v, %d fetches, want 1", err, srv.fetches.Load())
	}

	// An unknown kid fetches again, but not more than once per interval.
	if err := verify(next); !errors.Is(err, ErrUnknownKey) || srv.fetches.Load() != 1 {
		t.Fatalf("unknown kid right after a fetch: %v, %d fetches, want ErrUnknownKey after 1", err, srv.fetches.Load())
	}
	clock = clock.Add(DefaultRefetchInterval)
	if err := verify(next); !errors.Is(err, ErrUnknownKey) || srv.fetches.Load() != 2 {
		t.Fatalf("unknown kid: %v, %d fetches, want ErrUnknownKey after 2", err, srv.fetches.Load())
	}
	srv.doc.Store(keySetJSON(old.jwk, next.jwk))
	for range 5 {
		if err := verify(next); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("within the refetch interval: %v", err)
		}
	}
	if srv.fetches.Load() != 2 {
		t.Fatalf("%d fetches within the refetch interval, want 2", srv.fetches.Load())
	}
	clock = clock.Add(DefaultRefetchInterval)
	if err := verify(next); err != nil || srv.fetches.Load() != 3 {
		t.Fatalf("after the interval: %v, %d fetches", err, srv.fetches.Load())
	}

	// A failing key set server leaves the known keys in use.
	srv.status.Store(http.StatusInternalServerError)
	clock = clock.Add(DefaultKeySetMaxAge + time.Second)
	if err := verify(old); err != nil {
		t.Fatalf("server down, known key: %v", err)
	}
	if srv.fetches.Load() != 4 {
		t.Fatalf("%d fetches, want a refresh attempt of the stale set", srv.fetches.Load())
	}
}

func TestHandler(t *testing.T) {
	ed := newEd25519(t)
	v, err := New(Config{JWKS: keySetJSON(ed.jwk), Audience: "https://app.example", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := FromContext(r.Context())
		if !ok {
			t.Error("no claims in the context")
			return
		}
		w.Write([]byte(c.SessionID))
	}))
	tok := sign(t, ed, map[string]any{"alg": AlgEdDSA, "kid": ed.jwk.Kid}, goodClaims())
	for _, tt := range []struct {
		name    string
		headers map[string][]string
		status  int
	}{
		{"through the gateway", map[string][]string{"X-Session": {data}, "X-Session-Assertion": {tok}}, 200},
		{"forged X-Session, no assertion", map[string][]string{"X-Session": {`{"user":{"id":"admin"}}`}}, 401},
		{"forged X-Session, replayed assertion", map[string][]string{"X-Session": {`{"user":{"id":"admin"}}`}, "X-Session-Assertion": {tok}}, 401},
		{"two X-Session headers", map[string][]string{"X-Session": {data, data}, "X-Session-Assertion": {tok}}, 401},
		{"two assertions", map[string][]string{"X-Session": {data}, "X-Session-Assertion": {tok, tok}}, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, vs := range tt.headers {
				r.Header[k] = vs
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			if tt.status == 200 && w.Body.String() != "0123456789ab" {
				t.Fatalf("body %q", w.Body)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	ed := newEd25519(f)
	good := sign(f, ed, map[string]any{"alg": AlgEdDSA, "kid": ed.jwk.Kid}, goodClaims())
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Replace(good, ".", "..", 1))
	v, err := New(Config{JWKS: keySetJSON(ed.jwk), Audience: "https://app.example", Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := Parse(token)
		if err == nil && (tok.Claims.DataHash == "" || len(tok.Claims.Audience) == 0 || !strings.HasPrefix(token, tok.signed+".")) {
			t.Fatalf("Parse accepted an incomplete token: %+v", tok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
		}
		c, err := v.Verify(context.Background(), token, data)
		if err == nil && token != good {
			t.Fatalf("Verify accepted a token it was not given signed: %q %+v", token, c)
		}
	})
}

// TestGatewayToken checks a token signed by the gateway's signer
// (internal/assertion, TestGatewayToken) with the RFC 8037 key.
func TestGatewayToken(t *testing.T) {
	const token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJjYWRkeS1zZXNzaW9uIiwiYXVkIjoiaHR0cHM6Ly9hcHAuZXhhbXBsZSIsImlhdCI6MTgwMDAwMDAwMCwiZXhwIjoxODAwMDAwMDYwLCJzaWQiOiIwMTIzNDU2Nzg5YWIiLCJzdWIiOiJ1NyIsIm5ldyI6dHJ1ZSwic2RoIjoidXlSc18waFVrMTNCY2N4TEV2cUhlSFpIS2ZraUViV1l1aGV3MEJWQ2hCWSJ9.HllWCFybMrJltMEGiC2tlgm9YANquSSJT51LDYame03FWCwO89Q3oN6pap2esCYhrB7GUmN-so3LTtJrve8vAw"
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","alg":"EdDSA","use":"sig"}]}`
	v, err := New(Config{JWKS: []byte(jwks), Audience: "https://app.example", Now: func() time.Time { return time.Unix(1_800_000_030, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), token, `{"user":"u7"}`)
	if err != nil || c.SessionID != "0123456789ab" || c.Subject != "u7" || !c.New {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
}
