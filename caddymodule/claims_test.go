package caddymodule

// Tests of the documented promises users rely on (issue 13, "true but
// untested"), through a real Caddy: default expiry, cookie Max-Age,
// max-age bounds, shortened timeouts, cookie refresh, require_session,
// placeholders, cache headers on error answers; and, with MongoDB, the
// store failures and what the logs never show.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store"
)

// onlyHandler is the one session handler of the running config.
func onlyHandler(t *testing.T) *Handler {
	t.Helper()
	hs := runningHandlers()
	if len(hs) != 1 {
		t.Fatalf("%d live session handlers, want 1", len(hs))
	}
	return hs[0]
}

// storedRecord reads g's session straight from the running handler's
// store, at the handler's clock; nil when there is none.
func storedRecord(t *testing.T, g *gateway) *store.Record {
	t.Helper()
	h := onlyHandler(t)
	tok, ok := h.signer.Verify(h.attrs.Name, g.sessionCookie(h.attrs.Name))
	if !ok {
		return nil
	}
	rec, err := h.store.Find(context.Background(), cookie.Key(tok), h.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// sessionSetCookie is the Set-Cookie of the session cookie in r, or nil.
func sessionSetCookie(r reply) *http.Cookie {
	for _, v := range r.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(v); err == nil && c.Name == DefaultCookieName {
			return c
		}
	}
	return nil
}

// wantMaxAge checks that r sets the session cookie with a Max-Age of
// want, or up to slack seconds less (the request's clock ran on after the
// moment want was computed from).
func wantMaxAge(t *testing.T, step string, r reply, want time.Duration, slack int) {
	t.Helper()
	c := sessionSetCookie(r)
	if c == nil {
		t.Fatalf("%s: no session cookie set (status %d)", step, r.Status)
	}
	w := int(want / time.Second)
	if c.MaxAge > w || c.MaxAge < w-slack {
		t.Fatalf("%s: cookie Max-Age %d, want %d", step, c.MaxAge, w)
	}
}

// privateAndVaried checks the cache headers of a response that depends on
// a session.
func privateAndVaried(t *testing.T, step string, r reply) {
	t.Helper()
	vary, cc := strings.Join(r.Header.Values("Vary"), ", "), strings.Join(r.Header.Values("Cache-Control"), ", ")
	if !strings.Contains(vary, "Cookie") || !strings.Contains(cc, "private") {
		t.Errorf("%s (status %d): Vary %q, Cache-Control %q; want Cookie and private", step, r.Status, vary, cc)
	}
}

// TestClaimDefaultExpiry: without settings a session lives 1h idle and
// 24h at most, and an unchanged request writes at most once a minute.
func TestClaimDefaultExpiry(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody(""), up)

	r := g.get("/?" + patchQuery(`{"a":1}`))
	wantMaxAge(t, "create", r, 24*time.Hour, 0)
	rec := storedRecord(t, g)
	if rec.Expires.Sub(rec.Created) != time.Hour || !rec.Updated.Equal(rec.Created) {
		t.Fatalf("new session: created %v, updated %v, expires %v; want expiry 1h after creation", rec.Created, rec.Updated, rec.Expires)
	}
	if m := g.get("/").Meta; m.Expires-m.Created != 3600 {
		t.Fatalf("X-Session-Meta: expires %d s after creation, want 3600", m.Expires-m.Created)
	}
	created := rec.Created

	// Touch interval: 1m by default.
	skew(t, 59*time.Second)
	if r := g.get("/"); r.Header.Get("Set-Cookie") != "" {
		t.Fatal("an unchanged request re-sent the cookie")
	}
	if rec := storedRecord(t, g); !rec.Updated.Equal(created) {
		t.Fatalf("written %v after creation, within the 1m touch interval", rec.Updated.Sub(created))
	}
	skew(t, 2*time.Second)
	if r := g.get("/"); r.Header.Get("Set-Cookie") != "" {
		t.Fatal("a touch re-sent a cookie that lasts the whole lifetime")
	}
	rec = storedRecord(t, g)
	if rec.Updated.Sub(created) < 61*time.Second || rec.Expires.Sub(rec.Updated) != time.Hour {
		t.Fatalf("after 61s: updated %v after creation, expires %v after that; want a touch extending 1h",
			rec.Updated.Sub(created), rec.Expires.Sub(rec.Updated))
	}

	// Idle timeout: 1h by default. Two more visitors, one of them active.
	idle, active := g.visitor(), g.visitor()
	idle.get("/?" + patchQuery(`{"v":"idle"}`))
	active.get("/?" + patchQuery(`{"v":"active"}`))
	skew(t, 59*time.Minute)
	if r := active.get("/"); r.RawSession != `{"v":"active"}` {
		t.Fatalf("active visitor after 59m: %s", r.RawSession)
	}
	skew(t, 2*time.Minute)
	if r := idle.get("/"); r.RawSession != "{}" || !r.Meta.New {
		t.Fatalf("visitor idle for 61m still has a session: %s", r.RawSession)
	}
	if r := active.get("/"); r.RawSession != `{"v":"active"}` {
		t.Fatalf("visitor active 2m ago lost the session: %s", r.RawSession)
	}

	// Lifetime: 24h by default, however active. The first visitor was
	// last used 1h ago (61m + 1s): renew it with a new session.
	g.get("/?" + patchQuery(`{"a":2}`))
	rec = storedRecord(t, g)
	if rec == nil {
		t.Fatal("no session")
	}
	born := rec.Created
	for step := range 28 { // 28 x 50m = 23h20m
		skew(t, 50*time.Minute)
		if r := g.get("/"); r.RawSession != `{"a":2}` {
			t.Fatalf("active session lost %v after creation", time.Duration(step+1)*50*time.Minute)
		}
	}
	if rec := storedRecord(t, g); !rec.Expires.Equal(born.Add(24 * time.Hour)) {
		t.Fatalf("23h20m after creation the expiry is %v after creation, want capped at 24h", rec.Expires.Sub(born))
	}
	skew(t, 41*time.Minute)
	if r := g.get("/"); r.RawSession != "{}" {
		t.Fatalf("session outlived the 24h lifetime: %s", r.RawSession)
	}
}

