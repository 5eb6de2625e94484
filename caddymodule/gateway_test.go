package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

const basicSession = "\tsession {\n\t\tsecret " + testSecret + "\n\t}\n"

func TestProtocolWalk(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	var first, before, after string

	g.step(t, "new visitor gets an empty session and no cookie", func(t *testing.T, g *gateway) {
		r := g.get("/")
		if r.Status != 200 || r.RawSession != "{}" || !r.Meta.New || r.Meta.ID != "" {
			t.Fatalf("new visitor: %+v", r)
		}
		if r.Header.Get("Set-Cookie") != "" {
			t.Fatal("a visitor without data must get no cookie")
		}
		if !strings.Contains(r.Header.Get("Vary"), "Cookie") {
			t.Fatal("responses must vary on Cookie")
		}
		if r := g.get("/?patch=" + url.QueryEscape(`{}`)); r.Header.Get("Set-Cookie") != "" {
			t.Fatal("an empty patch must not create a session")
		}
	})

	g.step(t, "first write creates the session and sets the cookie", func(t *testing.T, g *gateway) {
		r := g.get("/?patch=" + url.QueryEscape(`{"user":{"name":"Zoë"},"n":1}`))
		sc := r.Header.Get("Set-Cookie")
		for _, want := range []string{"session=", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="} {
			if !strings.Contains(sc, want) {
				t.Fatalf("Set-Cookie %q lacks %s", sc, want)
			}
		}
		if strings.Contains(sc, "Secure") {
			t.Fatal("Secure over plain HTTP in auto mode")
		}
		if !strings.Contains(r.Header.Get("Cache-Control"), "private") {
			t.Fatalf("a response that sets a session must not be cacheable by shared caches: %q", r.Header.Get("Cache-Control"))
		}
		first = g.sessionCookie("session")
	})

	g.step(t, "read back: ASCII data, cookie kept from the upstream, private", func(t *testing.T, g *gateway) {
		r := g.get("/")
		if r.Meta.New || len(r.Meta.ID) != 12 || r.Meta.Expires <= time.Now().Unix() {
			t.Fatalf("meta %+v", r.Meta)
		}
		if r.RawSession != `{"n":1,"user":{"name":"Zo\u00eb"}}` {
			t.Fatalf("X-Session %s", r.RawSession)
		}
		for _, c := range r.Cookie {
			if strings.Contains(c, first) || strings.Contains(c, "session=") {
				t.Fatalf("session cookie reached the upstream: %q", c)
			}
		}
		if r.Header.Get("Set-Cookie") != "" {
			t.Fatal("an unchanged session must not re-send the cookie")
		}
		if !strings.Contains(r.Header.Get("Cache-Control"), "private") || !strings.Contains(r.Header.Get("Vary"), "Cookie") {
			t.Fatalf("a response that read a session must vary on Cookie and be private: %q / %q", r.Header.Get("Vary"), r.Header.Get("Cache-Control"))
		}
	})

	g.step(t, "patch and update", func(t *testing.T, g *gateway) { walkPatchAndUpdate(t, g) })

	g.step(t, "regenerate: new token, same data, old cookie dead at once", func(t *testing.T, g *gateway) {
		before = g.sessionCookie("session")
		g.get("/?control=regenerate")
		after = g.sessionCookie("session")
		if after == before || after == "" {
			t.Fatal("regenerate must set a new cookie")
		}
		if r := g.get("/"); fmt.Sprint(r.Session) != "map[cart:[1 2]]" {
			t.Fatalf("regenerate must keep the data: %v", r.Session)
		}
		g.setCookie("session", before)
		if r := g.get("/"); r.RawSession != "{}" || !r.Meta.New {
			t.Fatalf("old cookie still works after regenerate: %v", r.Session)
		}
		g.setCookie("session", after)
	})

	g.step(t, "destroy: gone server-side, cookie expired", func(t *testing.T, g *gateway) {
		r := g.get("/?control=destroy")
		if sc := r.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
			t.Fatalf("destroy must expire the cookie: %q", sc)
		}
		if g.sessionCookie("session") != "" {
			t.Fatal("jar still has the cookie")
		}
		g.setCookie("session", after)
		if r := g.get("/"); r.RawSession != "{}" {
			t.Fatal("destroyed session still readable")
		}
	})

	g.step(t, "update null destroys too", func(t *testing.T, g *gateway) {
		g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
		g.get("/?update=null")
		if r := g.get("/"); r.RawSession != "{}" {
			t.Fatal("update null must destroy")
		}
	})
}

