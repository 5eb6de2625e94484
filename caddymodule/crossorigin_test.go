package caddymodule

// Cross-origin protection (hardening issue 7, section 5) through a real
// Caddy: http.CrossOriginProtection applied to requests that carry the
// session cookie, its options, and its configuration errors.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// originCase is one request of a cross-origin table: method, path and
// browser headers, and whether the gateway lets it through.
type originCase struct {
	name, method, path string
	headers            map[string]string
	allowed            bool
}

// checkOrigin sends tc from g's browser (with its session cookie) with a
// patch recording tc.name, and checks that it is answered as tc.allowed
// says: through to the upstream, or 403 with a small JSON body before the
// upstream, the session unchanged.
func checkOrigin(t *testing.T, g *gateway, tc originCase) {
	t.Helper()
	before := g.get("/").RawSession
	calls := upstreamCalls.Load()
	req, _ := http.NewRequest(tc.method, g.base+tc.path+"?"+patchQuery(fmt.Sprintf(`{"step":%q}`, tc.name)), strings.NewReader("a=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range tc.headers {
		req.Header.Set(k, v)
	}
	r := g.do(req)
	calls = upstreamCalls.Load() - calls
	after := g.get("/").RawSession
	if tc.allowed {
		if r.Status != 200 || !strings.Contains(after, tc.name) {
			t.Fatalf("refused: status %d, session %s", r.Status, after)
		}
		return
	}
	if r.Status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", r.Status)
	}
	if calls != 0 {
		t.Fatalf("the upstream was called %d times for a refused request", calls)
	}
	var body map[string]any
	if len(r.Body) > 200 || json.Unmarshal([]byte(r.Body), &body) != nil || !strings.Contains(r.Header.Get("Content-Type"), "json") {
		t.Fatalf("403 body %q (%s): want a small JSON body", r.Body, r.Header.Get("Content-Type"))
	}
	if after != before || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("a refused request changed the session: %s -> %s, Set-Cookie %q", before, after, r.Header.Get("Set-Cookie"))
	}
}

func TestCrossOriginDefault(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	host := g.hostOf()
	site := func(v string) map[string]string { return map[string]string{"Sec-Fetch-Site": v} }
	for _, tc := range []originCase{
		{"cross-site POST", "POST", "/", site("cross-site"), false},
		{"same-site POST", "POST", "/", site("same-site"), false},
		{"cross-site PUT", "PUT", "/", site("cross-site"), false},
		{"cross-site PATCH", "PATCH", "/", site("cross-site"), false},
		{"cross-site DELETE", "DELETE", "/", site("cross-site"), false},
		// Every method but GET, HEAD and OPTIONS is unsafe, not only the
		// four common ones (protocol.md).
		{"cross-site PROPFIND", "PROPFIND", "/", site("cross-site"), false},
		{"cross-site made-up method", "FROB", "/", site("cross-site"), false},
		{"cross-site OPTIONS", "OPTIONS", "/", site("cross-site"), true},
		{"cross-site POST with a same-origin Origin", "POST", "/", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://" + host}, false},
		{"old browser, foreign Origin", "POST", "/", map[string]string{"Origin": "http://evil.example"}, false},
		{"old browser, Origin on another port", "POST", "/", map[string]string{"Origin": "http://127.0.0.1:1"}, false},
		{"old browser, Origin null", "POST", "/", map[string]string{"Origin": "null"}, false},
		{"same-origin POST", "POST", "/", site("same-origin"), true},
		{"user-initiated POST", "POST", "/", site("none"), true},
		{"old browser, same Origin", "POST", "/", map[string]string{"Origin": "http://" + host}, true},
		{"no browser headers", "POST", "/", nil, true},
		{"cross-site GET", "GET", "/", site("cross-site"), true},
		{"cross-site OPTIONS", "OPTIONS", "/", site("cross-site"), true},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOrigin(t, g, tc) })
	}

	t.Run("without the session cookie", func(t *testing.T) {
		// A SAML/OIDC form_post callback: cross-site, no session yet.
		v := g.visitor()
		req, _ := http.NewRequest(http.MethodPost, g.base+"/callback?"+patchQuery(`{"user":"bob"}`), strings.NewReader("code=1"))
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://idp.example")
		if r := v.do(req); r.Status != 200 || v.sessionCookie("session") == "" {
			t.Fatalf("form_post callback: status %d, cookie %v", r.Status, v.sessionCookie("session") != "")
		}
		if r := v.get("/"); r.RawSession != `{"user":"bob"}` {
			t.Fatalf("after the callback: %s", r.RawSession)
		}
	})
}