// TestClaimCookieMaxAgeAndRegenerate: the cookie's Max-Age is what is
// left of the lifetime when it is sent, and a regenerate keeps the
// session's creation time and its own max-age.
func TestClaimCookieMaxAgeAndRegenerate(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody(""), up)
	r := g.get("/?" + patchQuery(`{"user":"ann"}`))
	wantMaxAge(t, "create", r, 24*time.Hour, 0)
	before := storedRecord(t, g)

	for range 21 { // 21 x 30m = 10h30m, in use all along
		skew(t, 30*time.Minute)
		if r := g.get("/"); r.RawSession != `{"user":"ann"}` {
			t.Fatal("session lost while in use")
		}
	}
	r = g.get("/?control=" + url.QueryEscape("max-age=7200"))
	wantMaxAge(t, "max-age", r, 24*time.Hour-10*time.Hour-30*time.Minute, 5)
	if rec := storedRecord(t, g); rec.MaxAge != 2*time.Hour {
		t.Fatalf("max-age stored as %v", rec.MaxAge)
	}

	skew(t, time.Hour)
	old := g.sessionCookie("session")
	r = g.get("/?control=regenerate")
	wantMaxAge(t, "regenerate", r, 24*time.Hour-11*time.Hour-30*time.Minute, 5)
	if g.sessionCookie("session") == old {
		t.Fatal("regenerate kept the token")
	}
	after := storedRecord(t, g)
	if !after.Created.Equal(before.Created) || after.MaxAge != 2*time.Hour {
		t.Fatalf("regenerated session: created %v (was %v), max-age %v (want 2h)", after.Created, before.Created, after.MaxAge)
	}
	if m := g.get("/").Meta; m.Created != before.Created.Unix() {
		t.Fatalf("X-Session-Meta created %d, want %d", m.Created, before.Created.Unix())
	}
	// The kept max-age (2h) outlasts the default idle timeout (1h).
	skew(t, 90*time.Minute)
	if r := g.get("/"); r.RawSession != `{"user":"ann"}` {
		t.Fatalf("regenerated session lost its max-age: %s", r.RawSession)
	}
}

