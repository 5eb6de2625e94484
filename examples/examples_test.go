// Package examples holds the end-to-end tests of the example apps: the
// xcaddy-built Caddy with each example's own Caddyfile, in front of the
// example's real interpreter (python3, node, php-fpm), driven over real HTTP
// by a cookie-keeping client and, for the Python example, by headless
// Chromium (browser_test.go).
package examples

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestPython(t *testing.T) { t.Parallel(); walk(t, "python", example(t, "python")) }
func TestNode(t *testing.T)   { t.Parallel(); walk(t, "node", example(t, "node")) }
func TestPHP(t *testing.T)    { t.Parallel(); walk(t, "php", example(t, "php")) }

// TestDemo runs the root Caddyfile.example, what scripts/demo.sh runs, with
// each store it offers.
func TestDemo(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		s := serve(t, "python", "../Caddyfile.example", "SESSION_STORE=memory")
		walk(t, "python", s)
		// subject user.name puts the user in Caddy's access log.
		if !strings.Contains(tail(s.caddy.log, 1<<30), `"user_id":"alice"`) {
			t.Errorf(`Caddy's access log has no "user_id":"alice"`)
		}
	})
	t.Run("mongodb", func(t *testing.T) {
		t.Parallel()
		uri, db := mongotest.Database(t)
		// The database is the URI's: Caddyfile.example names none.
		s := serve(t, "python", "../Caddyfile.example",
			"SESSION_STORE=mongodb", "MONGODB_URI="+mongotest.WithDatabase(uri, db))
		walk(t, "python", s)
		// The store is really MongoDB: a logged-in session is a document in
		// its collection (walk ends logged out, so log in once more).
		newClient(t, s.base).login("dora", "/account", "/account")
		n, err := mongotest.Client(t).Database(db).Collection("sessions").CountDocuments(context.Background(), bson.D{})
		if err != nil || n == 0 {
			t.Errorf("sessions in MongoDB: %d, %v; want some", n, err)
		}
	})
}

// cookieName is the session cookie's default name.
const cookieName = "session"