func TestCrossOriginOptions(t *testing.T) {
	up := upstream(t)
	cross := func(origin string) map[string]string {
		return map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": origin}
	}
	for _, cfg := range []struct {
		name, lines string
		cases       []originCase
	}{
		{"trust", "\t\tcross_origin {\n\t\t\ttrust https://other.example https://third.example\n\t\t}\n", []originCase{
			{"trusted origin", "POST", "/", cross("https://other.example"), true},
			{"second trusted origin", "POST", "/", cross("https://third.example"), true},
			{"trusted origin, old browser", "POST", "/", map[string]string{"Origin": "https://other.example"}, true},
			{"trusted host, other scheme", "POST", "/", cross("http://other.example"), false},
			{"untrusted origin", "POST", "/", cross("https://evil.example"), false},
		}},
		{"bypass", "\t\tcross_origin {\n\t\t\tbypass /hooks/ \"POST /api/callback\"\n\t\t}\n", []originCase{
			{"bypassed prefix", "POST", "/hooks/github", cross("https://github.example"), true},
			{"bypassed method and path", "POST", "/api/callback", cross("https://idp.example"), true},
			{"other method on the bypassed path", "PUT", "/api/callback", cross("https://idp.example"), false},
			{"path outside the bypass", "POST", "/hooksx", cross("https://github.example"), false},
		}},
		{"off", "\t\tcross_origin off\n", []originCase{
			{"cross-site POST", "POST", "/", cross("https://evil.example"), true},
		}},
		{"off in a block", "\t\tcross_origin {\n\t\t\toff\n\t\t}\n", []originCase{
			{"cross-site DELETE", "DELETE", "/", cross("https://evil.example"), true},
		}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			g := startGateway(t, globalOptions(t), sessionBody(cfg.lines), up)
			g.get("/?" + patchQuery(`{"user":"alice"}`))
			for _, tc := range cfg.cases {
				t.Run(tc.name, func(t *testing.T) { checkOrigin(t, g, tc) })
			}
		})
	}
}

func TestCrossOriginConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, caddyfile, json, want string
	}{
		{"trust with a path", "trust https://other.example/app", `{"trust":["https://other.example/app"]}`, "cross_origin trust"},
		{"trust without a scheme", "trust other.example", `{"trust":["other.example"]}`, "cross_origin trust"},
		{"bypass with a bad wildcard", "bypass /hooks/{", `{"bypass":["/hooks/{"]}`, "cross_origin bypass"},
		{"bypass with a repeated wildcard", "bypass /a/{x}/{x}", `{"bypass":["/a/{x}/{x}"]}`, "cross_origin bypass"},
	} {
		t.Run(tc.name+" (Caddyfile)", func(t *testing.T) {
			body := "\tsession {\n\t\tsecret " + testSecret + "\n\t\tcross_origin {\n\t\t\t" + tc.caddyfile + "\n\t\t}\n\t}\n"
			cf := globalOptions(t) + "http://127.0.0.1:" + fmt.Sprint(freePort(t)) + " {\n" + body + "\trespond ok\n}\n"
			err := loadCaddyfile(t, cf)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
		t.Run(tc.name+" (JSON)", func(t *testing.T) {
			cfg := fmt.Sprintf(`{"admin":{"disabled":true},"storage":{"module":"file_system","root":%q},
				"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[
				{"handler":"session","secrets":[%q],"cross_origin":%s},
				{"handler":"static_response","body":"ok"}]}]}}}}}`, t.TempDir(), freePort(t), testSecret, tc.json)
			err := caddy.Load([]byte(cfg), true)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
