package caddymodule

// The signed assertion through a real Caddy: a real upstream reports what
// it received, and the test verifies it the way an app would, with the
// keys session_jwks serves (fetched again on an unknown kid).

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/internal/assertion"
)

// assertUpstream reports the X-Session and X-Session-Assertion values it
// received (every copy), and answers ?update= with X-Session-Update.
func assertUpstream(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // trailers arrive with the body
		if u := r.URL.Query().Get("update"); u != "" {
			w.Header().Set("X-Session-Update", u)
		}
		var assertions []string
		for name, vs := range r.Header {
			if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Session-Assertion") {
				assertions = append(assertions, vs...)
			}
		}
		for name, vs := range r.Trailer {
			if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Session-Assertion") {
				assertions = append(assertions, vs...)
			}
		}
		_ = json.NewEncoder(w).Encode(seenUpstream{Session: r.Header.Values("X-Session"), Assertions: assertions})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// seenUpstream is what assertUpstream reports.
type seenUpstream struct {
	Session    []string `json:"session"`
	Assertions []string `json:"assertions"`
}

func (g *gateway) seen(req *http.Request) seenUpstream {
	g.t.Helper()
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seenUpstream
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&s) != nil {
		g.t.Fatalf("%s %s: status %d", req.Method, req.URL, resp.StatusCode)
	}
	return s
}

func (g *gateway) seenGet(path string) seenUpstream {
	g.t.Helper()
	resp, err := getAcrossReload(g.client, g.base+path)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seenUpstream
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&s) != nil {
		g.t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return s
}