// walk takes one example through the whole flow a visitor goes through,
// checking at each step what the client and the backend see.
func walk(t *testing.T, lang string, s site) {
	base := s.base
	visitor := newClient(t, base)

	// A public page creates no session.
	r := visitor.get("/", nil)
	r.expect(http.StatusOK)
	r.noSetCookie()
	if !strings.Contains(r.body, `href="/account"`) {
		t.Errorf("home page has no link to /account:\n%s", r.body)
	}
	if strings.Contains(r.body, `id="whoami"`) || strings.Contains(r.body, `action="/logout"`) {
		t.Errorf("home page of a visitor shows a user or a Log out button:\n%s", r.body)
	}

	// Without a session the backend gets an empty one, marked new.
	r = visitor.get("/debug/headers", nil)
	r.noSetCookie()
	got := backendView(t, lang, r)
	if got.session != "{}" || !got.meta.New || got.meta.ID != "" {
		t.Errorf("new visitor: backend got X-Session %q, meta %+v; want {} and new", got.session, got.meta)
	}

	// The protected page: browsers go to the login page with the path they
	// asked for, other clients get 401 JSON.
	visitor.get("/account", nil).expectLogin("/account")
	visitor.get("/account?tab=1", nil).expectLogin("/account?tab=1")
	api := visitor.get("/account", http.Header{"Accept": {"application/json"}})
	api.expect(http.StatusUnauthorized)
	api.noSetCookie()
	var apiErr map[string]string
	if err := json.Unmarshal([]byte(api.body), &apiErr); err != nil || apiErr["error"] != "session required" {
		t.Errorf("401 body = %q, want {\"error\":\"session required\"}", api.body)
	}

	// The login form carries the path to go back to.
	r = visitor.get("/login?next="+url.QueryEscape("/account?tab=1"), nil)
	r.expect(http.StatusOK)
	for _, want := range []string{`id="name"`, `name="name"`, `id="submit"`, `name="next" value="/account?tab=1"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("login form lacks %s:\n%s", want, r.body)
		}
	}

	// Logging in sets an HttpOnly cookie and goes back to the asked path.
	first := visitor.login("alice", "/account?tab=1", "/account?tab=1")

	// The account page shows the user, and the counter counts every visit.
	for want := 1; want <= 3; want++ {
		visitor.account("/account?tab=1", "alice", want)
	}
	// Every page, public ones included, says who is logged in and has a
	// Log out button (a POST form).
	for _, path := range []string{"/", "/login", "/no-such-page"} {
		visitor.get(path, nil).expectWhoami("alice")
	}

	// Spoofed session headers, in every spelling, never reach the backend:
	// the page still shows alice and the counter goes on from 3.
	visitor.account("/account", "alice", 4, spoofHeaders())
	spoofed := spoofHeaders()
	spoofed["Cookie"] = []string{"theme=dark"} // the jar adds the session cookie after it
	got = backendView(t, lang, visitor.get("/debug/headers", spoofed))
	var data struct {
		User   struct{ Name string }
		Visits int
	}
	if err := json.Unmarshal([]byte(got.session), &data); err != nil || data.User.Name != "alice" || data.Visits != 4 {
		t.Errorf("backend got X-Session %q, want alice's session with 4 visits", got.session)
	}
	if got.meta.New || !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(got.meta.ID) {
		t.Errorf("backend got meta %+v, want new=false and a 12 hex char id", got.meta)
	}
	// Other cookies pass; the session cookie never does.
	if !strings.Contains(got.cookie, "theme=dark") || strings.Contains(got.cookie, first) ||
		strings.Contains(got.cookie, cookieName+"=") {
		t.Errorf("backend got Cookie %q, want theme=dark and no session cookie", got.cookie)
	}

	// Logging in again (next is another site, so it is ignored) regenerates
	// the session: new token, the old cookie dead. The login replaces the
	// data (X-Session-Update + regenerate): nothing of alice's session, her
	// visits, carries over to the next user, so the counter starts again.
	// The name is not ASCII: each app must escape it in its header JSON, and
	// shows the JSON decoded, the name as written.
	second := visitor.login("Zoë Müller", "//evil.example/", "/account")
	if second == first {
		t.Errorf("login did not change the session cookie")
	}
	r = visitor.account("/account", "Zoë Müller", 1)
	if snap := sessionRE.FindStringSubmatch(r.body); snap == nil || strings.Contains(snap[1], "visits") ||
		!strings.Contains(snap[1], "Zoë Müller") || strings.Contains(snap[1], `\u00`) {
		t.Errorf("first page after the login: X-Session shown as %q, want only the new user, decoded (Zoë Müller)", snap)
	}
	if !strings.Contains(r.body, `id="snapshot"`) {
		t.Errorf("account page does not explain the snapshot (#snapshot):\n%s", r.body)
	}
	r.expectWhoami("Zoë Müller")
	replay(t, base, first)

	// Logout is POST only: a GET (a link, or an image on another site) is
	// refused and changes nothing.
	r = visitor.get("/logout", nil)
	r.expect(http.StatusMethodNotAllowed)
	if allow := r.header.Get("Allow"); allow != "POST" {
		t.Errorf("GET /logout: Allow %q, want POST", allow)
	}
	r.noSetCookie()
	visitor.account("/account", "Zoë Müller", 2)

	// Logout: the session is gone for this browser and for its cookie.
	r = visitor.post("/logout", nil)
	r.expect(http.StatusSeeOther)
	r.expectLocation("/")
	visitor.get("/account", nil).expectLogin("/account")
	replay(t, base, second)

	third := visitor.login("carol", `/\evil.example`, "/account")
	visitor.account("/account", "carol", 1)
	visitor.post("/logout", nil).expect(http.StatusSeeOther)
	replay(t, base, third)

	// Caddy's log never holds a session token.
	log := tail(s.caddy.log, 1<<30)
	for _, token := range []string{first, second, third} {
		if strings.Contains(log, token) {
			t.Errorf("Caddy's log contains a session cookie value")
		}
	}

	// Log out everywhere (everywhere_test.go).
	everywhere(t, s)
}

// spoofHeaders are what a client could send to impersonate someone or to
// change a session: the gateway removes every one of them.
func spoofHeaders() http.Header {
	mallory := `{"user":{"name":"mallory"},"visits":1000}`
	// Set as map entries, not with Set, so Go keeps the spelling:
	// Header.Set would canonicalize X_Session to X_session.
	return http.Header{
		"X-Session":         {mallory},
		"X_Session":         {mallory},
		"x_session":         {mallory},
		"X-Session-Meta":    {`{"new":false,"id":"000000000000","created":0,"expires":0}`},
		"X_SESSION_META":    {`{"new":false,"id":"000000000000","created":0,"expires":0}`},
		"X-Session-Update":  {mallory},
		"X_Session_Update":  {mallory},
		"X-Session-Patch":   {mallory},
		"X-Session-Control": {"destroy"},
	}
}

// replay checks that a session cookie from before a login or logout is dead.
func replay(t *testing.T, base, value string) {
	t.Helper()
	c := newClient(t, base)
	c.jar = false
	h := http.Header{"Cookie": {cookieName + "=" + value}}
	c.get("/account", h).expectLogin("/account")
	h["Accept"] = []string{"application/json"}
	c.get("/account", h).expect(http.StatusUnauthorized)
}

// client is a visitor: a cookie jar, redirects not followed so each step can
// be checked.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
	jar  bool
}

func newClient(t *testing.T, base string) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, jar: true, hc: &http.Client{
		Jar:     jar,
		Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

type reply struct {
	t      *testing.T
	req    string
	status int
	header http.Header
	body   string
}

func (c *client) get(path string, h http.Header) *reply { return c.do("GET", path, h, nil) }

func (c *client) post(path string, form url.Values) *reply { return c.do("POST", path, nil, form) }

// do sends a request as a browser would (Accept: text/html unless h says
// otherwise) and checks that no session protocol header reaches the client.
func (c *client) do(method, path string, h http.Header, form url.Values) *reply {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	hc := c.hc
	if !c.jar {
		hc = &http.Client{Timeout: c.hc.Timeout, CheckRedirect: c.hc.CheckRedirect}
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	r := &reply{t: c.t, req: method + " " + path, status: resp.StatusCode, header: resp.Header, body: string(b)}
	for name := range resp.Header {
		if n := strings.ToLower(strings.ReplaceAll(name, "_", "-")); strings.HasPrefix(n, "x-session") {
			c.t.Errorf("%s: response to the client has header %s", r.req, name)
		}
	}
	return r
}

// login posts the login form and returns the new session cookie's value.
func (c *client) login(name, next, wantLocation string) string {
	c.t.Helper()
	r := c.post("/login", url.Values{"name": {name}, "next": {next}})
	r.expect(http.StatusSeeOther)
	r.expectLocation(wantLocation)
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		if ck.Name == cookieName && ck.Value != "" {
			if !ck.HttpOnly {
				c.t.Errorf("session cookie is not HttpOnly: %v", r.header.Values("Set-Cookie"))
			}
			return ck.Value
		}
	}
	c.t.Fatalf("login: no %s cookie set; Set-Cookie: %q", cookieName, r.header.Values("Set-Cookie"))
	return ""
}

var (
	userRE    = regexp.MustCompile(`id="user">([^<]*)<`)
	counterRE = regexp.MustCompile(`id="counter">(\d+)<`)
	sessionRE = regexp.MustCompile(`(?s)id="session">(.*?)</pre>`)
	whoamiRE  = regexp.MustCompile(`id="whoami">([^<]*)<`)
)

// expectWhoami checks that a page names the logged-in user in its header
// and has a Log out button that POSTs.
func (r *reply) expectWhoami(user string) {
	r.t.Helper()
	if m := whoamiRE.FindStringSubmatch(r.body); m == nil || m[1] != user {
		r.t.Errorf("%s: page header shows user %q, want %q:\n%s", r.req, m, user, r.body)
	}
	if !strings.Contains(r.body, `<form method="post" action="/logout"`) {
		r.t.Errorf("%s: page has no Log out form (POST /logout):\n%s", r.req, r.body)
	}
}

// account loads a protected page and checks the user and counter it shows.
func (c *client) account(path, user string, counter int, h ...http.Header) *reply {
	c.t.Helper()
	var hdr http.Header
	if len(h) > 0 {
		hdr = h[0]
	}
	r := c.get(path, hdr)
	r.expect(http.StatusOK)
	if m := userRE.FindStringSubmatch(r.body); m == nil || m[1] != user {
		c.t.Errorf("%s: page shows user %q, want %q:\n%s", r.req, m, user, r.body)
	}
	if m := counterRE.FindStringSubmatch(r.body); m == nil || m[1] != strconv.Itoa(counter) {
		c.t.Errorf("%s: counter %q, want %d", r.req, m, counter)
	}
	if !strings.Contains(r.body, `id="session"`) || !strings.Contains(r.body, `id="logout"`) {
		c.t.Errorf("%s: page lacks #session or #logout:\n%s", r.req, r.body)
	}
	return r
}

func (r *reply) expect(status int) {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("%s: status %d, want %d; headers %v\n%s", r.req, r.status, status, r.header, r.body)
	}
}

func (r *reply) expectLocation(want string) {
	r.t.Helper()
	if got := r.header.Get("Location"); got != want {
		r.t.Errorf("%s: Location %q, want %q", r.req, got, want)
	}
}

// expectLogin checks a redirect to the login page that carries next.
func (r *reply) expectLogin(next string) {
	r.t.Helper()
	r.expect(http.StatusFound)
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil || loc.Host != "" || loc.Path != "/login" || loc.Query().Get("next") != next {
		r.t.Errorf("%s: Location %q, want /login?next=%s", r.req, r.header.Get("Location"), url.QueryEscape(next))
	}
	r.noSetCookie()
}

func (r *reply) noSetCookie() {
	r.t.Helper()
	if sc := r.header.Values("Set-Cookie"); len(sc) > 0 {
		r.t.Errorf("%s: unexpected Set-Cookie %q", r.req, sc)
	}
}

// view is what the backend received, from its /debug/headers.
type view struct {
	session string // X-Session
	meta    struct {
		New bool
		ID  string
	}
	cookie string
	// assertion is X-Session-Assertion, the signed assertion the gateway
	// adds when its Caddyfile has an assertion block ("" otherwise).
	assertion string
}

// backendView reads a /debug/headers reply and fails on any session header
// other than the gateway's own X-Session, X-Session-Meta and (with an
// assertion block) X-Session-Assertion, or on any of those arriving twice.
func backendView(t *testing.T, lang string, r *reply) view {
	t.Helper()
	r.expect(http.StatusOK)
	var headers map[string]string
	if err := json.Unmarshal([]byte(r.body), &headers); err != nil {
		t.Fatalf("/debug/headers: %v\n%s", err, r.body)
	}
	var v view
	seen := map[string]int{}
	for name, value := range headers {
		// PHP shows X-Session as HTTP_X_SESSION; both X-Session and X_Session
		// spellings end up there, so PHP relies on the value checks.
		norm := strings.ToLower(name)
		if lang == "php" {
			norm = strings.TrimPrefix(norm, "http_")
		} else if strings.Contains(norm, "_") && strings.HasPrefix(norm, "x_session") {
			t.Errorf("backend got header %s: %s", name, value)
			continue
		}
		norm = strings.ReplaceAll(norm, "_", "-")
		switch {
		case norm == "x-session":
			v.session = value
		case norm == "x-session-meta":
			if err := json.Unmarshal([]byte(value), &v.meta); err != nil {
				t.Errorf("backend got X-Session-Meta %q: %v", value, err)
			}
		case norm == "cookie":
			v.cookie = value
		case norm == "x-session-assertion":
			v.assertion = value
		case strings.HasPrefix(norm, "x-session"):
			t.Errorf("backend got header %s: %s", name, value)
		}
		seen[norm]++
	}
	for _, h := range []string{"x-session", "x-session-meta"} {
		if seen[h] != 1 {
			t.Errorf("backend got %s %d times, want once: %v", h, seen[h], headers)
		}
	}
	if seen["x-session-assertion"] > 1 {
		t.Errorf("backend got x-session-assertion %d times, want at most once: %v", seen["x-session-assertion"], headers)
	}
	return v
}
