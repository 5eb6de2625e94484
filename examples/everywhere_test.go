package examples

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// everywhere walks "Log out everywhere" (X-Session-Control: revoke-all,
// with `subject user.name` in the example's Caddyfile): two browsers of one
// user and a browser of another user are logged in; a cross-origin press
// of the button is refused, a GET does nothing, and a real press ends both
// sessions of the user, the other browser on its next request, while the
// other user's session lives on. walk calls it for every example and store.
func everywhere(t *testing.T, s site) {
	laptop, phone, other := newClient(t, s.base), newClient(t, s.base), newClient(t, s.base)
	laptopToken := laptop.login("frank", "/account", "/account")
	phoneToken := phone.login("frank", "/account", "/account")
	other.login("grace", "/account", "/account")
	laptop.account("/account", "frank", 1)
	phone.account("/account", "frank", 1)
	other.account("/account", "grace", 1)
	if r := laptop.get("/account", nil); !strings.Contains(r.body, `id="logout-everywhere"`) {
		t.Errorf("account page has no #logout-everywhere button:\n%s", r.body)
	}

	// A form on another origin that posts to the button's endpoint is
	// refused before the app runs: 403 and the JSON body of the gateway.
	for name, h := range map[string]http.Header{
		"Sec-Fetch-Site": {"Sec-Fetch-Site": {"cross-site"}},
		"Origin":         {"Origin": {"http://evil.example"}},
	} {
		r := phone.do("POST", "/logout-everywhere", h, url.Values{})
		r.expect(http.StatusForbidden)
		var body map[string]string
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || body["error"] != "cross-origin request refused" {
			t.Errorf("cross-origin POST (%s): body %q, want {\"error\":\"cross-origin request refused\"}", name, r.body)
		}
		r.noSetCookie()
	}
	// A GET (a link, an image) is not the button: nothing ends.
	if r := phone.get("/logout-everywhere", nil); r.status == http.StatusSeeOther {
		t.Errorf("GET /logout-everywhere answered %d, want no redirect (only POST logs out everywhere)", r.status)
	}
	// The counters prove that both sessions are untouched.
	laptop.account("/account", "frank", 3) // 2 was the button check above
	phone.account("/account", "frank", 2)

	// The phone presses the button: home, and its cookie is expired.
	r := phone.post("/logout-everywhere", url.Values{})
	r.expect(http.StatusSeeOther)
	r.expectLocation("/")
	expired := false
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		expired = expired || ck.Name == cookieName && ck.MaxAge < 0
	}
	if !expired {
		t.Errorf("log out everywhere: Set-Cookie %q, want the session cookie expired", r.header.Values("Set-Cookie"))
	}
	phone.get("/account", nil).expectLogin("/account")

	// The laptop did nothing, and is logged out on its next request.
	laptop.get("/account", nil).expectLogin("/account")
	replay(t, s.base, laptopToken)
	replay(t, s.base, phoneToken)

	// Another user's session is not touched.
	other.account("/account", "grace", 2)

	// Without a session, the button only goes home (the app sends no
	// revoke-all, which the gateway would refuse with 502).
	r = laptop.post("/logout-everywhere", url.Values{})
	r.expect(http.StatusSeeOther)
	r.expectLocation("/")
	r.noSetCookie()
}
