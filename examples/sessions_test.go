package examples

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// TestSessionsPage walks the Python example's sessions page: the Caddyfile
// route /account/sessions.json lists the logged-in user's sessions from
// Caddy's admin API (admin.api.session), for that user only, and the app's
// /account/sessions page shows them. It runs the example's own Caddyfile
// and the demo's Caddyfile.example with each store.
func TestSessionsPage(t *testing.T) {
	t.Parallel()
	t.Run("python", func(t *testing.T) {
		t.Parallel()
		sessionsWalk(t, example(t, "python"))
	})
	t.Run("demo-memory", func(t *testing.T) {
		t.Parallel()
		sessionsWalk(t, serve(t, "python", "../Caddyfile.example", "SESSION_STORE=memory"))
	})
	t.Run("demo-mongodb", func(t *testing.T) {
		t.Parallel()
		uri, db := mongotest.Database(t)
		sessionsWalk(t, serve(t, "python", "../Caddyfile.example",
			"SESSION_STORE=mongodb", "MONGODB_URI="+mongotest.WithDatabase(uri, db)))
	})
}

// listed is one entry of /account/sessions.json.
type listed struct {
	ID      string `json:"id"`
	Created int64  `json:"created"`
	Updated int64  `json:"updated"`
	Expires int64  `json:"expires"`
}

var handleRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

