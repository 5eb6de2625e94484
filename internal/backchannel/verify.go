// Package backchannel verifies the logout tokens of OpenID Connect
// Back-Channel Logout 1.0 with the standard library only.
//
// A Verifier checks, in this order: the token's shape (a JWS in compact
// form, no JWE, no crit, a typ that is absent, JWT or logout+jwt), the
// algorithm (RS256, ES256 or EdDSA; never none or HMAC), the signature
// with a key of the IdP's key set pinned to its type's one algorithm,
// iss, aud (one of the configured audiences), iat within a window, exp
// if present, jti present, the events claim naming the back-channel
// logout event with an object value, no nonce, and a sid or a sub. Only
// then does it ask the Replay guard whether the jti was seen, so forged
// tokens never fill it.
//
// The key set comes from the configured jwks_uri or from the issuer's
// discovery document (<issuer>/.well-known/openid-configuration), over
// HTTPS (plain HTTP only to a loopback address), within a timeout, cached
// per Cache-Control, and fetched again for an unknown kid at most once per
// RefetchInterval. When the IdP cannot be asked the error wraps
// ErrUnreachable: the caller answers 503 so the IdP retries, never 400.
package backchannel

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// LogoutEvent is the member the events claim must hold.
const LogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Defaults for the zero values of Config.
const (
	DefaultTimeout = 5 * time.Second
	DefaultMaxAge  = 5 * time.Minute
	DefaultLeeway  = time.Minute
	// MaxTokenLen bounds the token read from the request.
	MaxTokenLen = 16 << 10
)

// ErrUnreachable wraps errors that mean the IdP's keys could not be
// fetched: the token could not be judged.
var ErrUnreachable = errors.New("identity provider unreachable")

// Reason names why a token was refused, for a log line and a metric
// label. It never holds any part of the token.
type Reason string

// The refusal reasons.
const (
	ReasonMalformed Reason = "malformed" // not a compact JWS with JSON header and claims
	ReasonType      Reason = "typ"       // typ is not JWT or logout+jwt, or crit is present
	ReasonAlg       Reason = "alg"       // alg is none, HMAC or otherwise unsupported
	ReasonKey       Reason = "key"       // no key of the IdP fits kid and alg
	ReasonSignature Reason = "signature" // the signature does not verify
	ReasonIssuer    Reason = "iss"       // iss is not the configured issuer
	ReasonAudience  Reason = "aud"       // aud holds none of the configured audiences
	ReasonIssuedAt  Reason = "iat"       // iat missing, in the future or too old
	ReasonExpired   Reason = "exp"       // exp present and past
	ReasonJTI       Reason = "jti"       // jti missing or empty
	ReasonEvents    Reason = "events"    // events missing the back-channel logout event
	ReasonNonce     Reason = "nonce"     // a nonce is present
	ReasonSubject   Reason = "sid_sub"   // neither sid nor sub
	ReasonReplay    Reason = "replay"    // jti already used while valid
)

// RefusedError is returned for a token that is not a valid logout token.
type RefusedError struct {
	Reason Reason
	Detail string // a few words, never token content beyond claim names
}

func (e *RefusedError) Error() string {
	if e.Detail == "" {
		return "logout token refused: " + string(e.Reason)
	}
	return "logout token refused: " + string(e.Reason) + ": " + e.Detail
}

