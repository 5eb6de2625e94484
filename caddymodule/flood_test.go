package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestFloodKeepsUsersLoggedIn is issue 17 item 2 through Caddy: a route
// that writes for cookieless visitors lets anyone fill the memory store.
// A flood of three times max_sessions anonymous sessions must leave a
// logged-in user logged in, with subject configured (a subject marks the
// user) and without (the login's regenerate does), and must leave the
// login's tombstone: a late request with the old cookie still drops its
// change without expiring the new cookie. The metrics show the flood:
// writes_total{op="create"} (the rate of new sessions) and
// evictions_total{class="anonymous"}, with no logged_in evictions.
func TestFloodKeepsUsersLoggedIn(t *testing.T) {
	const maxSessions = 50
	for _, tc := range []struct{ name, extra string }{
		{"without subject", ""},
		{"with subject", "\t\tsubject user\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := upstream(t)
			options, admin := opsOptions(t)
			name := uniqueName(t)
			g := startGateway(t, options, sessionBody(tc.extra+fmt.Sprintf("\t\tstore memory %s {\n\t\t\tmax_sessions %d\n\t\t}\n", name, maxSessions)), up)

			// A login as it should be done: an anonymous session, then
			// regenerate with the user.
			user := startBrowser(t, g)
			user.get("/?" + patchQuery(`{"cart":1}`))
			oldCookie := user.sessionCookie("session")
			if r := user.get("/?control=regenerate&" + patchQuery(`{"user":"alice"}`)); r.Status != http.StatusOK {
				t.Fatalf("login: %d", r.Status)
			}
			if user.sessionCookie("session") == oldCookie {
				t.Fatal("regenerate kept the cookie")
			}
			// With subject, a user who logged in without regenerate is
			// kept too.
			var plain *gateway
			if tc.extra != "" {
				plain = startBrowser(t, g)
				plain.get("/?" + patchQuery(`{"user":"bob"}`))
			}

			before := scrape(t, admin)
			for i := range 3 * maxSessions {
				resp, err := http.Get(g.base + "/?" + patchQuery(fmt.Sprintf(`{"visit":%d}`, i)))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
					t.Fatalf("anonymous visit %d: %d, cookies %v", i, resp.StatusCode, resp.Cookies())
				}
			}
			after := scrape(t, admin)

			if r := user.get("/"); r.Session["user"] != "alice" {
				t.Errorf("after the flood the logged-in user has %v, want alice's session", r.Session)
			}
			if plain != nil {
				if r := plain.get("/"); r.Session["user"] != "bob" {
					t.Errorf("after the flood the user with a subject has %v, want bob's session", r.Session)
				}
			}
			// The login's tombstone survived: a late request with the old
			// cookie drops its change and sends no cookie at all.
			late := startBrowser(t, g)
			late.setCookie("session", oldCookie)
			if r := late.get("/?" + patchQuery(`{"late":1}`)); r.Header.Get("Set-Cookie") != "" {
				t.Errorf("a request with the regenerated-away cookie got Set-Cookie %q: the tombstone was evicted", r.Header.Get("Set-Cookie"))
			}

			creates := series("caddy_session_writes_total", "op", "create")
			if n := after[creates] - before[creates]; n != 3*maxSessions {
				t.Errorf("writes_total{op=create} rose by %v, want %d", n, 3*maxSessions)
			}
			anon := series("caddy_session_evictions_total", "class", "anonymous", "store", name)
			users := series("caddy_session_evictions_total", "class", "logged_in", "store", name)
			if after[anon]-before[anon] < 2*maxSessions || after[users] != 0 {
				t.Errorf("evictions: anonymous rose by %v, logged_in is %v; want at least %d and 0",
					after[anon]-before[anon], after[users], 2*maxSessions)
			}
		})
	}
}
