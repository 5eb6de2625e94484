package backchannel_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/backchannel"
	"github.com/sessiongate/caddy-session/internal/idptest"
	"github.com/sessiongate/caddy-session/store/memstore"
)

func newVerifier(t *testing.T, idp *idptest.IdP, edit func(*backchannel.Config)) *backchannel.Verifier {
	t.Helper()
	replay := memstore.New(memstore.Options{SweepInterval: -1})
	t.Cleanup(func() { replay.Close() })
	cfg := backchannel.Config{Issuer: idp.Issuer, Audiences: []string{"other-client", idp.ClientID}, Replay: replay, Timeout: 2 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	v, err := backchannel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func verify(t *testing.T, v *backchannel.Verifier, token string) (*backchannel.Claims, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return v.Verify(ctx, token, time.Now())
}

func TestVerifyAccepts(t *testing.T) {
	idp := idptest.New(t, idptest.RS256, idptest.ES256, idptest.EdDSA)
	v := newVerifier(t, idp, nil)
	for _, alg := range []idptest.Alg{idptest.RS256, idptest.ES256, idptest.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			c, err := verify(t, v, idp.LogoutToken(t, alg, "sid-1", "alice"))
			if err != nil {
				t.Fatalf("a valid %s logout token was refused: %v", alg, err)
			}
			if c.Sid != "sid-1" || c.Subject != "alice" || c.Issuer != idp.Issuer {
				t.Fatalf("claims %+v", c)
			}
		})
	}
	// sid alone, sub alone, aud as an array, no typ, no exp, no kid.
	k := idp.Key(t, idptest.ES256)
	for name, tok := range map[string]string{
		"sid only":  idp.LogoutToken(t, idptest.ES256, "sid-2", ""),
		"sub only":  idp.LogoutToken(t, idptest.ES256, "", "bob"),
		"aud array": k.Sign(t, nil, with(idp.Claims("s", ""), "aud", []string{"x", idp.ClientID})),
		"no typ":    k.Sign(t, map[string]any{"typ": nil}, idp.Claims("s", "")),
		"typ JWT":   k.Sign(t, map[string]any{"typ": "JWT"}, idp.Claims("s", "")),
		"no exp":    k.Sign(t, nil, without(idp.Claims("s", ""), "exp")),
		"no kid":    k.Sign(t, map[string]any{"kid": nil}, idp.Claims("s", "")),
		"extra":     k.Sign(t, nil, with(idp.Claims("s", ""), "whatever", 1)),
	} {
		if _, err := verify(t, v, tok); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
	if n := idp.DiscoveryHits.Load(); n != 1 {
		t.Errorf("discovery fetched %d times, want 1 (cached)", n)
	}
}

func with(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

func without(c map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		delete(c, k)
	}
	return c
}

// TestVerifyRefuses has one case per refusal reason. Each token is valid
// but for the one thing named, so removing that check makes its case
// accept the token and fail.
func TestVerifyRefuses(t *testing.T) {
	idp := idptest.New(t, idptest.RS256, idptest.ES256, idptest.EdDSA)
	v := newVerifier(t, idp, nil)
	rsa, ec := idp.Key(t, idptest.RS256), idp.Key(t, idptest.ES256)
	claims := func() map[string]any { return idp.Claims("sid-x", "alice") }
	now := time.Now()
	stranger := idptest.NewKey(t, idptest.RS256)
	stranger.Kid = rsa.Kid // same kid, key unknown to the IdP

	cases := []struct {
		name   string
		token  string
		want   backchannel.Reason
		detail string // when several checks give the reason: the one meant
	}{
		{"not a JWS", "abc.def", backchannel.ReasonMalformed, "three"},
		{"JWE", "a.b.c.d.e", backchannel.ReasonMalformed, "JWE"},
		{"bad base64", "a*.b.c", backchannel.ReasonMalformed, "base64"},
		{"too long", strings.Repeat("a", backchannel.MaxTokenLen) + ".b.c", backchannel.ReasonMalformed, "bytes"},
		{"claims of the wrong type", rawToken(t, `{"iss":1}`, rsa), backchannel.ReasonMalformed, ""},
		{"claims not JSON", rawToken(t, "not json", rsa), backchannel.ReasonMalformed, ""},
		{"typ of an access token", rsa.Sign(t, map[string]any{"typ": "at+jwt"}, claims()), backchannel.ReasonType, ""},
		{"crit", rsa.Sign(t, map[string]any{"crit": []string{"exp"}}, claims()), backchannel.ReasonType, ""},
		{"alg none", unsigned(t, claims()), backchannel.ReasonAlg, ""},
		{"alg HS256 keyed with the public key", hmacToken(t, rsa, claims()), backchannel.ReasonAlg, ""},
		{"alg RS512", rsa.Sign(t, map[string]any{"alg": "RS512"}, claims()), backchannel.ReasonAlg, ""},
		{"alg does not fit the key (ES256 header, RSA kid)", ec.Sign(t, map[string]any{"kid": rsa.Kid}, claims()), backchannel.ReasonKey, ""},
		{"unknown kid", rsa.Sign(t, map[string]any{"kid": "nobody"}, claims()), backchannel.ReasonKey, ""},
		{"signed by another key", stranger.Sign(t, nil, claims()), backchannel.ReasonSignature, ""},
		{"tampered claims", tamper(t, rsa.Sign(t, nil, claims())), backchannel.ReasonSignature, ""},
		{"wrong iss", rsa.Sign(t, nil, with(claims(), "iss", "https://evil.example")), backchannel.ReasonIssuer, ""},
		{"no iss", rsa.Sign(t, nil, without(claims(), "iss")), backchannel.ReasonIssuer, ""},
		{"wrong aud", rsa.Sign(t, nil, with(claims(), "aud", "someone-else")), backchannel.ReasonAudience, ""},
		{"no aud", rsa.Sign(t, nil, without(claims(), "aud")), backchannel.ReasonAudience, ""},
		{"no iat", rsa.Sign(t, nil, without(claims(), "iat")), backchannel.ReasonIssuedAt, ""},
		{"iat in the future", rsa.Sign(t, nil, with(claims(), "iat", now.Add(10*time.Minute).Unix())), backchannel.ReasonIssuedAt, ""},
		{"iat too old", rsa.Sign(t, nil, with(with(claims(), "iat", now.Add(-time.Hour).Unix()), "exp", now.Add(time.Hour).Unix())), backchannel.ReasonIssuedAt, ""},
		{"expired", rsa.Sign(t, nil, with(claims(), "exp", now.Add(-2*time.Minute).Unix())), backchannel.ReasonExpired, ""},
		{"no jti", rsa.Sign(t, nil, without(claims(), "jti")), backchannel.ReasonJTI, ""},
		{"empty jti", rsa.Sign(t, nil, with(claims(), "jti", "")), backchannel.ReasonJTI, ""},
		{"no events", rsa.Sign(t, nil, without(claims(), "events")), backchannel.ReasonEvents, ""},
		{"another event", rsa.Sign(t, nil, with(claims(), "events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}})), backchannel.ReasonEvents, ""},
		{"event not an object", rsa.Sign(t, nil, with(claims(), "events", map[string]any{backchannel.LogoutEvent: "yes"})), backchannel.ReasonEvents, ""},
		{"nonce", rsa.Sign(t, nil, with(claims(), "nonce", "n-0S6_WzA2Mj")), backchannel.ReasonNonce, ""},
		{"neither sid nor sub", rsa.Sign(t, nil, without(claims(), "sid", "sub")), backchannel.ReasonSubject, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := verify(t, v, c.token)
			if got := backchannel.ReasonOf(err); got != c.want {
				t.Fatalf("reason %q (err %v), want %q", got, err, c.want)
			}
			if !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("error %q does not say %q", err, c.detail)
			}
			if strings.Contains(err.Error(), c.token) {
				t.Fatalf("the error holds the token: %v", err)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	idp := idptest.New(t, idptest.ES256)
	v := newVerifier(t, idp, nil)
	tok := idp.LogoutToken(t, idptest.ES256, "sid-r", "")
	if _, err := verify(t, v, tok); err != nil {
		t.Fatal(err)
	}
	_, err := verify(t, v, tok)
	if backchannel.ReasonOf(err) != backchannel.ReasonReplay {
		t.Fatalf("a replayed token: %v, want a replay refusal", err)
	}
	// The same jti signed again is the same token id.
	c := idp.Claims("sid-r", "")
	c["jti"] = "fixed"
	if _, err := verify(t, v, idp.Key(t, idptest.ES256).Sign(t, nil, c)); err != nil {
		t.Fatal(err)
	}
	c["iat"] = time.Now().Unix() - 1
	if _, err := verify(t, v, idp.Key(t, idptest.ES256).Sign(t, nil, c)); backchannel.ReasonOf(err) != backchannel.ReasonReplay {
		t.Fatalf("a new token with a used jti: %v", err)
	}
	// A forged token never reaches the replay guard: its jti stays free.
	c2 := idp.Claims("sid-r", "")
	c2["jti"] = "forged-first"
	if _, err := verify(t, v, idptest.NewKey(t, idptest.ES256).Sign(t, map[string]any{"kid": idp.Key(t, idptest.ES256).Kid}, c2)); backchannel.ReasonOf(err) != backchannel.ReasonSignature {
		t.Fatalf("forged: %v", err)
	}
	if _, err := verify(t, v, idp.Key(t, idptest.ES256).Sign(t, nil, c2)); err != nil {
		t.Fatalf("a forged token used up a jti: %v", err)
	}
}

// TestVerifyKeyRotation: the IdP replaces its key; a token with the new
// kid makes the verifier fetch the set again (once), old tokens no longer
// verify, and unknown kids do not refetch more than once a minute.
func TestVerifyKeyRotation(t *testing.T) {
	idp := idptest.New(t, idptest.RS256)
	v := newVerifier(t, idp, nil)
	old := idp.Key(t, idptest.RS256)
	if _, err := verify(t, v, idp.LogoutToken(t, idptest.RS256, "a", "")); err != nil {
		t.Fatal(err)
	}
	idp.Rotate(t, idptest.RS256)
	before := idp.JWKSHits.Load()
	newTok := idp.LogoutToken(t, idptest.RS256, "b", "")
	// Within a minute of the last fetch the new kid is unknown: no fetch.
	if _, err := verify(t, v, newTok); backchannel.ReasonOf(err) != backchannel.ReasonKey {
		t.Fatalf("a new kid within a minute of the last fetch: %v, want a key refusal", err)
	}
	if got := idp.JWKSHits.Load() - before; got != 0 {
		t.Fatalf("the key set was fetched %d times within a minute", got)
	}
	later := time.Now().Add(backchannel.RefetchInterval + time.Second)
	at := func(tok string) error {
		_, err := v.Verify(context.Background(), tok, later)
		return err
	}
	if err := at(newTok); err != nil {
		t.Fatalf("a token signed with the rotated-in key: %v", err)
	}
	if got := idp.JWKSHits.Load() - before; got != 1 {
		t.Fatalf("the key set was fetched %d times for the new kid, want 1", got)
	}
	if err := at(old.Sign(t, nil, idp.Claims("c", ""))); backchannel.ReasonOf(err) != backchannel.ReasonKey {
		t.Fatalf("a token of the retired key: %v, want a key refusal", err)
	}
	for range 5 {
		at(old.Sign(t, map[string]any{"kid": "forged-kid"}, idp.Claims("c", "")))
	}
	if got := idp.JWKSHits.Load() - before; got != 1 {
		t.Fatalf("unknown kids made %d fetches within a minute, want 1 in all", got)
	}
}

func TestVerifyCacheControl(t *testing.T) {
	idp := idptest.New(t, idptest.ES256)
	idp.SetCacheControl("max-age=60")
	v := newVerifier(t, idp, nil)
	ctx := context.Background()
	now := time.Now()
	tok := func(at time.Time) string {
		c := idp.Claims("s", "")
		c["iat"], c["exp"] = at.Unix(), at.Add(time.Minute).Unix()
		return idp.Key(t, idptest.ES256).Sign(t, nil, c)
	}
	if _, err := v.Verify(ctx, tok(now), now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok(now.Add(30*time.Second)), now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := idp.JWKSHits.Load(); n != 1 {
		t.Fatalf("%d fetches within max-age, want 1", n)
	}
	if _, err := v.Verify(ctx, tok(now.Add(61*time.Second)), now.Add(61*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := idp.JWKSHits.Load(); n != 2 {
		t.Fatalf("%d fetches after max-age passed, want 2", n)
	}
}

func TestVerifyUnreachable(t *testing.T) {
	idp := idptest.New(t, idptest.RS256)
	tok := idp.LogoutToken(t, idptest.RS256, "s", "")
	t.Run("answers 503", func(t *testing.T) {
		v := newVerifier(t, idp, nil)
		idp.SetDown(true)
		defer idp.SetDown(false)
		_, err := verify(t, v, tok)
		if !errors.Is(err, backchannel.ErrUnreachable) || backchannel.ReasonOf(err) != "" {
			t.Fatalf("IdP down: %v, want ErrUnreachable and no refusal", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		v := newVerifier(t, idp, nil)
		idp.Close()
		_, err := verify(t, v, tok)
		if !errors.Is(err, backchannel.ErrUnreachable) {
			t.Fatalf("IdP gone: %v, want ErrUnreachable", err)
		}
		if strings.Contains(err.Error(), tok) {
			t.Fatal("the error holds the token")
		}
	})
}

// TestVerifyHTTPS fetches discovery and keys from an IdP over HTTPS, and
// refuses the same IdP's certificate when the transport does not trust it.
func TestVerifyHTTPS(t *testing.T) {
	idp := idptest.NewTLS(t, idptest.ES256)
	if !strings.HasPrefix(idp.Issuer, "https://") {
		t.Fatalf("issuer %s", idp.Issuer)
	}
	v := newVerifier(t, idp, func(c *backchannel.Config) { c.Transport = idp.Transport() })
	if _, err := verify(t, v, idp.LogoutToken(t, idptest.ES256, "s", "")); err != nil {
		t.Fatalf("over HTTPS: %v", err)
	}
	untrusting := newVerifier(t, idp, nil)
	if _, err := verify(t, untrusting, idp.LogoutToken(t, idptest.ES256, "s", "")); !errors.Is(err, backchannel.ErrUnreachable) {
		t.Fatalf("an untrusted certificate: %v, want ErrUnreachable", err)
	}
}

// TestVerifyTimeout: an IdP that does not answer within the timeout is
// unreachable (503), the call does not hang.
func TestVerifyTimeout(t *testing.T) {
	idp := idptest.New(t, idptest.ES256)
	idp.SetStall(3 * time.Second)
	v := newVerifier(t, idp, func(c *backchannel.Config) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := verify(t, v, idp.LogoutToken(t, idptest.ES256, "s", ""))
	if !errors.Is(err, backchannel.ErrUnreachable) || time.Since(start) > 2*time.Second {
		t.Fatalf("a stalled IdP: %v after %v, want ErrUnreachable within the timeout", err, time.Since(start))
	}
	idp.SetStall(0)
}

func TestVerifyExplicitJWKSURI(t *testing.T) {
	idp := idptest.New(t, idptest.EdDSA)
	v := newVerifier(t, idp, func(c *backchannel.Config) { c.JWKSURI = idp.JWKSURI() })
	if _, err := verify(t, v, idp.LogoutToken(t, idptest.EdDSA, "s", "")); err != nil {
		t.Fatal(err)
	}
	if n := idp.DiscoveryHits.Load(); n != 0 {
		t.Fatalf("discovery was fetched %d times with jwks_uri set", n)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := backchannel.Config{Issuer: "https://idp.example", Audiences: []string{"c"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]backchannel.Config{
		"http issuer":     {Issuer: "http://idp.example", Audiences: []string{"c"}},
		"no audience":     {Issuer: "https://idp.example"},
		"empty audience":  {Issuer: "https://idp.example", Audiences: []string{""}},
		"http jwks":       {Issuer: "https://idp.example", Audiences: []string{"c"}, JWKSURI: "http://keys.example/jwks"},
		"relative issuer": {Issuer: "/idp", Audiences: []string{"c"}},
		"user info":       {Issuer: "https://u:p@idp.example", Audiences: []string{"c"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, u := range []string{"http://127.0.0.1:1/x", "http://[::1]:1/x", "http://localhost:8080/"} {
		if err := backchannel.CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jsonPart(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// rawToken signs arbitrary claim bytes with k.
func rawToken(t *testing.T, claims string, k *idptest.Key) string {
	return k.SignRaw(t, map[string]any{"alg": string(k.Alg), "kid": k.Kid}, []byte(claims))
}

func unsigned(t *testing.T, claims map[string]any) string {
	return jsonPart(t, map[string]any{"alg": "none", "typ": "logout+jwt"}) + "." + jsonPart(t, claims) + "."
}

// hmacToken is the classic confusion attack: HS256 keyed with the bytes
// of the IdP's public key.
func hmacToken(t *testing.T, k *idptest.Key, claims map[string]any) string {
	jwk, _ := json.Marshal(k.JWK())
	signed := jsonPart(t, map[string]any{"alg": "HS256", "kid": k.Kid}) + "." + jsonPart(t, claims)
	m := hmac.New(sha256.New, jwk)
	m.Write([]byte(signed))
	return signed + "." + b64(m.Sum(nil))
}

func tamper(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	c, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	json.Unmarshal(c, &m)
	m["sid"] = "someone-else"
	parts[1] = jsonPart(t, m)
	return strings.Join(parts, ".")
}