// walkPatchAndUpdate checks patch, null patch and update on a session
// holding {"n":1,"user":{"name":"Zoë"}}; every store's walk uses it.
func walkPatchAndUpdate(t *testing.T, g *gateway) {
	t.Helper()
	g.get("/?patch=" + url.QueryEscape(`{"n":2,"user":{"role":"admin"}}`))
	if r := g.get("/"); fmt.Sprint(r.Session) != "map[n:2 user:map[name:Zoë role:admin]]" {
		t.Fatalf("after patch: %v", r.Session)
	}
	g.get("/?patch=" + url.QueryEscape(`{"n":null}`))
	if r := g.get("/"); fmt.Sprint(r.Session) != "map[user:map[name:Zoë role:admin]]" {
		t.Fatalf("after null patch: %v", r.Session)
	}
	g.get("/?update=" + url.QueryEscape(`{"cart":[1,2]}`))
	if r := g.get("/"); fmt.Sprint(r.Session) != "map[cart:[1 2]]" {
		t.Fatalf("after update: %v", r.Session)
	}
}

func TestConcurrentUpdatesOfDifferentKeysBothKept(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?patch=" + url.QueryEscape(`{"base":1}`))
	for round := range 5 {
		name := fmt.Sprintf("meet%d", round)
		var wg sync.WaitGroup
		for _, k := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("%s%d", k, round)
				req, _ := http.NewRequest(http.MethodGet, g.base+"/?block="+name+"&addkey="+key, nil)
				resp, err := g.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}()
		}
		wg.Wait()
		r := g.get("/")
		for _, k := range []string{"a", "b"} {
			if r.Session[fmt.Sprintf("%s%d", k, round)] != true {
				t.Fatalf("round %d: lost update of %s: %v", round, k, r.Session)
			}
		}
	}
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), "\tsession {\n\t\tsecret "+testSecret+"\n\t\tidle_timeout 10m\n\t\tlifetime 1h\n\t\ttouch_interval 1m\n\t}\n", up)

	g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	exp0 := g.get("/").Meta.Expires

	// Within the touch interval nothing is written: expiry stays.
	skew(t, 30*time.Second)
	if r := g.get("/"); r.Meta.Expires != exp0 {
		t.Fatal("expiry moved within the touch interval")
	}
	// After it, the idle expiry slides.
	skew(t, 2*time.Minute)
	g.get("/")
	exp1 := g.get("/").Meta.Expires
	if exp1 <= exp0 {
		t.Fatalf("idle expiry did not slide: %d -> %d", exp0, exp1)
	}

	// Keep the session busy past its absolute lifetime: it ends anyway.
	for range 7 { // 58.5 minutes after creation
		skew(t, 8*time.Minute)
		if r := g.get("/"); r.RawSession == "{}" {
			t.Fatal("session expired while in use, before its lifetime")
		}
	}
	skew(t, 8*time.Minute) // 66.5 minutes after creation
	if r := g.get("/"); r.RawSession != "{}" {
		t.Fatalf("session outlived its absolute lifetime: %v", r.Session)
	}

	// Idle expiry.
	g2 := startGateway(t, globalOptions(t), "\tsession {\n\t\tsecret "+testSecret+"\n\t\tidle_timeout 10m\n\t}\n", up)
	g2.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	skew(t, 11*time.Minute)
	if r := g2.get("/"); r.RawSession != "{}" {
		t.Fatal("idle session still alive")
	}
}

func TestMaxAgeControl(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), "\tsession {\n\t\tsecret "+testSecret+"\n\t\tidle_timeout 10m\n\t\tcookie_max_age session\n\t}\n", up)
	r := g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	if strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age") {
		t.Fatal("cookie_max_age session must make a browser-session cookie")
	}
	r = g.get("/?control=" + url.QueryEscape("max-age=1800"))
	if !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=") {
		t.Fatal("max-age must make the cookie persistent (remember me)")
	}
	skew(t, 20*time.Minute)
	if r = g.get("/"); r.RawSession == "{}" {
		t.Fatal("max-age=1800 must outlast the 10m idle timeout")
	}
}

