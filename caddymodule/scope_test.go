package caddymodule

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/internal/assertion"
	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// scopedSite is one site with three upstreams behind one session: the
// main app (everything), a blog (read user.name, write none, control
// none) and a reports tool (read user.id, write reports), each in its
// own handle block with its own session handler, sharing one snippet.
// Caddy's log (warn and up) goes to logFile as JSON.
func scopedSite(t *testing.T, storeLines string) (g *gateway, admin, logFile string) {
	t.Helper()
	main, blog, reports := upstream(t), upstream(t), upstream(t)
	port, adminPort := freePort(t), freePort(t)
	admin = fmt.Sprintf("localhost:%d", adminPort)
	logFile = filepath.Join(t.TempDir(), "caddy.log")
	host := func(u string) string { return strings.TrimPrefix(u, "http://") }
	cf := fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output file %s
		format json
		level WARN
	}
}

(session-common) {
%s
	secret %s
	subject user.id
	adopt koa {
		keys %s
	}
}

http://127.0.0.1:%d {
	handle /blog/* {
		session {
			import session-common
			read user.name
			write none
			control none
		}
		require_session /blog/members/* user.role
		respond /blog/whoami "{http.session.user.role} {http.auth.user.id}"
		reverse_proxy %s
	}
	handle /reports/* {
		session {
			import session-common
			read user.id
			write reports
		}
		reverse_proxy %s
	}
	handle {
		session {
			import session-common
		}
		reverse_proxy %s
	}
}
`, admin, t.TempDir(), logFile, storeLines, testSecret, scopedKoaKey, port, host(blog.URL), host(reports.URL), host(main.URL))
	if err := loadCaddyfile(t, cf); err != nil {
		t.Fatalf("loading Caddyfile: %v\n%s", err, cf)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	jar, _ := cookiejar.New(nil)
	g = &gateway{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), jar: jar, client: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	return g, admin, logFile
}

// q builds a query string of upstream instructions.
func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return "?" + v.Encode()
}

// the session the main app logs in with, and the key of a koa-session
// app whose cookie-only sessions are adopted.
const (
	scopedLogin  = `{"cart":[1,2],"token":"t0k-secret","user":{"id":7,"name":"ann","role":"user"}}`
	scopedKoaKey = "koa-key-for-the-scope-walk"
)

// koaCookies are the cookies of a cookie-only koa-session holding data,
// signed as keygrip signs them (HMAC-SHA1, base64url).
func koaCookies(data string) string {
	value := base64.StdEncoding.EncodeToString([]byte(data))
	m := hmac.New(sha1.New, []byte(scopedKoaKey))
	m.Write([]byte("koa.sess=" + value))
	return "koa.sess=" + value + "; koa.sess.sig=" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestScopeWalk is the walk of issue 20 through a real Caddy, on the
// memory store and on MongoDB: three upstreams behind one site and one
// session. The blog's attempts to patch
// user.role, to update the whole session or to end it in any spelling
// get 502 and leave the session intact; the blog never receives other
// keys; the reports tool changes reports and nothing else; a concurrent
// write from the main app to another key survives a projected update;
// each refusal is one warn line naming the handler and the path or
// directive, never a value, and counted as forbidden.
func TestScopeWalk(t *testing.T) {
	t.Run("memory", func(t *testing.T) { scopeWalk(t, "\tstore memory scopewalk") })
	t.Run("mongodb", func(t *testing.T) {
		uri, db := mongotest.Database(t)
		scopeWalk(t, fmt.Sprintf("\tstore mongodb {\n\t\turi %s\n\t\tdatabase %s\n\t}", uri, db))
	})
}

func scopeWalk(t *testing.T, storeLines string) {
	g, admin, logFile := scopedSite(t, storeLines)
	forbidden := series("caddy_session_upstream_refused_total", "reason", "forbidden")
	before := scrape(t, admin)
	refusals := 0
	mainSees := func(t *testing.T, g *gateway, want string) {
		t.Helper()
		if r := g.get("/"); r.Status != http.StatusOK || r.RawSession != want {
			t.Fatalf("main app sees %d %s, want %s", r.Status, r.RawSession, want)
		}
	}
	refused := func(t *testing.T, g *gateway, path string) {
		t.Helper()
		r := g.get(path)
		if r.Status != http.StatusBadGateway || r.Header.Get("Set-Cookie") != "" {
			t.Fatalf("%s: %d %v, want 502 without a cookie", path, r.Status, r.Header["Set-Cookie"])
		}
		refusals++
	}

	g.step(t, "main app logs in", func(t *testing.T, g *gateway) {
		if r := g.get("/" + q("update", scopedLogin)); r.Status != http.StatusOK || g.sessionCookie("session") == "" {
			t.Fatalf("login: %d", r.Status)
		}
		mainSees(t, g, scopedLogin)
	})
	var handle string
	g.step(t, "the blog sees user.name and nothing else, of the same session", func(t *testing.T, g *gateway) {
		r := g.get("/blog/post")
		if r.Status != http.StatusOK || r.RawSession != `{"user":{"name":"ann"}}` || r.Meta.New {
			t.Fatalf("blog got %d %s (new %v)", r.Status, r.RawSession, r.Meta.New)
		}
		handle = r.Meta.ID
		if main := g.get("/"); main.Meta.ID != handle {
			t.Fatalf("blog and main app see different sessions: %s, %s", handle, main.Meta.ID)
		}
	})
	g.step(t, "placeholders, require_session and subject see the full data", func(t *testing.T, g *gateway) {
		if r := g.get("/blog/whoami"); r.Status != http.StatusOK || r.Body != "user 7" {
			t.Fatalf("whoami: %d %q, want the role and subject the blog cannot read", r.Status, r.Body)
		}
		if r := g.get("/blog/members/page"); r.Status != http.StatusOK || r.RawSession != `{"user":{"name":"ann"}}` {
			t.Fatalf("require_session user.role: %d %s", r.Status, r.RawSession)
		}
	})
	g.step(t, "the blog cannot write or end the session", func(t *testing.T, g *gateway) {
		for _, path := range []string{
			"/blog/x" + q("patch", `{"user":{"role":"admin"}}`),
			"/blog/x" + q("update", `{"user":{"name":"ann","role":"admin"}}`),
			"/blog/x" + q("update", `{"cart":[],"token":"","user":{"id":1,"name":"ann","role":"admin"}}`),
			"/blog/x" + q("update", `{}`),
			"/blog/x" + q("update", `null`),
			"/blog/x" + q("control", "destroy"),
			"/blog/x" + q("control", "max-age=0"),
			"/blog/x" + q("control", "regenerate"),
			"/blog/x" + q("control", "revoke-all"),
			"/blog/x" + q("control", "revoke-others"),
			"/blog/x" + q("control", "max-age=3600"),
		} {
			refused(t, g, path)
			mainSees(t, g, scopedLogin)
		}
	})
	g.step(t, "the blog echoing its view changes nothing", func(t *testing.T, g *gateway) {
		if r := g.get("/blog/x" + q("update", `{"user":{"name":"ann"}}`)); r.Status != http.StatusOK {
			t.Fatalf("echo: %d", r.Status)
		}
		mainSees(t, g, scopedLogin)
	})
	g.step(t, "the reports tool sees user.id and changes reports only", func(t *testing.T, g *gateway) {
		r := g.get("/reports/" + q("patch", `{"reports":{"last":"q1"}}`))
		if r.Status != http.StatusOK || r.RawSession != `{"user":{"id":7}}` {
			t.Fatalf("reports got %d %s", r.Status, r.RawSession)
		}
		mainSees(t, g, `{"cart":[1,2],"reports":{"last":"q1"},"token":"t0k-secret","user":{"id":7,"name":"ann","role":"user"}}`)
		if r := g.get("/reports/" + q("update", `{"reports":{"last":"q2","n":2},"user":{"id":7}}`)); r.Status != http.StatusOK {
			t.Fatalf("reports update: %d", r.Status)
		}
		mainSees(t, g, `{"cart":[1,2],"reports":{"last":"q2","n":2},"token":"t0k-secret","user":{"id":7,"name":"ann","role":"user"}}`)
		refused(t, g, "/reports/"+q("patch", `{"user":{"id":8}}`))
		refused(t, g, "/reports/"+q("update", `{"reports":{}}`)) // drops user.id
		refused(t, g, "/reports/"+q("update", `{"user":{"id":7,"role":"admin"}}`))
		mainSees(t, g, `{"cart":[1,2],"reports":{"last":"q2","n":2},"token":"t0k-secret","user":{"id":7,"name":"ann","role":"user"}}`)
	})
	g.step(t, "a concurrent write from the main app survives a projected update", func(t *testing.T, g *gateway) {
		gate := gateFor(t.Name())
		var wg sync.WaitGroup
		var rep reply
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep = g.get("/reports/" + q("wait", t.Name(), "update", `{"reports":{"last":"q3"},"user":{"id":7}}`))
		}()
		<-gate.arrived // the reports request has its snapshot
		if r := g.get("/" + q("patch", `{"cart":[3],"user":{"name":"bob"}}`)); r.Status != http.StatusOK {
			t.Fatalf("main write: %d", r.Status)
		}
		close(gate.open)
		wg.Wait()
		if rep.Status != http.StatusOK {
			t.Fatalf("projected update: %d", rep.Status)
		}
		mainSees(t, g, `{"cart":[3],"reports":{"last":"q3"},"token":"t0k-secret","user":{"id":7,"name":"bob","role":"user"}}`)
	})
	g.step(t, "the blog still sees user.name only", func(t *testing.T, g *gateway) {
		if r := g.get("/blog/"); r.RawSession != `{"user":{"name":"bob"}}` {
			t.Fatalf("blog got %s", r.RawSession)
		}
	})
	g.step(t, "adoption through the blog creates the full data whatever write says", func(t *testing.T, g *gateway) {
		legacy := `{"_expire":` + fmt.Sprint(time.Now().Add(time.Hour).UnixMilli()) + `,"legacy":true,"user":{"id":9,"name":"kim","role":"editor"}}`
		req, _ := http.NewRequest(http.MethodGet, g.base+"/blog/post", nil)
		req.Header.Set("Cookie", koaCookies(legacy))
		other := *g
		other.jar, _ = cookiejar.New(nil)
		other.client = &http.Client{Jar: other.jar, Timeout: 10 * time.Second}
		if r := other.do(req); r.Status != http.StatusOK || r.RawSession != `{"user":{"name":"kim"}}` || r.Meta.New {
			t.Fatalf("adopting through the blog: %d %s (new %v)", r.Status, r.RawSession, r.Meta.New)
		}
		if r := other.get("/"); r.RawSession != `{"legacy":true,"user":{"id":9,"name":"kim","role":"editor"}}` {
			t.Fatalf("the main app sees %s after adoption", r.RawSession)
		}
	})
	g.step(t, "the main app can still do everything", func(t *testing.T, g *gateway) {
		if r := g.get("/" + q("control", "destroy")); r.Status != http.StatusOK {
			t.Fatalf("logout: %d", r.Status)
		}
		if r := g.get("/blog/"); r.RawSession != "{}" || !r.Meta.New {
			t.Fatalf("after logout the blog sees %s", r.RawSession)
		}
	})
	g.step(t, "each refusal: one warn line naming handler and path or directive, no value; counted", func(t *testing.T, g *gateway) {
		if got := scrape(t, admin)[forbidden] - before[forbidden]; got != float64(refusals) {
			t.Fatalf("forbidden refusals counted %v, want %d", got, refusals)
		}
		logs := readLogLines(t, logFile)
		var lines []map[string]any
		for _, l := range logs {
			if l["level"] == "error" || strings.Contains(fmt.Sprint(l["msg"]), "outside this handler") {
				lines = append(lines, l)
			}
		}
		if len(lines) != refusals {
			t.Fatalf("%d warn or error lines for %d refusals: %v", len(lines), refusals, lines)
		}
		want := map[string]bool{"user.role": true, "cart": true, "user.name": true, "destroy": true, "regenerate": true,
			"revoke-all": true, "revoke-others": true, "max-age": true, "user.id": true}
		for _, l := range lines {
			raw, _ := json.Marshal(l)
			if l["level"] != "warn" || l["session"] != handle || !want[fmt.Sprint(l["refused"])] || !strings.HasPrefix(fmt.Sprint(l["handler"]), "read user.") {
				t.Errorf("refusal line: %s", raw)
			}
			for _, value := range []string{"admin", "t0k-secret", `"ann"`, "bob"} {
				if strings.Contains(string(raw), value) {
					t.Errorf("refusal line shows a value (%s): %s", value, raw)
				}
			}
		}
	})
}

// readLogLines reads a JSON log file written by Caddy.
func readLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

// TestScopeAssertionCoversProjection: with read and an assertion, the
// assertion's sdh is the hash of the projected X-Session the upstream got,
// and both come from the handler's one cache: an unchanged session gets
// the same value and the same assertion; a write (even outside the view)
// gives a new version, signed anew.
func TestScopeAssertionCoversProjection(t *testing.T) {
	priv, _ := keyFile(t, assertion.GenerateEd25519())
	site := "\tsession /app* {\n\t\tsecret " + testSecret + "\n\t\tread user.name\n\t\tassertion {\n\t\t\tkey " + priv +
		"\n\t\t\taudience https://app.example\n\t\t}\n\t}\n\tsession_jwks /jwks\n"
	g := startGateway(t, globalOptions(t), site, assertUpstream(t))
	v := &appVerifier{t: t, url: g.base + "/jwks", audience: "https://app.example"}
	g.seenGet(`/app/login?update={"user":{"name":"ann","role":"admin"},"token":"t0k"}`)
	data, token := g.seenGet("/app/").one(t)
	if _, err := v.verify(token, data); err != nil || data != `{"user":{"name":"ann"}}` {
		t.Fatalf("projected: %v (X-Session %s)", err, data)
	}
	skew(t, 3*time.Second)
	if again, reused := g.seenGet("/app/").one(t); again != data || reused != token {
		t.Fatalf("unchanged session: X-Session %s, assertion reused %v", again, reused == token)
	}
	g.seenGet(`/app/?update={"user":{"name":"ann"},"cart":[1]}`) // outside the view: a new version
	data2, token2 := g.seenGet("/app/").one(t)
	if _, err := v.verify(token2, data2); err != nil || data2 != `{"user":{"name":"ann"}}` || token2 == token {
		t.Fatalf("after a write outside the view: %v, X-Session %s, re-signed %v", err, data2, token2 != token)
	}
}

// TestScopeNested: the natural way to write it, a site-wide session for
// the main app and, inside handle blocks, session handlers of the same
// cookie that narrow it for one route. The nested handler gives its
// upstream its own view, checks the answer against its own scope and
// hands what it allows to the outer handler; the outer handler's headers
// are removed both ways, so another header prefix is no way around it.
func TestScopeNested(t *testing.T) {
	main, blog, other := upstream(t), upstream(t), upstream(t)
	host := func(u string) string { return strings.TrimPrefix(u, "http://") }
	port := freePort(t)
	cf := fmt.Sprintf(`%s
(common) {
	store memory scopenested
	secret %s
}

http://127.0.0.1:%d {
	session {
		import common
	}
	handle /blog/* {
		session {
			import common
			read user.name
			write user.name
			control none
		}
		reverse_proxy %s
	}
	handle /other/* {
		session {
			import common
			header_prefix X-App
			read none
			write none
		}
		reverse_proxy %s
	}
	handle {
		reverse_proxy %s
	}
}
`, globalOptions(t), testSecret, port, host(blog.URL), host(other.URL), host(main.URL))
	if err := loadCaddyfile(t, cf); err != nil {
		t.Fatalf("loading Caddyfile: %v\n%s", err, cf)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	jar, _ := cookiejar.New(nil)
	g := &gateway{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), jar: jar, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	mainSees := func(t *testing.T, g *gateway, want string) {
		t.Helper()
		if r := g.get("/"); r.RawSession != want {
			t.Fatalf("main app sees %s, want %s", r.RawSession, want)
		}
	}
	g.step(t, "main app logs in", func(t *testing.T, g *gateway) {
		g.get("/" + q("update", scopedLogin))
		mainSees(t, g, scopedLogin)
	})
	g.step(t, "the nested handler's upstream sees its view of the same session", func(t *testing.T, g *gateway) {
		r := g.get("/blog/")
		if r.Status != http.StatusOK || r.RawSession != `{"user":{"name":"ann"}}` || r.Meta.New || r.Meta.ID != g.get("/").Meta.ID {
			t.Fatalf("blog got %d %s %+v", r.Status, r.RawSession, r.Meta)
		}
	})
	g.step(t, "what it may not do is refused, the session intact", func(t *testing.T, g *gateway) {
		for _, path := range []string{"/blog/" + q("patch", `{"user":{"role":"admin"}}`), "/blog/" + q("control", "destroy"), "/blog/" + q("update", "null")} {
			if r := g.get(path); r.Status != http.StatusBadGateway {
				t.Fatalf("%s: %d", path, r.Status)
			}
			mainSees(t, g, scopedLogin)
		}
	})
	g.step(t, "what it may do is written by the outer handler, on the full data", func(t *testing.T, g *gateway) {
		if r := g.get("/blog/" + q("update", `{"user":{"name":"bob"}}`)); r.Status != http.StatusOK {
			t.Fatalf("allowed update: %d", r.Status)
		}
		mainSees(t, g, `{"cart":[1,2],"token":"t0k-secret","user":{"id":7,"name":"bob","role":"user"}}`)
	})
	g.step(t, "another header prefix is no way around it", func(t *testing.T, g *gateway) {
		r := g.get("/other/" + q("patch", `{"user":{"role":"admin"}}`)) // the outer's X-Session-Patch
		if r.Status != http.StatusOK || r.RawSession != "" {
			t.Fatalf("other: %d, X-Session %q reached it", r.Status, r.RawSession)
		}
		for _, n := range r.Names {
			if strings.EqualFold(n, "X-Session") || strings.EqualFold(n, "X-Session-Meta") {
				t.Fatalf("the outer handler's %s reached the nested route's upstream", n)
			}
		}
		if r := g.get("/other/" + q("header", `X-App-Patch:{"user":{"role":"admin"}}`)); r.Status != http.StatusBadGateway {
			t.Fatalf("its own prefix: %d, want 502 (write none)", r.Status)
		}
		mainSees(t, g, `{"cart":[1,2],"token":"t0k-secret","user":{"id":7,"name":"bob","role":"user"}}`)
	})
}