// TestClaimMaxAgeBounds: max-age=N is capped by the lifetime, and N is at
// most ten years (more is bad upstream input, 502).
func TestClaimMaxAgeBounds(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody(""), up)
	r := g.get("/?" + patchQuery(`{"a":1}`) + "&control=" + url.QueryEscape("max-age=172800"))
	wantMaxAge(t, "max-age of two days", r, 24*time.Hour, 0)
	rec := storedRecord(t, g)
	if rec.MaxAge != 48*time.Hour || !rec.Expires.Equal(rec.Created.Add(24*time.Hour)) {
		t.Fatalf("max-age %v, expires %v after creation; want 48h capped at the 24h lifetime", rec.MaxAge, rec.Expires.Sub(rec.Created))
	}
	if m := g.get("/").Meta; m.Expires-m.Created != 86400 {
		t.Fatalf("X-Session-Meta expires %d s after creation, want 86400", m.Expires-m.Created)
	}

	const tenYears = 10 * 365 * 24 * 3600
	r = g.get(fmt.Sprintf("/?control=max-age=%d", tenYears))
	if r.Status != http.StatusOK {
		t.Fatalf("max-age of ten years: status %d", r.Status)
	}
	wantMaxAge(t, "max-age of ten years", r, 24*time.Hour, 5)
	cookieBefore := g.sessionCookie("session")
	r = g.get(fmt.Sprintf("/?control=max-age=%d", tenYears+1))
	if r.Status != http.StatusBadGateway || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("max-age over ten years: status %d, Set-Cookie %q; want 502 and no cookie", r.Status, r.Header.Get("Set-Cookie"))
	}
	privateAndVaried(t, "502 for bad upstream input", r)
	if rec := storedRecord(t, g); rec.MaxAge != tenYears*time.Second || g.sessionCookie("session") != cookieBefore {
		t.Fatalf("refused max-age changed the session: max-age %v", rec.MaxAge)
	}
}

// TestClaimShortenedTimeoutsApplyAtOnce: after a reload with a shorter
// idle_timeout or lifetime, existing sessions follow the new values at
// once, although the store still holds the expiry the old ones gave.
func TestClaimShortenedTimeoutsApplyAtOnce(t *testing.T) {
	up := upstream(t)
	opts := globalOptions(t)
	storeLine := "\t\tstore memory " + uniqueName(t) + "\n"
	// reload starts the site again (on a new port: cookies do not care)
	// and points the visitors at it.
	reload := func(t *testing.T, extra string, visitors ...*gateway) *gateway {
		g := startGateway(t, opts, sessionBody(storeLine+extra), up)
		for _, v := range visitors {
			v.base = g.base
		}
		return g
	}

	t.Run("idle_timeout", func(t *testing.T) {
		g := reload(t, "")
		used, unused := g.visitor(), g.visitor()
		used.get("/?" + patchQuery(`{"v":1}`))
		unused.get("/?" + patchQuery(`{"v":2}`))
		if rec := storedRecord(t, unused); rec.Expires.Sub(rec.Updated) != time.Hour {
			t.Fatalf("stored expiry %v after the write, want 1h", rec.Expires.Sub(rec.Updated))
		}
		reload(t, "\t\tidle_timeout 10m\n", used, unused)
		skew(t, 9*time.Minute)
		if r := used.get("/"); r.RawSession != `{"v":1}` {
			t.Fatalf("9m after the write, under a 10m idle timeout: %s", r.RawSession)
		}
		skew(t, 2*time.Minute)
		if r := unused.get("/"); r.RawSession != "{}" {
			t.Fatalf("idle 11m under a new 10m idle timeout, still alive: %s", r.RawSession)
		}
		if r := used.get("/"); r.RawSession != `{"v":1}` {
			t.Fatalf("used 2m ago: %s", r.RawSession)
		}
	})
	t.Run("lifetime", func(t *testing.T) {
		g := reload(t, "")
		g.get("/?" + patchQuery(`{"v":3}`))
		reload(t, "\t\tidle_timeout 20m\n\t\tlifetime 30m\n", g)
		skew(t, 19*time.Minute)
		if r := g.get("/"); r.RawSession != `{"v":3}` {
			t.Fatalf("19m after creation, under a 30m lifetime: %s", r.RawSession)
		}
		skew(t, 12*time.Minute) // used 12m ago, idle timeout 20m: only the lifetime ends it
		if r := g.get("/"); r.RawSession != "{}" {
			t.Fatalf("31m after creation under a new 30m lifetime, still alive: %s", r.RawSession)
		}
	})
}

