package assertion

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Ed25519 key of RFC 8037 appendix A.1, with the x and the
// thumbprint the RFC gives for it (A.2, A.3).
const (
	rfc8037D   = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfc8037X   = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037Kid = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
)

func rfcSigner(t testing.TB) *Signer {
	seed, err := b64.DecodeString(rfc8037D)
	if err != nil {
		t.Fatal(err)
	}
	return NewEd25519(ed25519.NewKeyFromSeed(seed))
}

func p256Signer(t testing.TB) *Signer {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewP256(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKid(t *testing.T) {
	s := rfcSigner(t)
	if k := s.JWK(); k.X != rfc8037X || k.Kid != rfc8037Kid || k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != AlgEdDSA || k.Use != "sig" {
		t.Fatalf("JWK = %+v, want x %s kid %s", k, rfc8037X, rfc8037Kid)
	}
	// The example of jose's calculateJwkThumbprint (RFC 7638 form of a P-256 key).
	ec := JWK{Kty: "EC", Crv: "P-256", X: "jJ6Flys3zK9jUhnOHf6G49Dyp5hah6CNP84-gY-n9eo", Y: "nhI6iD5eFXgBTLt_1p3aip-5VbZeMhxeFSpjfEAf7Ww"}
	if got := Thumbprint(ec); got != "w9eYdC6_s_tLQ8lH6PUpc0mddazaqtPgeC2IgWDiqY8" {
		t.Fatalf("P-256 thumbprint %s", got)
	}
}

var claims = Claims{
	Issuer: "caddy-session", Audience: "https://app.example",
	IssuedAt: time.Unix(1_800_000_000, 0), Expires: time.Unix(1_800_000_060, 0),
	SessionID: "0123456789ab", Subject: "u7", New: true, DataHash: DataHash(`{"user":"u7"}`),
}

// open checks a token with the standard library alone and returns its
// header and claims.
func open(t *testing.T, s *Signer, token string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	input := []byte(parts[0] + "." + parts[1])
	switch s.Alg() {
	case AlgEdDSA:
		if !ed25519.Verify(s.ed.Public().(ed25519.PublicKey), input, sig) {
			t.Fatal("EdDSA signature does not verify")
		}
	case AlgES256:
		digest := sha256.Sum256(input)
		if len(sig) != 64 || !ecdsa.Verify(&s.ec.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatal("ES256 signature (r||s) does not verify")
		}
	}
	var h, c map[string]any
	for i, v := range []*map[string]any{&h, &c} {
		raw, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	return h, c
}

func TestSign(t *testing.T) {
	for _, s := range []*Signer{rfcSigner(t), p256Signer(t)} {
		t.Run(s.Alg(), func(t *testing.T) {
			tok, err := s.Sign(&claims)
			if err != nil {
				t.Fatal(err)
			}
			h, c := open(t, s, tok)
			if h["alg"] != s.Alg() || h["kid"] != s.Kid() || len(h) != 3 {
				t.Fatalf("header %v", h)
			}
			want := map[string]any{"iss": "caddy-session", "aud": "https://app.example", "iat": 1.8e9, "exp": 1.8e9 + 60,
				"sid": "0123456789ab", "sub": "u7", "new": true, "sdh": DataHash(`{"user":"u7"}`)}
			if len(c) != len(want) {
				t.Fatalf("claims %v, want %v", c, want)
			}
			for k, v := range want {
				if c[k] != v {
					t.Fatalf("claim %s = %v, want %v", k, c[k], v)
				}
			}
		})
	}
	// Without a session: no sid, no sub.
	anon := claims
	anon.SessionID, anon.Subject, anon.New, anon.DataHash = "", "", false, DataHash("")
	tok, err := rfcSigner(t).Sign(&anon)
	if err != nil {
		t.Fatal(err)
	}
	_, c := open(t, rfcSigner(t), tok)
	if _, ok := c["sid"]; ok {
		t.Fatalf("sid without a session: %v", c)
	}
	if _, ok := c["sub"]; ok {
		t.Fatalf("sub without a subject: %v", c)
	}
	if c["sdh"] != "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" { // SHA-256 of ""
		t.Fatalf("sdh of no X-Session = %v", c["sdh"])
	}
}

func pemOf(t *testing.T, typ string, der []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParsePrivateKeyPEM(t *testing.T) {
	ed := rfcSigner(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	edPEM, err := ed.PrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	ecPKCS8, err := x509.MarshalPKCS8PrivateKey(ec)
	ecSEC1, err2 := x509.MarshalECPrivateKey(ec)
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecJ, _ := ecJWK(&ec.PublicKey)
	pubPEM, _ := ed.PublicKeyPEM()
	for _, tt := range []struct {
		name, doc, kid, err string
	}{
		{"Ed25519 PKCS #8", string(edPEM), rfc8037Kid, ""},
		{"P-256 PKCS #8", string(pemOf(t, "PRIVATE KEY", ecPKCS8, nil)), ecJ.Kid, ""},
		{"P-256 SEC 1 after EC PARAMETERS", "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + string(pemOf(t, "EC PRIVATE KEY", ecSEC1, nil)), ecJ.Kid, ""},
		{"P-384", string(pemOf(t, "PRIVATE KEY", p384DER, nil)), "", "want P-256"},
		{"RSA", string(pemOf(t, "PRIVATE KEY", rsaDER, nil)), "", "want Ed25519 or P-256"},
		{"public key", string(pubPEM), "", "want the private key"},
		{"not PEM", "hello", "", "no PRIVATE KEY"},
		{"broken DER", string(pemOf(t, "PRIVATE KEY", []byte{1, 2, 3}, nil)), "", "PKCS #8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParsePrivateKeyPEM([]byte(tt.doc))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || s.Kid() != tt.kid {
				t.Fatalf("ParsePrivateKeyPEM: %v, %v, want kid %s", s, err, tt.kid)
			}
		})
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	ed, ec := rfcSigner(t), p256Signer(t)
	a, _ := ed.PublicKeyPEM()
	b, _ := ec.PublicKeyPEM()
	keys, err := ParsePublicKeyPEM(append(a, b...))
	if err != nil || len(keys) != 2 || keys[0] != ed.JWK() || keys[1] != ec.JWK() {
		t.Fatalf("ParsePublicKeyPEM = %+v, %v", keys, err)
	}
	priv, _ := ed.PrivateKeyPEM()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPub := pemOf(t, "PUBLIC KEY", rsaDER, err)
	for name, doc := range map[string][]byte{"private key": priv, "RSA": rsaPub, "empty": nil} {
		if _, err := ParsePublicKeyPEM(doc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadPEM(t *testing.T) {
	priv, _ := rfcSigner(t).PrivateKeyPEM()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{path, string(priv)} {
		doc, err := ReadPEM(v)
		if err != nil || string(doc) != string(priv) {
			t.Fatalf("ReadPEM(%.20q) = %v", v, err)
		}
	}
	if _, err := ReadPEM(""); err == nil {
		t.Fatal("ReadPEM of an empty value")
	}
	if _, err := ReadPEM(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("ReadPEM of a missing file")
	}
}

func TestNewSet(t *testing.T) {
	a, b := rfcSigner(t).JWK(), p256Signer(t).JWK()
	set := NewSet(a, b, a, b, a)
	if len(set.Keys) != 2 || set.Keys[0] != a || set.Keys[1] != b {
		t.Fatalf("NewSet = %+v", set)
	}
	doc, _ := json.Marshal(NewSet(a))
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + rfc8037X + `","kid":"` + rfc8037Kid + `","alg":"EdDSA","use":"sig"}]}`
	if string(doc) != want {
		t.Fatalf("JWKS %s\nwant %s", doc, want)
	}
}

// BenchmarkSign is the cold sign: what a request costs when no assertion
// can be reused.
func BenchmarkSign(b *testing.B) {
	for _, s := range []*Signer{GenerateEd25519(), p256Signer(b)} {
		b.Run(s.Alg(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := claims
				c.DataHash = DataHash(`{"user":{"id":"7","name":"Ada"},"cart":[1,2,3]}`)
				if _, err := s.Sign(&c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// gatewayToken is what the RFC 8037 key signs for claims (Ed25519 is
// deterministic). verify's TestGatewayToken checks the same string, so the
// signer and the verifier module agree on the format.
const gatewayToken = "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJjYWRkeS1zZXNzaW9uIiwiYXVkIjoiaHR0cHM6Ly9hcHAuZXhhbXBsZSIsImlhdCI6MTgwMDAwMDAwMCwiZXhwIjoxODAwMDAwMDYwLCJzaWQiOiIwMTIzNDU2Nzg5YWIiLCJzdWIiOiJ1NyIsIm5ldyI6dHJ1ZSwic2RoIjoidXlSc18waFVrMTNCY2N4TEV2cUhlSFpIS2ZraUViV1l1aGV3MEJWQ2hCWSJ9.HllWCFybMrJltMEGiC2tlgm9YANquSSJT51LDYame03FWCwO89Q3oN6pap2esCYhrB7GUmN-so3LTtJrve8vAw"

func TestGatewayToken(t *testing.T) {
	if tok, err := rfcSigner(t).Sign(&claims); err != nil || tok != gatewayToken {
		t.Fatalf("Sign = %s, %v\nwant %s", tok, err, gatewayToken)
	}
}