// getAcrossReload sends a GET on a new connection, again if the
// connection closes: right after a reload the old server, closing, can
// still accept it.
func getAcrossReload(c *http.Client, url string) (*http.Response, error) {
	for i := 0; ; i++ {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Close = true
		resp, err := c.Do(req)
		if err == nil || i == 20 {
			return resp, err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// one returns the request's single X-Session and assertion.
func (s seenUpstream) one(t testing.TB) (data, token string) {
	t.Helper()
	if len(s.Session) != 1 || len(s.Assertions) != 1 {
		t.Fatalf("upstream got %d X-Session and %d assertions, want one each: %+v", len(s.Session), len(s.Assertions), s)
	}
	return s.Session[0], s.Assertions[0]
}

// keyFile writes a new key's PEM into a file and returns the signer and
// the path; pub also writes its public key.
func keyFile(t testing.TB, s *assertion.Signer) (priv, pub string) {
	t.Helper()
	dir := t.TempDir()
	privPEM, err := s.PrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := s.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// appVerifier checks assertions as an upstream app does: keys from the
// JWKS URL, fetched again on an unknown kid; alg pinned to the key type.
type appVerifier struct {
	t        testing.TB
	url      string
	audience string
	keys     map[string]assertion.JWK
	fetches  int
}

func (v *appVerifier) fetch() {
	v.t.Helper()
	resp, err := getAcrossReload(http.DefaultClient, v.url)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	var set assertion.Set
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&set) != nil {
		v.t.Fatalf("JWKS %s: status %d", v.url, resp.StatusCode)
	}
	v.keys = map[string]assertion.JWK{}
	for _, k := range set.Keys {
		v.keys[k.Kid] = k
	}
	v.fetches++
}

var b64url = base64.RawURLEncoding

// verify returns the claims of token, or an error saying why it does not
// verify for the X-Session value data.
func (v *appVerifier) verify(token, data string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d parts", len(parts))
	}
	var header struct{ Alg, Kid string }
	if err := decodePart(parts[0], &header); err != nil {
		return nil, err
	}
	k, ok := v.keys[header.Kid]
	if !ok {
		v.fetch()
		if k, ok = v.keys[header.Kid]; !ok {
			return nil, fmt.Errorf("unknown kid %s", header.Kid)
		}
	}
	if header.Alg != k.Alg || assertion.Thumbprint(k) != k.Kid {
		return nil, fmt.Errorf("alg %s with a %s key %s", header.Alg, k.Alg, k.Kid)
	}
	sig, err := b64url.DecodeString(parts[2])
	if err != nil || !verifyJWK(k, parts[0]+"."+parts[1], sig) {
		return nil, fmt.Errorf("bad signature")
	}
	var c map[string]any
	if err := decodePart(parts[1], &c); err != nil {
		return nil, err
	}
	now := float64(clock().Unix()) // the handlers' clock, which skew moves
	switch {
	case c["iss"] != "caddy-session":
		return nil, fmt.Errorf("iss %v", c["iss"])
	case c["aud"] != v.audience:
		return nil, fmt.Errorf("aud %v, want %s", c["aud"], v.audience)
	case c["exp"].(float64) < now || c["iat"].(float64) > now+1:
		return nil, fmt.Errorf("outside iat %v .. exp %v", c["iat"], c["exp"])
	case c["sdh"] != assertion.DataHash(data):
		return nil, fmt.Errorf("sdh %v is not the hash of %q", c["sdh"], data)
	}
	return c, nil
}

func decodePart(s string, v any) error {
	raw, err := b64url.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

func verifyJWK(k assertion.JWK, input string, sig []byte) bool {
	x, _ := b64url.DecodeString(k.X)
	switch k.Alg {
	case assertion.AlgEdDSA:
		return len(x) == ed25519.PublicKeySize && ed25519.Verify(ed25519.PublicKey(x), []byte(input), sig)
	case assertion.AlgES256:
		y, _ := b64url.DecodeString(k.Y)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil || len(sig) != 64 {
			return false
		}
		d := sha256.Sum256([]byte(input))
		return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	return false
}

// assertionSite is a session block with an assertion, and the key set
// at /jwks.
func assertionSite(keyLines string) string {
	return "\tsession /app* {\n\t\tsecret " + testSecret + "\n\t\tassertion {\n" + keyLines + "\n\t\t}\n\t}\n\tsession_jwks /jwks\n"
}

// TestAssertionThroughCaddy: the upstream receives a valid assertion with
// and without a session; its sdh is the hash of the X-Session it got;
// requests the matcher does not select carry none.
func TestAssertionThroughCaddy(t *testing.T) {
	for _, s := range []*assertion.Signer{assertion.GenerateEd25519(), newP256Signer(t)} {
		t.Run(s.Alg(), func(t *testing.T) {
			priv, _ := keyFile(t, s)
			g := startGateway(t, globalOptions(t), assertionSite("\t\t\tkey "+priv+"\n\t\t\taudience https://app.example"), assertUpstream(t))
			v := &appVerifier{t: t, url: g.base + "/jwks", audience: "https://app.example"}

			data, token := g.seenGet("/app/").one(t)
			c, err := v.verify(token, data)
			if err != nil {
				t.Fatalf("without a session: %v", err)
			}
			if _, ok := c["sid"]; ok || c["new"] != true || data != "{}" {
				t.Fatalf("without a session: claims %v, X-Session %s", c, data)
			}

			g.seenGet(`/app/login?update={"user":{"id":"u7"}}`)
			data, token = g.seenGet("/app/").one(t)
			if c, err = v.verify(token, data); err != nil {
				t.Fatalf("with a session: %v", err)
			}
			handle := g.sessionCookie(DefaultCookieName)
			if c["sid"] == nil || len(c["sid"].(string)) != 12 || c["new"] != false || c["sub"] != nil || data != `{"user":{"id":"u7"}}` || handle == "" {
				t.Fatalf("with a session: claims %v, X-Session %s", c, data)
			}
			// The set holds the signing key, once.
			if len(v.keys) != 1 || v.keys[s.Kid()].Alg != s.Alg() {
				t.Fatalf("JWKS %v", v.keys)
			}

			// Not selected by the matcher: no X-Session, no assertion.
			if got := g.seenGet("/other"); len(got.Session) != 0 || len(got.Assertions) != 0 {
				t.Fatalf("unmatched request: %+v", got)
			}
		})
	}
}

func newP256Signer(t testing.TB) *assertion.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := assertion.NewP256(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAssertionClientCopiesStripped: a client's X-Session-Assertion, in
// any case, with underscores or as a trailer, never reaches the upstream;
// the one it gets is the gateway's.
func TestAssertionClientCopiesStripped(t *testing.T) {
	priv, _ := keyFile(t, assertion.GenerateEd25519())
	g := startGateway(t, globalOptions(t), assertionSite("\t\t\tkey "+priv+"\n\t\t\taudience https://app.example"), assertUpstream(t))
	v := &appVerifier{t: t, url: g.base + "/jwks", audience: "https://app.example"}
	forged := "eyJhbGciOiJub25lIn0.eyJzZGgiOiJ4In0."
	for _, path := range []string{"/app/", "/other"} {
		req, _ := http.NewRequest(http.MethodPost, g.base+path, strings.NewReader("body"))
		req.Header["X-Session-Assertion"] = []string{forged}
		req.Header["x-session-assertion"] = []string{forged}
		req.Header["X_Session_Assertion"] = []string{forged}
		req.Header["X-SESSION_assertion"] = []string{forged}
		req.Header.Set("Origin", g.base)
		req.Trailer = http.Header{"X-Session-Assertion": {forged}}
		req.ContentLength = -1 // chunked, so the trailer is sent
		got := g.seen(req)
		for _, a := range got.Assertions {
			if a == forged {
				t.Fatalf("%s: a client copy reached the upstream: %+v", path, got)
			}
		}
		if path == "/other" {
			if len(got.Assertions) != 0 {
				t.Fatalf("unmatched request got an assertion: %+v", got)
			}
			continue
		}
		data, token := got.one(t)
		if _, err := v.verify(token, data); err != nil {
			t.Fatalf("the gateway's assertion: %v", err)
		}
	}
}

// TestAssertionReuse: an unchanged session's assertion is reused until
// half its ttl has passed; a change of the session signs a new one, whose
// sdh follows the new X-Session.
func TestAssertionReuse(t *testing.T) {
	priv, _ := keyFile(t, assertion.GenerateEd25519())
	g := startGateway(t, globalOptions(t), assertionSite("\t\t\tkey "+priv+"\n\t\t\taudience https://app.example\n\t\t\tttl 40s"), assertUpstream(t))
	v := &appVerifier{t: t, url: g.base + "/jwks", audience: "https://app.example"}
	// Ed25519 signatures are deterministic and iat is in seconds: the
	// clock moves between the requests, so only a reuse gives equal tokens.
	_, anon1 := g.seenGet("/app/").one(t)
	skew(t, 3*time.Second)
	_, anon2 := g.seenGet("/app/").one(t)
	if anon1 != anon2 {
		t.Fatal("requests without a session: the assertion was signed twice within half its ttl")
	}
	g.seenGet(`/app/?update={"n":1}`)
	_, first := g.seenGet("/app/").one(t)
	skew(t, 3*time.Second)
	_, again := g.seenGet("/app/").one(t)
	if first != again {
		t.Fatal("unchanged session: the assertion was signed twice within half its ttl")
	}
	g.seenGet(`/app/?update={"n":2}`)
	data, changed := g.seenGet("/app/").one(t)
	if changed == first {
		t.Fatal("changed session: the old assertion was reused")
	}
	if _, err := v.verify(changed, data); err != nil || data != `{"n":2}` {
		t.Fatalf("after the change: %v (X-Session %s)", err, data)
	}
	skew(t, 21*time.Second)
	data, later := g.seenGet("/app/").one(t)
	if _, err := v.verify(later, data); err != nil {
		t.Fatalf("re-signed: %v", err)
	}
	if later == changed {
		t.Fatal("past half the ttl: the assertion was reused")
	}
	var c map[string]any
	_ = decodePart(strings.Split(later, ".")[1], &c)
	if c["exp"].(float64)-c["iat"].(float64) != 40 {
		t.Fatalf("ttl 40s: iat %v exp %v", c["iat"], c["exp"])
	}
}

// TestAssertionRotation follows docs/protocol.md's rotation steps: a
// verifier that fetched the old set keeps working through each step.
func TestAssertionRotation(t *testing.T) {
	oldKey, newKey := assertion.GenerateEd25519(), newP256Signer(t)
	oldPriv, oldPub := keyFile(t, oldKey)
	newPriv, newPub := keyFile(t, newKey)
	up := assertUpstream(t)
	options := globalOptions(t)
	port := freePort(t)
	load := func(lines string) *gateway {
		cf := fmt.Sprintf("%s\nhttp://127.0.0.1:%d {\n%s\n\treverse_proxy %s\n}\n", options, port, assertionSite(lines), strings.TrimPrefix(up.URL, "http://"))
		if err := loadCaddyfile(t, cf); err != nil {
			t.Fatalf("loading: %v", err)
		}
		noReuse := &http.Transport{DisableKeepAlives: true} // a reload replaces the server
		return &gateway{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 10 * time.Second, Transport: noReuse}}
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	// Before: the old key signs.
	g := load("\t\t\tkey " + oldPriv + "\n\t\t\taudience a")
	v := &appVerifier{t: t, url: g.base + "/jwks", audience: "a"}
	data, oldToken := g.seenGet("/app/").one(t)
	if _, err := v.verify(oldToken, data); err != nil {
		t.Fatal(err)
	}
	// Step 1: publish the next key in previous, before any instance signs with it.
	load("\t\t\tkey " + oldPriv + "\n\t\t\tprevious " + newPub + "\n\t\t\taudience a")
	v.fetch()
	if len(v.keys) != 2 {
		t.Fatalf("step 1: JWKS %v, want the old and the next key", v.keys)
	}
	// Step 2: sign with the new key, keep the old public key in previous for one ttl.
	g = load("\t\t\tkey " + newPriv + "\n\t\t\tprevious " + oldPub + "\n\t\t\taudience a")
	data, newToken := g.seenGet("/app/").one(t)
	fetches := v.fetches
	if _, err := v.verify(newToken, data); err != nil || v.fetches != fetches {
		t.Fatalf("step 2: new token: %v (fetches %d -> %d: the set of step 1 already had the key)", err, fetches, v.fetches)
	}
	if _, err := v.verify(oldToken, "{}"); err != nil {
		t.Fatalf("step 2: an assertion signed before the switch: %v", err)
	}
	// A verifier that fetched the set before step 1 finds the new key on its unknown kid.
	stale := &appVerifier{t: t, url: g.base + "/jwks", audience: "a", keys: map[string]assertion.JWK{oldKey.Kid(): oldKey.JWK()}}
	if _, err := stale.verify(newToken, data); err != nil || stale.fetches != 1 {
		t.Fatalf("stale verifier: %v after %d fetches", err, stale.fetches)
	}
	// Step 3: after one ttl, drop the old key.
	g = load("\t\t\tkey " + newPriv + "\n\t\t\taudience a")
	v.fetch()
	if _, ok := v.keys[oldKey.Kid()]; ok || len(v.keys) != 1 {
		t.Fatalf("step 3: JWKS %v, want the new key only", v.keys)
	}
	data, token := g.seenGet("/app/").one(t)
	if _, err := v.verify(token, data); err != nil {
		t.Fatalf("step 3: %v", err)
	}
}

// TestAssertionDefaultKey: without a key, one Ed25519 key is generated
// once and kept in Caddy's storage (a reload or another instance sharing
// the storage signs with the same key); a storage that cannot keep it
// fails provisioning instead of signing with a key no verifier knows.
func TestAssertionDefaultKey(t *testing.T) {
	storage := t.TempDir()
	options := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n}\n", storage)
	up := assertUpstream(t)
	kid := func() string {
		g := startGateway(t, options, assertionSite("\t\t\taudience a"), up)
		v := &appVerifier{t: t, url: g.base + "/jwks", audience: "a"}
		data, token := g.seenGet("/app/").one(t)
		if _, err := v.verify(token, data); err != nil {
			t.Fatal(err)
		}
		if len(v.keys) != 1 {
			t.Fatalf("JWKS %v", v.keys)
		}
		for k := range v.keys {
			return k
		}
		return ""
	}
	first := kid()
	doc, err := os.ReadFile(filepath.Join(storage, storageAssertionKey))
	if err != nil {
		t.Fatalf("the generated key is not in the storage: %v", err)
	}
	if s, err := assertion.ParsePrivateKeyPEM(doc); err != nil || s.Kid() != first || s.Alg() != assertion.AlgEdDSA {
		t.Fatalf("stored key %v, %v; want the Ed25519 key %s", s, err, first)
	}
	if again := kid(); again != first {
		t.Fatalf("a second start signs with %s, the first with %s", again, first)
	}

	// A storage that cannot keep the key: its root is a file.
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cf := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n}\nhttp://127.0.0.1:%d {\n%s\trespond ok\n}\n", blocked, freePort(t), assertionSite("\t\t\taudience a"))
	err = loadCaddyfile(t, cf)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("provisioned without a storage to keep the key in")
	}
	if !strings.Contains(err.Error(), "assertion: no key configured, and none could be kept in Caddy's storage") {
		t.Fatalf("error %q does not say the key could not be kept", err)
	}
}

// TestAssertionConfigErrors: a bad assertion setting refuses to start, in
// JSON and in a Caddyfile alike, with the same message.
func TestAssertionConfigErrors(t *testing.T) {
	s := assertion.GenerateEd25519()
	priv, pub := keyFile(t, s)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rsaFile := filepath.Join(t.TempDir(), "rsa.pem")
	if err := os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	t.Setenv("SESSION_TEST_EMPTY", "")
	t.Setenv("SESSION_TEST_KEY", func() string { b, _ := s.PrivateKeyPEM(); return string(b) }())
	block := func(lines string) string { return "\t\tassertion {\n" + lines + "\n\t\t}" }
	for _, tc := range []struct{ name, caddyfile, json, want string }{
		{"missing key file", block("\t\t\tkey " + missing), `"assertion":{"key":"` + missing + `"}`, "assertion key: open " + missing},
		{"RSA key", block("\t\t\tkey " + rsaFile), `"assertion":{"key":"` + rsaFile + `"}`, "assertion key: a *rsa.PrivateKey private key: want Ed25519 or P-256"},
		{"public key as key", block("\t\t\tkey " + pub), `"assertion":{"key":"` + pub + `"}`, "assertion key: a public key: want the private key"},
		{"private key as previous", block("\t\t\tprevious " + priv), `"assertion":{"previous":["` + priv + `"]}`, "assertion previous key 1: a PRIVATE KEY block: want PUBLIC KEY blocks only"},
		{"key from an unset variable", block("\t\t\tkey {env.SESSION_TEST_EMPTY}"), `"assertion":{"key":"{env.SESSION_TEST_EMPTY}"}`, "assertion key: empty"},
		{"ttl over 5m", block("\t\t\tttl 6m"), `"assertion":{"ttl":"6m"}`, "assertion ttl 6m0s: want between 2s and 5m0s"},
		{"ttl of 1s", block("\t\t\tttl 1s"), `"assertion":{"ttl":"1s"}`, "assertion ttl 1s: want between"},
		{"empty audience", block("\t\t\taudience {env.SESSION_TEST_EMPTY}"), `"assertion":{"audience":"{env.SESSION_TEST_EMPTY}"}`, `assertion audience "{env.SESSION_TEST_EMPTY}" is empty`},
		{"ttl 5m, key from a file", block("\t\t\tkey " + priv + "\n\t\t\tttl 5m\n\t\t\taudience a"), `"assertion":{"key":"` + priv + `","ttl":"5m","audience":"a"}`, ""},
		{"key from a variable", block("\t\t\tkey {env.SESSION_TEST_KEY}\n\t\t\tprevious " + pub), `"assertion":{"key":"{env.SESSION_TEST_KEY}","previous":["` + pub + `"]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { checkSameConfigError(t, tc.json, tc.caddyfile, tc.want) })
	}
	// What the Caddyfile parser refuses itself.
	for _, lines := range []string{block("\t\t\taudience \"\""), block("\t\t\tbogus 1"), block("\t\t\tprevious"), "\t\tassertion x {\n\t\t}"} {
		if err := loadSessionCaddyfile(t, lines); err == nil {
			_ = caddy.Stop()
			t.Errorf("accepted %q", lines)
		}
	}
}

// TestSessionJWKS: session_jwks and GET /session/jwks on the admin API
// serve every signing and previous key of the config's session handlers,
// each once, with Cache-Control: max-age.
func TestSessionJWKS(t *testing.T) {
	a, b, c := assertion.GenerateEd25519(), newP256Signer(t), assertion.GenerateEd25519()
	aPriv, aPub := keyFile(t, a)
	bPriv, _ := keyFile(t, b)
	_, cPub := keyFile(t, c)
	options, admin := opsOptions(t)
	// Several session blocks, one per route, as per-route scopes have them.
	up := assertUpstream(t)
	body := fmt.Sprintf(`	session_jwks /jwks {
		max_age 90s
	}
	handle /a* {
		session {
			secret %[1]s
			assertion {
				key %[2]s
				previous %[5]s
			}
		}
		reverse_proxy %[6]s
	}
	handle /b* {
		session {
			secret %[1]s
			assertion {
				key %[3]s
				previous %[4]s %[5]s
			}
		}
		reverse_proxy %[6]s
	}
	handle /plain* {
		session {
			secret %[1]s
		}
		reverse_proxy %[6]s
	}
`, testSecret, aPriv, bPriv, aPub, cPub, strings.TrimPrefix(up.URL, "http://"))
	g := startGateway(t, options, body, up)
	want := []string{a.Kid(), c.Kid(), b.Kid()}

	resp, err := http.Get(g.base + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set assertion.Set
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=90" || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("Cache-Control %q, Content-Type %q", cc, resp.Header.Get("Content-Type"))
	}
	checkKids(t, "session_jwks", set, want)

	status, adminBody := adminDo(t, admin, http.MethodGet, "/session/jwks")
	var adminSet assertion.Set
	if status != http.StatusOK || json.Unmarshal([]byte(adminBody), &adminSet) != nil {
		t.Fatalf("admin: %d %s", status, adminBody)
	}
	checkKids(t, "admin API", adminSet, want)
	if status, _ := adminDo(t, admin, http.MethodPost, "/session/jwks"); status != http.StatusMethodNotAllowed {
		t.Fatalf("admin POST: %d", status)
	}

	req, _ := http.NewRequest(http.MethodPost, g.base+"/jwks", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /jwks: %v %v", err, resp)
	}
	// The assertion of each block verifies with the set.
	v := &appVerifier{t: t, url: g.base + "/jwks"}
	for _, path := range []string{"/a", "/b"} {
		data, token := g.seenGet(path).one(t)
		v.audience = g.base
		if _, err := v.verify(token, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

func checkKids(t *testing.T, what string, set assertion.Set, want []string) {
	t.Helper()
	var got []string
	for _, k := range set.Keys {
		got = append(got, k.Kid)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s: kids %v, want %v (each key once)", what, got, want)
	}
}

// TestAssertionSubject: with subject set, sub is the session's subject
// (a number as its JSON text); without subject, or without a session,
// there is no sub.
func TestAssertionSubject(t *testing.T) {
	priv, _ := keyFile(t, assertion.GenerateEd25519())
	site := "\tsession /app* {\n\t\tsecret " + testSecret + "\n\t\tsubject user.id\n\t\tassertion {\n\t\t\tkey " + priv + "\n\t\t\taudience a\n\t\t}\n\t}\n\tsession_jwks /jwks\n"
	g := startGateway(t, globalOptions(t), site, assertUpstream(t))
	v := &appVerifier{t: t, url: g.base + "/jwks", audience: "a"}
	claims := func() map[string]any {
		data, token := g.seenGet("/app/").one(t)
		c, err := v.verify(token, data)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := claims(); c["sub"] != nil {
		t.Fatalf("without a session: sub %v", c["sub"])
	}
	g.seenGet(`/app/?update={"user":{"id":42}}`)
	if c := claims(); c["sub"] != "42" {
		t.Fatalf("subject 42: sub %q", c["sub"])
	}
	g.seenGet(`/app/?update={"user":{"id":"ann"}}`)
	if c := claims(); c["sub"] != "ann" {
		t.Fatalf("subject ann: sub %q", c["sub"])
	}
	g.seenGet(`/app/?update={"user":{}}`)
	if c, ok := claims()["sub"]; ok {
		t.Fatalf("no subject in the data: sub %v", c)
	}
}