// TestClaimCappedCookieIsRefreshed: with cookie_max_age the cookie is
// re-sent by the touches and the writes, so an active user keeps it for
// as long as the session lives, up to the end of its lifetime.
func TestClaimCappedCookieIsRefreshed(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody("\t\tidle_timeout 20m\n\t\tlifetime 1h\n\t\tcookie_max_age 10m\n"), up)
	r := g.get("/?" + patchQuery(`{"a":1}`))
	wantMaxAge(t, "create", r, 10*time.Minute, 0)
	token := g.sessionCookie("session")

	skew(t, 30*time.Second)
	if r := g.get("/"); r.Header.Get("Set-Cookie") != "" {
		t.Fatal("the cookie was re-sent within the touch interval, with no write")
	}
	skew(t, 31*time.Second)
	wantMaxAge(t, "first touch", g.get("/"), 10*time.Minute, 0)
	wantMaxAge(t, "write", g.get("/?"+patchQuery(`{"a":2}`)), 10*time.Minute, 0)

	// An active user, a request every 4 minutes until the lifetime ends:
	// the browser's cookie (by the Max-Age it was last sent with) never
	// runs out while the session lives.
	elapsed, cookieEnd := 61*time.Second, 61*time.Second+10*time.Minute
	for elapsed+4*time.Minute < time.Hour {
		skew(t, 4*time.Minute)
		elapsed += 4 * time.Minute
		if elapsed >= cookieEnd {
			t.Fatalf("%v after creation the browser's cookie has run out (at %v), the session lives until 1h", elapsed, cookieEnd)
		}
		r := g.get("/")
		if r.RawSession != `{"a":2}` {
			t.Fatalf("%v after creation: session lost", elapsed)
		}
		if c := sessionSetCookie(r); c != nil {
			cookieEnd = elapsed + time.Duration(c.MaxAge)*time.Second
		}
		if g.sessionCookie("session") != token {
			t.Fatal("a touch changed the token")
		}
	}
	if cookieEnd < time.Hour-time.Second {
		t.Fatalf("the last cookie ends %v after creation, before the session (1h)", cookieEnd)
	}
}

// TestClaimRequireSession: redirects are 303 for non-GET, never cached,
// carry the path asked for before any rewrite; and require_session with
// no session handler before it fails closed with 500.
func TestClaimRequireSession(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody("")+"\trewrite /alias /account\n\trequire_session /account*\n", up)
	send := func(method, path, accept string) reply {
		req, _ := http.NewRequest(method, g.base+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		return g.do(req)
	}
	for _, tc := range []struct {
		name, method, path, accept string
		status                     int
		location                   string
	}{
		{"browser GET", http.MethodGet, "/account?tab=1", "text/html", http.StatusFound, "/login?next=" + url.QueryEscape("/account?tab=1")},
		{"browser HEAD", http.MethodHead, "/account", "text/html", http.StatusFound, "/login?next=%2Faccount"},
		{"browser POST", http.MethodPost, "/account/email", "text/html,*/*", http.StatusSeeOther, "/login?next=%2Faccount%2Femail"},
		{"browser DELETE", http.MethodDelete, "/account", "text/html", http.StatusSeeOther, "/login?next=%2Faccount"},
		{"next from before a rewrite", http.MethodGet, "/alias?x=1", "text/html", http.StatusFound, "/login?next=" + url.QueryEscape("/alias?x=1")},
		{"API client", http.MethodPost, "/account", "application/json", http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(tc.method, tc.path, tc.accept)
			if r.Status != tc.status || r.Header.Get("Location") != tc.location {
				t.Fatalf("status %d, Location %q; want %d %q", r.Status, r.Header.Get("Location"), tc.status, tc.location)
			}
			if r.Header.Get("Cache-Control") != "no-store" || !strings.Contains(r.Header.Get("Vary"), "Cookie") {
				t.Errorf("Cache-Control %q, Vary %q; want no-store and Cookie", r.Header.Get("Cache-Control"), r.Header.Get("Vary"))
			}
		})
	}
	g.get("/?" + patchQuery(`{"user":"ann"}`))
	if r := send(http.MethodPost, "/alias", "text/html"); r.Status != http.StatusOK || r.RawSession != `{"user":"ann"}` {
		t.Fatalf("with a session: status %d", r.Status)
	}

	t.Run("no session handler before it", func(t *testing.T) {
		g := startGateway(t, globalOptions(t), "\troute {\n\t\trequire_session\n"+strings.ReplaceAll(sessionBody(""), "\n\t", "\n\t\t")+"\t}\n", up)
		calls := upstreamCalls.Load()
		if r := g.get("/?" + patchQuery(`{"a":1}`)); r.Status != http.StatusInternalServerError {
			t.Fatalf("status %d, want 500", r.Status)
		}
		if upstreamCalls.Load() != calls {
			t.Fatal("the upstream was called")
		}
	})
}