func refuse(r Reason, format string, args ...any) error {
	return &RefusedError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the refusal reason of err, or "" when err is not a
// refusal.
func ReasonOf(err error) Reason {
	var r *RefusedError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Replay remembers the ids of tokens already used. store/memstore and
// store/mongostore implement it (store.ReplayGuard).
type Replay interface {
	// FirstUse records id until `until` and reports whether it was not
	// already recorded and live at now. An error means it cannot tell:
	// the caller fails closed.
	FirstUse(ctx context.Context, id string, until, now time.Time) (bool, error)
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the IdP's issuer identifier; iss must equal it.
	Issuer string
	// Audiences are the client ids; aud must contain one of them.
	Audiences []string
	// JWKSURI, when set, is where the keys are fetched, skipping discovery.
	JWKSURI string
	// Replay refuses a jti used before. Required.
	Replay Replay
	// Timeout bounds each fetch from the IdP. Default DefaultTimeout.
	Timeout time.Duration
	// MaxAge is how old iat may be. Default DefaultMaxAge.
	MaxAge time.Duration
	// Leeway is how far in the future iat may be, and how long past exp
	// a token is still taken (clock skew). Default DefaultLeeway.
	Leeway time.Duration
	// Transport is the HTTP transport for the IdP. Default
	// http.DefaultTransport (tests hand one trusting their TLS server).
	Transport http.RoundTripper
}

// Validate checks the configuration without network access.
func (c Config) Validate() error {
	if err := CheckURL(c.Issuer); err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if c.JWKSURI != "" {
		if err := CheckURL(c.JWKSURI); err != nil {
			return fmt.Errorf("jwks_uri: %w", err)
		}
	}
	if len(c.Audiences) == 0 {
		return errors.New("at least one audience is required")
	}
	for _, a := range c.Audiences {
		if a == "" {
			return errors.New("an audience must not be empty")
		}
	}
	if c.Timeout < 0 || c.MaxAge < 0 || c.Leeway < 0 {
		return errors.New("timeout, max age and leeway must not be negative")
	}
	return nil
}

// Verifier checks logout tokens of one IdP. It is safe for concurrent use.
type Verifier struct {
	cfg  Config
	keys *keySource
}

// New returns a Verifier for cfg. It does not contact the IdP: keys are
// fetched by the first Verify.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replay == nil {
		return nil, errors.New("a replay guard is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	client := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return CheckURL(req.URL.String())
		},
	}
	return &Verifier{cfg: cfg, keys: &keySource{client: client, issuer: cfg.Issuer, jwksURI: cfg.JWKSURI}}, nil
}

// Claims are the claims of a verified logout token that say which
// sessions end.
type Claims struct {
	Issuer   string
	Subject  string // "" when absent
	Sid      string // "" when absent
	JTI      string
	IssuedAt time.Time
	Expires  time.Time // zero when absent
}

// header is the JOSE header this package reads.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks token at now and returns its claims. A refusal is a
// *RefusedError; an error wrapping ErrUnreachable means the keys could not
// be fetched; any other error comes from the Replay guard.
func (v *Verifier) Verify(ctx context.Context, token string, now time.Time) (*Claims, error) {
	signed, claimsJSON, sig, h, err := split(token)
	if err != nil {
		return nil, err
	}
	if err := v.checkSignature(ctx, signed, sig, h, now); err != nil {
		return nil, err
	}
	c, until, err := v.checkClaims(claimsJSON, now)
	if err != nil {
		return nil, err
	}
	fresh, err := v.cfg.Replay.FirstUse(ctx, ReplayID(c.Issuer, c.JTI), until, now)
	if err != nil {
		return nil, fmt.Errorf("replay guard: %w", err)
	}
	if !fresh {
		return nil, refuse(ReasonReplay, "jti already used")
	}
	return c, nil
}

// ReplayID is the id a token's jti is remembered under: the hex SHA-256
// of the issuer and the jti, so the store holds no token content.
func ReplayID(iss, jti string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + jti))
	return hex.EncodeToString(sum[:])
}

// split parses the compact JWS and its header.
func split(token string) (signed []byte, claims []byte, sig []byte, h header, err error) {
	if len(token) > MaxTokenLen {
		return nil, nil, nil, h, refuse(ReasonMalformed, "over %d bytes", MaxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) == 5 {
		return nil, nil, nil, h, refuse(ReasonMalformed, "encrypted tokens (JWE) are not supported")
	}
	if len(parts) != 3 {
		return nil, nil, nil, h, refuse(ReasonMalformed, "not three dot-separated parts")
	}
	hb, err1 := b64(parts[0])
	cb, err2 := b64(parts[1])
	sig, err3 := b64(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, nil, nil, h, refuse(ReasonMalformed, "a part is not base64url")
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, nil, nil, h, refuse(ReasonMalformed, "header is not a JSON object")
	}
	if h.Crit != nil {
		return nil, nil, nil, h, refuse(ReasonType, "crit header present")
	}
	switch strings.ToLower(h.Typ) {
	case "", "jwt", "logout+jwt", "application/logout+jwt":
	default:
		return nil, nil, nil, h, refuse(ReasonType, "typ %q", h.Typ)
	}
	return []byte(parts[0] + "." + parts[1]), cb, sig, h, nil
}

// checkSignature verifies sig over signed with a key of the IdP pinned
// to h.Alg.
func (v *Verifier) checkSignature(ctx context.Context, signed, sig []byte, h header, now time.Time) error {
	switch h.Alg {
	case "RS256", "ES256", "EdDSA":
	default:
		return refuse(ReasonAlg, "alg %q is not RS256, ES256 or EdDSA", h.Alg)
	}
	keys, err := v.keys.lookup(ctx, h.Kid, h.Alg, now)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return refuse(ReasonKey, "no %s key with kid %q", h.Alg, h.Kid)
	}
	for _, k := range keys {
		if verifySig(k, signed, sig) {
			return nil
		}
	}
	return refuse(ReasonSignature, "does not verify with the IdP's %s key", h.Alg)
}

