// Package assertion signs the gateway's assertion: a compact JWS (a JWT)
// sent to the upstream with every request the session handler selects, so
// that the upstream can refuse requests that did not come through the
// gateway and X-Session values the gateway did not send.
//
// Keys are Ed25519 (alg EdDSA, JWK kty "OKP", RFC 8037) or P-256 (alg
// ES256, JWK kty "EC", signature r||s). The header's kid is the key's
// RFC 7638 thumbprint. The claims are iss, aud, iat, exp, sid (the session
// handle), sub, new and sdh: base64url, unpadded, of the SHA-256 of the
// exact X-Session value sent. The verifier that apps can import is the
// nested module github.com/sessiongate/caddy-session/verify.
package assertion

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The algorithms, each pinned to one key type.
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
)

var b64 = base64.RawURLEncoding

// Signer signs assertions with one private key.
type Signer struct {
	jwk    JWK
	ed     ed25519.PrivateKey
	ec     *ecdsa.PrivateKey
	header string // the encoded protected header and its dot
}

// NewEd25519 makes a Signer of an Ed25519 private key.
func NewEd25519(priv ed25519.PrivateKey) *Signer {
	pub := priv.Public().(ed25519.PublicKey)
	return newSigner(publicJWK(pub), &Signer{ed: priv})
}

// NewP256 makes a Signer of a P-256 private key.
func NewP256(priv *ecdsa.PrivateKey) (*Signer, error) {
	jwk, err := ecJWK(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return newSigner(jwk, &Signer{ec: priv}), nil
}

// GenerateEd25519 makes a Signer of a new random Ed25519 key.
func GenerateEd25519() *Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader) // never fails: crypto/rand does not
	return NewEd25519(priv)
}

func newSigner(jwk JWK, s *Signer) *Signer {
	s.jwk = jwk
	h, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{jwk.Alg, jwk.Kid, "JWT"})
	s.header = b64.EncodeToString(h) + "."
	return s
}

// JWK is the public key of the Signer, with its kid, alg and use.
func (s *Signer) JWK() JWK { return s.jwk }

// Kid is the key's RFC 7638 thumbprint.
func (s *Signer) Kid() string { return s.jwk.Kid }

// Alg is EdDSA or ES256.
func (s *Signer) Alg() string { return s.jwk.Alg }

// Claims are what one assertion says. Times are kept in whole seconds.
type Claims struct {
	Issuer   string
	Audience string
	IssuedAt time.Time
	Expires  time.Time
	// SessionID is the session handle; empty without a session.
	SessionID string
	// Subject is the session's subject; empty when unknown.
	Subject string
	// New is true when the session was created for this request.
	New bool
	// DataHash is DataHash of the X-Session value sent.
	DataHash string
}

type wireClaims struct {
	Iss string `json:"iss"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Sid string `json:"sid,omitempty"`
	Sub string `json:"sub,omitempty"`
	New bool   `json:"new"`
	Sdh string `json:"sdh"`
}

// Sign returns the compact JWS of c.
func (s *Signer) Sign(c *Claims) (string, error) {
	payload, err := json.Marshal(wireClaims{
		Iss: c.Issuer, Aud: c.Audience, Iat: c.IssuedAt.Unix(), Exp: c.Expires.Unix(),
		Sid: c.SessionID, Sub: c.Subject, New: c.New, Sdh: c.DataHash,
	})
	if err != nil {
		return "", err
	}
	buf := make([]byte, 0, len(s.header)+b64.EncodedLen(len(payload))+1+b64.EncodedLen(64))
	buf = append(buf, s.header...)
	buf = b64.AppendEncode(buf, payload)
	sig, err := s.sign(buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	return string(b64.AppendEncode(buf, sig)), nil
}

func (s *Signer) sign(input []byte) ([]byte, error) {
	if s.ed != nil {
		return ed25519.Sign(s.ed, input), nil
	}
	digest := sha256.Sum256(input)
	r, ss, err := ecdsa.Sign(rand.Reader, s.ec, digest[:])
	if err != nil {
		return nil, fmt.Errorf("ES256: %v", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return sig, nil
}

// DataHash is the sdh of an X-Session value: base64url, unpadded, of its
// SHA-256. A request without X-Session hashes the empty string.
func DataHash(data string) string {
	sum := sha256.Sum256([]byte(data))
	return b64.EncodeToString(sum[:])
}

// String names the key for logs and errors: its alg and kid, never the
// key itself.
func (s *Signer) String() string {
	return s.jwk.Alg + " key " + strconv.Quote(s.jwk.Kid)
}