// TestClaimPlaceholders: {http.session_meta.expires} is RFC 3339 in UTC;
// objects render as JSON; a null subject leaves {http.auth.user.id} unset.
func TestClaimPlaceholders(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody("\t\tsubject user.id\n")+
		"\trespond /ph \"{http.session_meta.expires}|{http.auth.user.id}|{http.session.user}|{http.session.n}|{http.session.tags}\"\n", up)

	if r := g.get("/ph"); r.Body != "|{http.auth.user.id}|||" {
		t.Fatalf("without a session: %q", r.Body)
	}
	for _, tc := range []struct{ name, data, subject, user string }{
		{"null subject is unset", `{"user":{"id":null,"name":"Zoë"},"n":1.5,"tags":["a",{"b":true}]}`, "{http.auth.user.id}", `{"id":null,"name":"Zoë"}`},
		{"string subject", `{"user":{"id":"u1"}}`, "u1", `{"id":"u1"}`},
		{"number subject", `{"user":{"id":42}}`, "42", `{"id":42}`},
		{"boolean subject", `{"user":{"id":true}}`, "true", `{"id":true}`},
		// An object subject is refused (TestSubjectRefusedWhenUnindexable).
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.get("/?update=" + url.QueryEscape(tc.data))
			r := g.get("/ph")
			parts := strings.Split(r.Body, "|")
			if len(parts) != 5 {
				t.Fatalf("body %q", r.Body)
			}
			exp, err := time.Parse(time.RFC3339, parts[0])
			if err != nil || !strings.HasSuffix(parts[0], "Z") {
				t.Fatalf("expires %q is not RFC 3339 UTC: %v", parts[0], err)
			}
			if want := storedRecord(t, g).Expires.Truncate(time.Second); !exp.Equal(want) {
				t.Errorf("expires %v, want %v", exp, want)
			}
			if parts[1] != tc.subject || parts[2] != tc.user {
				t.Errorf("subject %q, user %q; want %q, %q", parts[1], parts[2], tc.subject, tc.user)
			}
			if tc.name == "null subject is unset" && (parts[3] != "1.5" || parts[4] != `["a",{"b":true}]`) {
				t.Errorf("n %q, tags %q", parts[3], parts[4])
			}
		})
	}
}