func sessionsWalk(t *testing.T, s site) {
	laptop, phone, other := newClient(t, s.base), newClient(t, s.base), newClient(t, s.base)
	tokens := []string{
		laptop.login("henry", "/account", "/account"),
		phone.login("henry", "/account", "/account"),
		other.login("ivy", "/account", "/account"),
	}
	laptopID, phoneID, otherID := handleOf(t, laptop), handleOf(t, phone), handleOf(t, other)

	// Each of henry's browsers sees both of henry's sessions, and no other.
	for name, c := range map[string]*client{"laptop": laptop, "phone": phone} {
		got := c.sessions(nil)
		if ids := idsOf(got); !slices.Equal(ids, sorted(laptopID, phoneID)) {
			t.Errorf("%s: /account/sessions.json lists %v, want henry's %v and %v (not ivy's %s)", name, ids, laptopID, phoneID, otherID)
		}
		for _, e := range got {
			if e.Created <= 0 || e.Updated < e.Created || e.Expires <= e.Updated {
				t.Errorf("%s: entry %+v, want 0 < created <= updated < expires", name, e)
			}
		}
	}
	if ids := idsOf(other.sessions(nil)); !slices.Equal(ids, []string{otherID}) {
		t.Errorf("ivy: /account/sessions.json lists %v, want only %s", ids, otherID)
	}

	// What the client adds cannot widen the call: its query string is
	// dropped (?store=none would be a 404 from the admin API), and a
	// browser's Origin and Sec-Fetch-* headers (which the admin endpoint
	// refuses) are removed.
	browser := http.Header{
		"Accept":         {"application/json"},
		"Origin":         {s.base},
		"Sec-Fetch-Mode": {"cors"},
		"Sec-Fetch-Site": {"same-origin"},
	}
	for name, path := range map[string]string{
		"query":   "/account/sessions.json?store=none",
		"browser": "/account/sessions.json",
	} {
		r := laptop.get(path, browser)
		r.expect(http.StatusOK)
		var got []listed
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || len(got) != 2 {
			t.Errorf("%s: %s = %s, want henry's 2 sessions", name, path, r.body)
		}
	}

	// Nothing else of the admin API is reachable through the route: a
	// DELETE (which would end sessions there) is refused before it, and
	// both sessions are still listed.
	for _, method := range []string{"DELETE", "POST"} {
		r := laptop.do(method, "/account/sessions.json", http.Header{"Accept": {"application/json"}}, nil)
		if r.status == http.StatusOK || strings.Contains(r.body, "revoked") {
			t.Errorf("%s /account/sessions.json: %d %s, want it refused", method, r.status, r.body)
		}
	}
	if n := len(laptop.sessions(nil)); n != 2 {
		t.Errorf("after DELETE: %d sessions listed, want 2", n)
	}

	// Without a session: 401 from require_session, nothing listed.
	anon := newClient(t, s.base)
	r := anon.get("/account/sessions.json", http.Header{"Accept": {"application/json"}})
	r.expect(http.StatusUnauthorized)

	// A subject that could steer the admin path elsewhere is not proxied:
	// "%68enry" would be unescaped to henry, "henry?x" and "henry#x" would
	// cut the path at henry, and "henry/.." would be another path.
	// The page says so (the limit of this route until a listing by session
	// exists), instead of a failed list.
	for _, name := range []string{"%68enry", "henry?store=none", "henry#x", "henry/..", ".henry", "..", "henry\\x", "bob/ops"} {
		c := newClient(t, s.base)
		c.login(name, "/account", "/account")
		r := c.get("/account/sessions.json", http.Header{"Accept": {"application/json"}})
		r.expect(http.StatusNotFound)
		if strings.Contains(r.body, laptopID) || !strings.Contains(r.body, `"error"`) {
			t.Errorf("subject %q: /account/sessions.json = %s, want the route's 404 error", name, r.body)
		}
		r = c.get("/account/sessions", nil)
		r.expect(http.StatusOK)
		if !strings.Contains(r.body, `id="sessions-limit"`) || strings.Contains(r.body, "/account/sessions.json") {
			t.Errorf("subject %q: /account/sessions does not state the limit:\n%s", name, r.body)
		}
	}
	// Names that fit are listed, non-ASCII letters included.
	zoe := newClient(t, s.base)
	zoe.login("Zoë O'Neil-Smith", "/account", "/account")
	if ids := idsOf(zoe.sessions(nil)); !slices.Equal(ids, []string{handleOf(t, zoe)}) {
		t.Errorf("Zoë O'Neil-Smith: listed %v, want her one session", ids)
	}

	// The app's page marks this browser's session and loads the list.
	r = laptop.get("/account/sessions", nil)
	r.expect(http.StatusOK)
	for _, want := range []string{`id="sessions" data-current="` + laptopID + `"`, `/account/sessions.json`, `id="logout-everywhere"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/account/sessions lacks %s:\n%s", want, r.body)
		}
	}

	// The phone logs out: the laptop's list has one session left.
	phone.post("/logout", nil).expect(http.StatusSeeOther)
	if ids := idsOf(laptop.sessions(nil)); !slices.Equal(ids, []string{laptopID}) {
		t.Errorf("after the phone's logout: listed %v, want only %s", ids, laptopID)
	}

	// The listing holds handles and times only: never a token.
	body := laptop.get("/account/sessions.json", http.Header{"Accept": {"application/json"}}).body
	for _, tok := range tokens {
		if strings.Contains(body, tok) {
			t.Errorf("/account/sessions.json holds a session token")
		}
	}

	// The admin endpoint logs each request with its headers: the route
	// sends it none but Host, so no session data (X-Session) is logged.
	admin := 0
	for _, line := range strings.Split(tail(s.caddy.log, 1<<30), "\n") {
		if !strings.Contains(line, `"/session/subjects/`) {
			continue
		}
		admin++
		if strings.Contains(strings.ToLower(line), "x-session") || strings.Contains(line, "visits") {
			t.Errorf("the admin endpoint logged session headers or data: %s", line)
		}
	}
	if admin == 0 {
		t.Errorf("Caddy's log has no admin request for /session/subjects/: the check above saw nothing")
	}
}

// sessions fetches /account/sessions.json as the page's script does.
func (c *client) sessions(h http.Header) []listed {
	c.t.Helper()
	if h == nil {
		h = http.Header{"Accept": {"application/json"}}
	}
	r := c.get("/account/sessions.json", h)
	r.expect(http.StatusOK)
	var got []listed
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		c.t.Fatalf("/account/sessions.json: %v\n%s", err, r.body)
	}
	for _, e := range got {
		if !handleRE.MatchString(e.ID) {
			c.t.Errorf("/account/sessions.json: id %q is not a 12 hex char handle", e.ID)
		}
	}
	return got
}

// handleOf is the client's session handle, as its backend sees it in
// X-Session-Meta.
func handleOf(t *testing.T, c *client) string {
	t.Helper()
	v := backendView(t, "python", c.get("/debug/headers", nil))
	if !handleRE.MatchString(v.meta.ID) {
		t.Fatalf("X-Session-Meta id %q, want a handle", v.meta.ID)
	}
	return v.meta.ID
}

func idsOf(list []listed) []string {
	ids := make([]string, 0, len(list))
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

func sorted(s ...string) []string { slices.Sort(s); return s }
