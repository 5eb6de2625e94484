package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// MaxTokenSize bounds the assertion Parse accepts. The gateway's
// assertions are a few hundred bytes.
const MaxTokenSize = 8 << 10

// The two algorithms an assertion may use, each pinned to one key type.
const (
	AlgEdDSA = "EdDSA" // an Ed25519 key: JWK kty "OKP", crv "Ed25519" (RFC 8037)
	AlgES256 = "ES256" // a P-256 key: JWK kty "EC", crv "P-256"; signature r||s, 64 bytes
)

// Header is the protected header of an assertion.
type Header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ,omitempty"`
}

// Claims are what the gateway asserts about one request.
type Claims struct {
	// Issuer ("iss") names the gateway; default "caddy-session".
	Issuer string `json:"iss"`
	// Audience ("aud") names the upstream; default the request's
	// scheme://host as the gateway saw it.
	Audience Audience `json:"aud"`
	// IssuedAt ("iat") and Expires ("exp") are Unix seconds.
	IssuedAt int64 `json:"iat"`
	Expires  int64 `json:"exp"`
	// SessionID ("sid") is the session's handle (12 hex characters);
	// empty when the request had no session.
	SessionID string `json:"sid,omitempty"`
	// Subject ("sub") is the session's subject when the gateway is
	// configured with one and the session holds it.
	Subject string `json:"sub,omitempty"`
	// New is true when the session was created for this request.
	New bool `json:"new"`
	// DataHash ("sdh") is base64url (unpadded) of the SHA-256 of the
	// exact X-Session value sent with the request.
	DataHash string `json:"sdh"`
}

// Audience is the "aud" claim: one string or an array of strings.
type Audience []string

// UnmarshalJSON accepts a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// Token is a parsed, not yet verified, assertion.
type Token struct {
	Header Header
	Claims Claims
	// signed is the JWS signing input: the first two segments and the
	// dot between them.
	signed    string
	signature []byte
}

// Parse splits a compact JWS and decodes its header and claims. It checks
// the form only: no signature, no time, no issuer. It refuses tokens over
// MaxTokenSize, padded or non-URL base64, a "crit" header, and claims
// without iss, aud, iat, exp or sdh.
func Parse(token string) (*Token, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(token), MaxTokenSize)
	}
	h, rest, ok := strings.Cut(token, ".")
	c, s, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	t := &Token{signed: token[:len(h)+1+len(c)]}
	if err := decodeSegment(h, "header", &t.Header, true); err != nil {
		return nil, err
	}
	if err := decodeSegment(c, "claims", &t.Claims, false); err != nil {
		return nil, err
	}
	sig, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: not unpadded base64url", ErrMalformed)
	}
	t.signature = sig
	return t, t.Claims.complete()
}

var b64 = base64.RawURLEncoding.Strict()

func decodeSegment(seg, what string, v any, header bool) error {
	raw, err := b64.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("%w: %s: not unpadded base64url", ErrMalformed, what)
	}
	if header {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		if _, ok := fields["crit"]; ok {
			return fmt.Errorf("%w: header: crit is not supported", ErrMalformed)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: %s: trailing data", ErrMalformed, what)
	}
	return nil
}

func (c *Claims) complete() error {
	switch {
	case c.Issuer == "":
		return fmt.Errorf("%w: no iss", ErrMalformed)
	case len(c.Audience) == 0:
		return fmt.Errorf("%w: no aud", ErrMalformed)
	case c.IssuedAt <= 0:
		return fmt.Errorf("%w: no iat", ErrMalformed)
	case c.Expires <= 0:
		return fmt.Errorf("%w: no exp", ErrMalformed)
	case c.DataHash == "":
		return fmt.Errorf("%w: no sdh", ErrMalformed)
	}
	return nil
}