// verifySig checks one signature with k's one algorithm.
func verifySig(k key, signed, sig []byte) bool {
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		sum := sha256.Sum256(signed)
		return k.alg == "RS256" && rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
	case *ecdsa.PublicKey:
		if k.alg != "ES256" || len(sig) != 64 {
			return false
		}
		sum := sha256.Sum256(signed)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, sum[:], r, s)
	case ed25519.PublicKey:
		return k.alg == "EdDSA" && ed25519.Verify(pub, signed, sig)
	}
	return false
}

// claimSet is the claims this package reads. aud is a string or an
// array; iat and exp are NumericDates.
type claimSet struct {
	Iss    *string                    `json:"iss"`
	Sub    *string                    `json:"sub"`
	Aud    json.RawMessage            `json:"aud"`
	Iat    *json.Number               `json:"iat"`
	Exp    *json.Number               `json:"exp"`
	JTI    *string                    `json:"jti"`
	Sid    *string                    `json:"sid"`
	Events map[string]json.RawMessage `json:"events"`
	Nonce  json.RawMessage            `json:"nonce"`
}

// checkClaims checks the claims at now and returns them with the instant
// until which the jti must be remembered.
func (v *Verifier) checkClaims(raw []byte, now time.Time) (*Claims, time.Time, error) {
	var cs claimSet
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&cs); err != nil {
		return nil, time.Time{}, refuse(ReasonMalformed, "claims are not a JSON object of the expected types")
	}
	if cs.Iss == nil || *cs.Iss != v.cfg.Issuer {
		return nil, time.Time{}, refuse(ReasonIssuer, "not the configured issuer")
	}
	if !v.audienceOK(cs.Aud) {
		return nil, time.Time{}, refuse(ReasonAudience, "none of the configured audiences")
	}
	iat, ok := numericDate(cs.Iat)
	if !ok || iat.After(now.Add(v.cfg.Leeway)) || iat.Before(now.Add(-v.cfg.MaxAge)) {
		return nil, time.Time{}, refuse(ReasonIssuedAt, "missing or outside [now-%v, now+%v]", v.cfg.MaxAge, v.cfg.Leeway)
	}
	until := iat.Add(v.cfg.MaxAge)
	var exp time.Time
	if cs.Exp != nil {
		if exp, ok = numericDate(cs.Exp); !ok || !now.Before(exp.Add(v.cfg.Leeway)) {
			return nil, time.Time{}, refuse(ReasonExpired, "expired or not a number")
		}
		until = later(until, exp.Add(v.cfg.Leeway))
	}
	if cs.JTI == nil || *cs.JTI == "" {
		return nil, time.Time{}, refuse(ReasonJTI, "missing")
	}
	if ev, ok := cs.Events[LogoutEvent]; !ok || !isObject(ev) {
		return nil, time.Time{}, refuse(ReasonEvents, "no %s member with an object value", LogoutEvent)
	}
	if cs.Nonce != nil {
		return nil, time.Time{}, refuse(ReasonNonce, "a logout token must not carry a nonce")
	}
	c := &Claims{Issuer: *cs.Iss, JTI: *cs.JTI, IssuedAt: iat, Expires: exp}
	if cs.Sub != nil {
		c.Subject = *cs.Sub
	}
	if cs.Sid != nil {
		c.Sid = *cs.Sid
	}
	if c.Subject == "" && c.Sid == "" {
		return nil, time.Time{}, refuse(ReasonSubject, "neither sid nor sub")
	}
	return c, until, nil
}

// audienceOK reports whether aud (a string or an array of strings) holds
// one of the configured audiences.
func (v *Verifier) audienceOK(aud json.RawMessage) bool {
	var list []string
	var one string
	if json.Unmarshal(aud, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(aud, &list) != nil {
		return false
	}
	for _, a := range list {
		for _, want := range v.cfg.Audiences {
			if a == want {
				return true
			}
		}
	}
	return false
}

// numericDate reads a JSON NumericDate (seconds, fraction allowed).
func numericDate(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	var m map[string]json.RawMessage
	return len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &m) == nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