func TestSpoofedRequestHeadersNeverReachUpstream(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?patch=" + url.QueryEscape(`{"user":"real"}`))
	req, _ := http.NewRequest(http.MethodGet, g.base+"/", nil)
	for _, name := range []string{"X-Session", "x-session-meta", "X_Session", "X_SESSION_UPDATE", "x_Session-Patch", "X-SESSION-CONTROL", "X-Session-Whatever"} {
		req.Header[name] = []string{`{"user":"mallory"}`}
	}
	r := g.do(req)
	if fmt.Sprint(r.Session) != "map[user:real]" {
		t.Fatalf("upstream saw a spoofed session: %v", r.Session)
	}
	for _, n := range r.Names {
		if l := strings.ToLower(strings.ReplaceAll(n, "_", "-")); strings.HasPrefix(l, "x-session") && n != "X-Session" && n != "X-Session-Meta" {
			t.Errorf("spoofed header %s reached the upstream", n)
		}
	}
}

func TestSessionHeadersAbsentFromEveryResponse(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	for _, q := range []string{"status=204", "status=304", "status=404", "status=500", "status=302"} {
		g.get("/?" + q + "&patch=" + url.QueryEscape(`{"b":2}`)) // g.do asserts no X-Session* header
	}
	req, _ := http.NewRequest(http.MethodHead, g.base+"/?patch="+url.QueryEscape(`{"c":3}`), nil)
	g.do(req)

	// 1xx informational responses are cleaned too.
	var hints []textproto.MIMEHeader
	req, _ = http.NewRequest(http.MethodGet, g.base+"/?hints=1", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, h)
			return nil
		},
	}))
	r := g.do(req)
	if len(hints) != 1 || hints[0].Get("Link") == "" {
		t.Fatalf("early hints not passed on: %v", hints)
	}
	for k := range hints[0] {
		if strings.HasPrefix(strings.ToLower(k), "x-session") {
			t.Fatalf("session header %s in a 1xx response", k)
		}
	}
	if _, ok := r.Session["evil"]; ok {
		t.Fatal("a 1xx header must not change the session")
	}
}

func TestBadUpstreamInputLeavesSessionIntact(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?patch=" + url.QueryEscape(`{"keep":"me"}`))
	cookie := g.sessionCookie("session")
	for _, q := range []string{
		"patch=" + url.QueryEscape(`{"broken":`),
		"update=" + url.QueryEscape(`[1,2]`),
		"update=" + url.QueryEscape(`{"$where":1}`),
		"patch=" + url.QueryEscape(`{"a.b":1}`),
		"control=explode",
		"control=" + url.QueryEscape("destroy, sideways"),
		"patch=" + url.QueryEscape(`{"big":"`+strings.Repeat("x", 9000)+`"}`),
	} {
		r := g.get("/?" + q)
		if r.Status != http.StatusBadGateway {
			t.Errorf("%s: status %d, want 502", q, r.Status)
		}
		if r.Header.Get("Set-Cookie") != "" || strings.Contains(r.Body, "session") {
			t.Errorf("%s: the upstream's response leaked through: %q", q, r.Body)
		}
		if g.sessionCookie("session") != cookie {
			t.Fatalf("%s: cookie changed", q)
		}
		if r := g.get("/"); fmt.Sprint(r.Session) != "map[keep:me]" {
			t.Fatalf("%s: session changed: %v", q, r.Session)
		}
	}
}