// TestClaimVaryAndPrivateOnErrors: every response through session varies
// on Cookie, and is private when the request had a session, including
// error answers the gateway or a handler after it makes.
func TestClaimVaryAndPrivateOnErrors(t *testing.T) {
	up := upstream(t)
	static := t.TempDir()
	if err := os.WriteFile(filepath.Join(static, "here.txt"), []byte("here"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, globalOptions(t), sessionBody("")+
		"\thandle_path /static/* {\n\t\troot * "+static+"\n\t\tfile_server\n\t}\n", up)

	// Without a session: Vary only.
	r := g.get("/static/missing.txt")
	if r.Status != http.StatusNotFound || !strings.Contains(r.Header.Get("Vary"), "Cookie") {
		t.Fatalf("file_server 404 without a session: status %d, Vary %q", r.Status, r.Header.Get("Vary"))
	}
	if strings.Contains(r.Header.Get("Cache-Control"), "private") {
		t.Errorf("a response without a session was made private")
	}

	g.get("/?" + patchQuery(`{"a":1}`))
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"file_server 200", "/static/here.txt", http.StatusOK},
		{"file_server 404", "/static/missing.txt", http.StatusNotFound},
		{"502 for a bad patch", "/?" + patchQuery(`{"a":`), http.StatusBadGateway},
		{"502 for a bad control", "/?control=explode", http.StatusBadGateway},
		{"upstream 500", "/?status=500", http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.get(tc.path)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d", r.Status, tc.status)
			}
			privateAndVaried(t, tc.name, r)
		})
	}
}

// logMarker is placed in session keys and values; no log line may hold it.
const logMarker = "Qz9marker"

// hexUpstream plays an application whose session headers come hex-coded
// in the query (p: patch, u: update, c: control), so the data never shows
// in a logged URI: only what the gateway itself logs can leak it. wait
// holds the request at a gate; the reply reports X-Session as upstream
// does.
func hexUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if name := q.Get("wait"); name != "" {
			gateFor(name).pass()
		}
		for param, name := range map[string]string{"p": "X-Session-Patch", "u": "X-Session-Update", "c": "X-Session-Control"} {
			if v := q.Get(param); v != "" {
				b, _ := hex.DecodeString(v)
				w.Header().Set(name, string(b))
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"session": r.Header.Get("X-Session"), "meta": r.Header.Get("X-Session-Meta")})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// hexQuery is the query that makes hexUpstream send value in param.
func hexQuery(param, value string) string { return param + "=" + hex.EncodeToString([]byte(value)) }

// nested is a BSON document depth levels deep, every key the marker.
func nested(depth int) bson.D {
	d := bson.D{{Key: logMarker, Value: logMarker}}
	for range depth {
		d = bson.D{{Key: logMarker, Value: d}}
	}
	return d
}

