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

// TestSessionsPage walks the Python example's devices page and the
// gateway's devices endpoint behind it: GET /api/devices lists the
// logged-in user's sessions, for that user only, and DELETE
// /api/devices/<id> ends one of them; Caddy answers both itself, so no
// admin API is exposed. It runs the example's own Caddyfile and the demo's
// Caddyfile.example with each store.
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

// listed is one entry of GET /api/devices.
type listed struct {
	ID        string `json:"id"`
	Current   bool   `json:"current"`
	Created   int64  `json:"created"`
	LastSeen  int64  `json:"last_seen"`
	Expires   int64  `json:"expires"`
	UserAgent string `json:"user_agent"`
	IP        string `json:"ip"`
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

	// Each of henry's browsers sees both of henry's sessions, its own
	// marked current, and no other.
	for name, c := range map[string]*client{"laptop": laptop, "phone": phone} {
		got := c.sessions(nil)
		if ids := idsOf(got); !slices.Equal(ids, sorted(laptopID, phoneID)) {
			t.Errorf("%s: /api/devices lists %v, want henry's %v and %v (not ivy's %s)", name, ids, laptopID, phoneID, otherID)
		}
		own := handleOf(t, c)
		for _, e := range got {
			if e.Created <= 0 || e.LastSeen < e.Created || e.Expires <= e.LastSeen || e.IP != "127.0.0.0/24" || e.UserAgent == "" {
				t.Errorf("%s: entry %+v, want 0 < created <= last_seen < expires, the network and the browser", name, e)
			}
			if e.Current != (e.ID == own) {
				t.Errorf("%s: entry %s current=%v, want it true for %s only", name, e.ID, e.Current, own)
			}
		}
	}
	if ids := idsOf(other.sessions(nil)); !slices.Equal(ids, []string{otherID}) {
		t.Errorf("ivy: /api/devices lists %v, want only %s", ids, otherID)
	}

	// The list comes from the session: a query string changes nothing.
	if ids := idsOf(laptop.sessions(nil, "?user=ivy&store=none")); !slices.Equal(ids, sorted(laptopID, phoneID)) {
		t.Errorf("with a query string: listed %v", ids)
	}

	// Another user's session, or none, cannot be ended: 404 either way.
	for _, id := range []string{otherID, "000000000000", "x"} {
		r := laptop.do("DELETE", "/api/devices/"+id, http.Header{"Accept": {"application/json"}}, nil)
		r.expect(http.StatusNotFound)
	}
	if ids := idsOf(other.sessions(nil)); !slices.Equal(ids, []string{otherID}) {
		t.Errorf("ivy after henry's DELETEs: %v", ids)
	}
	// A cross-origin DELETE is refused before anything is ended.
	r := laptop.do("DELETE", "/api/devices/"+phoneID, http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, nil)
	r.expect(http.StatusForbidden)
	if n := len(laptop.sessions(nil)); n != 2 {
		t.Errorf("after a cross-origin DELETE: %d sessions listed, want 2", n)
	}

	// Without a session: 401 from the gateway, nothing listed.
	anon := newClient(t, s.base)
	anon.get("/api/devices", http.Header{"Accept": {"application/json"}}).expect(http.StatusUnauthorized)

	// Any name is listed, those that would need escaping in a URL too:
	// the list is found by the session's own subject.
	for _, name := range []string{"%68enry", "henry?store=none", "henry/..", "..", "Zo\u00eb O'Neil-Smith"} {
		c := newClient(t, s.base)
		c.login(name, "/account", "/account")
		if ids := idsOf(c.sessions(nil)); !slices.Equal(ids, []string{handleOf(t, c)}) {
			t.Errorf("%q: listed %v, want its one session", name, ids)
		}
	}

	// The app's page (at its new and its old address) loads the list.
	for _, path := range []string{"/account/devices", "/account/sessions"} {
		r = laptop.get(path, nil)
		r.expect(http.StatusOK)
		for _, want := range []string{`id="devices"`, `/api/devices`, `id="logout-everywhere"`} {
			if !strings.Contains(r.body, want) {
				t.Errorf("%s lacks %s:\n%s", path, want, r.body)
			}
		}
	}

	// The laptop ends the phone: the phone is logged out.
	laptop.do("DELETE", "/api/devices/"+phoneID, http.Header{"Accept": {"application/json"}}, nil).expect(http.StatusOK)
	if ids := idsOf(laptop.sessions(nil)); !slices.Equal(ids, []string{laptopID}) {
		t.Errorf("after ending the phone: listed %v, want only %s", ids, laptopID)
	}
	phone.get("/api/devices", http.Header{"Accept": {"application/json"}}).expect(http.StatusUnauthorized)

	// The listing holds handles, times, the browser and the network: never
	// a token or session data.
	body := laptop.get("/api/devices", http.Header{"Accept": {"application/json"}}).body
	for _, tok := range tokens {
		if strings.Contains(body, tok) {
			t.Errorf("/api/devices holds a session token")
		}
	}
	if strings.Contains(body, "visits") || strings.Contains(body, `"user"`) {
		t.Errorf("/api/devices holds session data: %s", body)
	}
}

// sessions fetches GET /api/devices as the page's script does.
func (c *client) sessions(h http.Header, query ...string) []listed {
	c.t.Helper()
	if h == nil {
		h = http.Header{"Accept": {"application/json"}}
	}
	r := c.get("/api/devices"+strings.Join(query, ""), h)
	r.expect(http.StatusOK)
	if r.header.Get("Cache-Control") != "no-store" {
		c.t.Errorf("/api/devices: Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
	}
	var got []listed
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		c.t.Fatalf("/api/devices: %v\n%s", err, r.body)
	}
	for _, e := range got {
		if !handleRE.MatchString(e.ID) {
			c.t.Errorf("/api/devices: id %q is not a 12 hex char handle", e.ID)
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