func TestBadCookiesCostNoStoreRoundTripAndTossingFails(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), "\tsession {\n\t\tstore counting\n\t\tsecret "+testSecret+"\n\t}\n", up)
	g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	good := g.sessionCookie("session")

	other := startGateway(t, globalOptions(t), "\tsession {\n\t\tsecret "+strings.Repeat("z", 32)+"\n\t}\n", up)
	other.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	foreign := other.sessionCookie("session") // signed with another key
	g = startGateway(t, globalOptions(t), "\tsession {\n\t\tstore counting\n\t\tsecret "+testSecret+"\n\t}\n", up)

	g.get("/?patch=" + url.QueryEscape(`{"b":2}`)) // a second session
	second := g.sessionCookie("session")
	forged := strings.Repeat("A", 43) + "." + strings.Repeat("B", 43)

	// Cookie tossing: among cookies of our name the one that verifies is
	// used, so a cookie set on a parent domain cannot log a user out; two
	// that verify are ambiguous and mean no session.
	for _, tc := range []struct {
		name, header string
		calls        int64
	}{
		{"forged", "session=" + forged, 0},
		{"foreign", "session=" + foreign, 0},
		{"garbage", "session=%%%;;;===; session", 0},
		{"giant", "session=" + strings.Repeat("x", 6000), 0},
		{"token only", "session=" + good[:43], 0},
		{"two valid sessions", "session=" + good + "; session=" + second, 0},
		{"same valid cookie twice", "session=" + good + "; session=" + good, 1},
		{"tossed before the real one", "session=" + forged + "; session=" + good, 1},
		{"tossed after the real one", "session=" + good + "; session=" + foreign, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := storeCalls.Load()
			req, _ := http.NewRequest(http.MethodGet, g.base+"/", nil)
			req.Header.Set("Cookie", tc.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
			if n := storeCalls.Load() - before; n != tc.calls {
				t.Errorf("%d store calls, want %d", n, tc.calls)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	up := upstream(t)
	oldKey, newKey := testSecret, strings.Repeat("n", 32)
	opts := globalOptions(t)
	g := startGateway(t, opts, "\tsession {\n\t\tsecret "+oldKey+"\n\t}\n", up)
	g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	cookie := g.sessionCookie("session")

	// Reload with a new first key and the old one kept: same process, same
	// memory store, old cookies still verify.
	g2 := startGateway(t, opts, "\tsession {\n\t\tsecret "+newKey+" "+oldKey+"\n\t}\n", up)
	g2.setCookie("session", cookie)
	if r := g2.get("/"); fmt.Sprint(r.Session) != "map[a:1]" {
		t.Fatalf("old key no longer verifies: %v", r.Session)
	}
	// Without the old key, the cookie is refused.
	g3 := startGateway(t, opts, "\tsession {\n\t\tsecret "+newKey+"\n\t}\n", up)
	g3.setCookie("session", cookie)
	if r := g3.get("/"); r.RawSession != "{}" {
		t.Fatal("dropped key still verifies")
	}
}

func TestSecretFromEnvAndStorage(t *testing.T) {
	up := upstream(t)
	t.Setenv("TEST_SESSION_SECRET", testSecret)
	g := startGateway(t, globalOptions(t), "\tsession {\n\t\tsecret {env.TEST_SESSION_SECRET}\n\t}\n", up)
	g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	if g.sessionCookie("session") == "" {
		t.Fatal("no session with an {env.X} secret")
	}

	dir := t.TempDir()
	opts := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tstorage file_system %s\n}\n", dir)
	g = startGateway(t, opts, "\tsession\n", up)
	g.get("/?patch=" + url.QueryEscape(`{"a":1}`))
	key, err := os.ReadFile(filepath.Join(dir, "caddy_session", "secret"))
	if err != nil || len(key) < 32 {
		t.Fatalf("generated key not kept in storage: %v", err)
	}
	cookie := g.sessionCookie("session")
	// A reload reads the same key back: sessions survive.
	g = startGateway(t, opts, "\tsession\n", up)
	g.setCookie("session", cookie)
	if r := g.get("/"); fmt.Sprint(r.Session) != "map[a:1]" {
		t.Fatalf("session lost across reload with a stored key: %v", r.Session)
	}
}

func TestConfigErrorsAreClear(t *testing.T) {
	for body, want := range map[string]string{
		"session {\n\t\tsecret short\n\t}":                "at least 32",
		"session {\n\t\tbogus 1\n\t}":                     "unknown session subdirective",
		"session {\n\t\tidle_timeout soon\n\t}":           "bad idle_timeout",
		"session {\n\t\tcookie_same_site sideways\n\t}":   "same_site",
		"session {\n\t\tsecret {env.NOPE_UNSET_VAR}\n\t}": "empty",
		"session {\n\t\tstore nosuch\n\t}":                "nosuch",
		"require_session a b c":                           "wrong argument count",
	} {
		cf := globalOptions(t) + "http://127.0.0.1:" + fmt.Sprint(freePort(t)) + " {\n\t" + body + "\n\trespond ok\n}\n"
		err := loadCaddyfile(t, cf)
		if err == nil {
			_ = caddy.Stop()
			t.Errorf("%q: accepted", body)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q does not say %q", body, err, want)
		}
		if strings.Contains(body, "bogus") && !strings.Contains(err.Error(), "Caddyfile:9") {
			t.Errorf("error does not name the line: %v", err)
		}
	}
}