// asyncGet sends a GET from g's browser in the background.
func asyncGet(g *gateway, path string) <-chan *http.Response {
	out := make(chan *http.Response, 1)
	go func() {
		resp, err := g.client.Get(g.base + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		out <- resp // nil on error
	}()
	return out
}

// TestClaimMongoFailuresAndLogs, with the MongoDB store: a store failing
// after the upstream ran is a 503 with Retry-After: 5, a regenerate in an
// outage creates nothing and leaves the old session working, a document
// that cannot be converted is a 500; every such answer is private and
// varies on Cookie; and neither the error log nor the access log shows
// session data, a key of it, a cookie or the MongoDB URI.
func TestClaimMongoFailuresAndLogs(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := hexUpstream(t)
	dir := t.TempDir()
	errorLog, accessLog := filepath.Join(dir, "caddy.log"), filepath.Join(dir, "access.log")
	opts := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}\n}\n", dir, errorLog)
	g := startGateway(t, opts, mongoSessionBody(uri, db, "\t\t\ttimeout 1s\n", "")+"\tlog {\n\t\toutput file "+accessLog+"\n\t\tformat json\n\t}\n", up)

	alice, bob, broken := g, g.visitor(), g.visitor()
	alice.get("/?" + hexQuery("p", `{"user":"alice"}`))
	bob.get("/?" + hexQuery("p", `{"user":"bob"}`))
	broken.get("/?" + hexQuery("p", `{"user":"`+logMarker+`"}`))
	for _, v := range []*gateway{alice, bob, broken} {
		if v.sessionCookie("session") == "" {
			t.Fatal("no session")
		}
	}
	// A request whose X-Session holds the marker, answered normally: the
	// access log must not show the header the gateway added.
	if r := broken.get("/"); r.RawSession != `{"user":"`+logMarker+`"}` {
		t.Fatalf("session %s", r.RawSession)
	}

	t.Run("bad upstream input", func(t *testing.T) {
		m := logMarker
		for _, tc := range []struct{ name, query string }{
			{"$ key", hexQuery("p", `{"$`+m+`":"`+m+`-v"}`)},
			{"dotted key, nested", hexQuery("p", `{"a":{"`+m+`.k":"`+m+`"}}`)},
			{"NUL in a key", hexQuery("p", `{"`+m+`\u0000":1}`)},
			{"truncated", hexQuery("p", `{"`+m+`":"`+m+`-v`)},
			{"not an object", hexQuery("u", `["`+m+`"]`)},
			{"number out of range", hexQuery("p", `{"`+m+`":1e400}`)},
			{"too deep", hexQuery("p", strings.Repeat(`{"`+m+`":`, 40)+"1"+strings.Repeat("}", 40))},
			{"too big", hexQuery("p", `{"`+m+`":"`+strings.Repeat(m, 1000)+`"}`)},
			{"unknown control", hexQuery("c", m)},
			{"bad max-age", hexQuery("c", "max-age="+m)},
		} {
			r := alice.get("/?" + tc.query)
			if r.Status != http.StatusBadGateway {
				t.Errorf("%s: status %d, want 502", tc.name, r.Status)
			}
			privateAndVaried(t, tc.name, r)
		}
	})

	t.Run("unconvertible document is a 500", func(t *testing.T) {
		coll := mongotest.Client(t).Database(db).Collection("sessions")
		tok, ok := onlyHandler(t).signer.Verify("session", broken.sessionCookie("session"))
		if !ok {
			t.Fatal("cookie does not verify")
		}
		for _, data := range []any{logMarker + "-as-a-string", nested(100)} {
			if _, err := coll.UpdateByID(t.Context(), cookie.Key(tok), bson.D{{Key: "$set", Value: bson.D{{Key: "data", Value: data}}}}); err != nil {
				t.Fatal(err)
			}
			r := broken.get("/")
			if r.Status != http.StatusInternalServerError || r.Header.Get("Retry-After") != "" {
				t.Errorf("status %d, Retry-After %q; want 500 without Retry-After", r.Status, r.Header.Get("Retry-After"))
			}
			privateAndVaried(t, "500", r)
		}
	})

	docs := sessionDocs(t, db)
	// Both requests load their session, then MongoDB stops while the
	// upstream works, then the upstream answers with a change.
	write, regen := uniqueName(t), uniqueName(t)
	wrote := asyncGet(alice, "/?wait="+write+"&"+hexQuery("p", `{"`+logMarker+`":"`+logMarker+`-v"}`))
	regenerated := asyncGet(bob, "/?wait="+regen+"&"+hexQuery("c", "regenerate"))
	for _, name := range []string{write, regen} {
		select {
		case <-gateFor(name).arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the request did not reach the upstream")
		}
	}
	mongotest.Stop(t)
	close(gateFor(write).open)
	close(gateFor(regen).open)
	for name, ch := range map[string]<-chan *http.Response{"write": wrote, "regenerate": regenerated} {
		resp := <-ch
		if resp == nil {
			t.Fatalf("%s: request failed", name)
		}
		r := reply{Status: resp.StatusCode, Header: resp.Header}
		if r.Status != http.StatusServiceUnavailable || !slices.Equal(r.Header.Values("Retry-After"), []string{"5"}) {
			t.Errorf("%s with MongoDB down: status %d, Retry-After %q; want 503 and exactly 5", name, r.Status, r.Header.Values("Retry-After"))
		}
		if r.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s with MongoDB down sent a cookie", name)
		}
		privateAndVaried(t, name+" 503", r)
	}
	mongotest.Restart(t)

	// Once MongoDB is back: nothing was half-written, the regenerate
	// created no session and the old token still works.
	deadline := time.Now().Add(20 * time.Second)
	for r := alice.get("/"); r.Status != http.StatusOK; r = alice.get("/") {
		if time.Now().After(deadline) {
			t.Fatalf("still %d after MongoDB came back", r.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := alice.get("/"); r.RawSession != `{"user":"alice"}` {
		t.Errorf("the failed write changed the session: %s", r.RawSession)
	}
	if r := bob.get("/"); r.RawSession != `{"user":"bob"}` {
		t.Errorf("the failed regenerate lost the session: %s", r.RawSession)
	}
	if n := sessionDocs(t, db); n != docs {
		t.Errorf("%d session documents after the outage, %d before", n, docs)
	}

	secrets := []string{logMarker, uri}
	handles := map[string]string{}
	for name, v := range map[string]*gateway{"update": alice, "regenerate": bob, "load": broken} {
		c := v.sessionCookie("session")
		token, sig, _ := strings.Cut(c, ".")
		secrets = append(secrets, c, token, sig)
		handles[name] = cookie.Handle(cookie.Key(token))
	}
	errText, err := os.ReadFile(errorLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"refused the upstream's session headers", "unreadable session document", "nested too deeply"} {
		if !strings.Contains(string(errText), want) {
			t.Errorf("the log does not say %q: is it captured?", want)
		}
	}
	// Store failures name the session by its handle.
	for op, handle := range handles {
		if !strings.Contains(string(errText), "session store: "+op+": session "+handle+": ") {
			t.Errorf("no log line for the failed %s naming session %s", op, handle)
		}
	}
	accessText, err := os.ReadFile(accessLog)
	if err != nil || !strings.Contains(string(accessText), `"status":503`) {
		t.Fatalf("access log not captured: %v", err)
	}
	for name, text := range map[string][]byte{"error log": errText, "access log": accessText} {
		for _, s := range secrets {
			if strings.Contains(string(text), s) {
				t.Errorf("the %s holds session data, a token or the URI", name)
			}
		}
	}
}

// rotateFails makes the rotfail store's Rotate fail: 0 never, else with
// that error kind (1 unavailable, 2 another error).
var rotateFails atomic.Int32

// rotFailStore is a real memory store whose Rotate fails when rotateFails
// says so, the step of a regenerate after the new session was created.
// It is http.session.stores.rotfail.
type rotFailStore struct {
	testMemStore
}

func init() { caddy.RegisterModule(new(rotFailStore)) }

func (*rotFailStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.session.stores.rotfail", New: func() caddy.Module { return new(rotFailStore) }}
}

func (f *rotFailStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	switch rotateFails.Load() {
	case 1:
		return fmt.Errorf("%w: rotfail test store", store.ErrUnavailable)
	case 2:
		return errors.New("rotfail test store: refused")
	}
	return f.Store.Rotate(ctx, key, version, successor, until, now)
}

// TestClaimFailedRegenerateLeavesNoNewSession: when retiring the old
// session fails, the regenerate answers 503 (store unavailable) or 500
// (another failure), removes the session it had just created, sends no
// cookie, and the old session goes on unchanged.
func TestClaimFailedRegenerateLeavesNoNewSession(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sessionBody("\t\tstore rotfail\n"), up)
	t.Cleanup(func() { rotateFails.Store(0) })
	g.get("/?" + patchQuery(`{"user":"ann"}`))
	st := rawStore(onlyHandler(t).store).(*rotFailStore)
	old := g.sessionCookie("session")
	for _, tc := range []struct {
		name       string
		mode       int32
		status     int
		retryAfter string
	}{
		{"store unavailable", 1, http.StatusServiceUnavailable, "5"},
		{"other store failure", 2, http.StatusInternalServerError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rotateFails.Store(tc.mode)
			r := g.get("/?control=regenerate&" + patchQuery(`{"user":"bob"}`))
			rotateFails.Store(0)
			if r.Status != tc.status || r.Header.Get("Retry-After") != tc.retryAfter {
				t.Fatalf("status %d, Retry-After %q; want %d %q", r.Status, r.Header.Get("Retry-After"), tc.status, tc.retryAfter)
			}
			if r.Header.Get("Set-Cookie") != "" || g.sessionCookie("session") != old {
				t.Fatal("a failed regenerate sent a cookie")
			}
			privateAndVaried(t, tc.name, r)
			if n := st.Len(); n != 1 {
				t.Fatalf("%d records in the store, want the old session only", n)
			}
			if r := g.get("/"); r.RawSession != `{"user":"ann"}` {
				t.Fatalf("old session after the failed regenerate: %s", r.RawSession)
			}
		})
	}
}
