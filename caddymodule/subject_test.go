package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// loginWith starts a new browser logged in with the JSON value user (any
// JSON) as its subject, and returns it with its session's handle.
func loginWith(t *testing.T, g *gateway, user string) (*gateway, string) {
	t.Helper()
	b := startBrowser(t, g)
	if r := b.get("/?" + patchQuery(`{"user":`+user+`}`)); r.Status != http.StatusOK {
		t.Fatalf("login as %s: %d %s", user, r.Status, r.Body)
	}
	r := b.get("/")
	if r.Meta.New {
		t.Fatalf("login as %s did not stick", user)
	}
	return b, r.Meta.ID
}

// listed runs `caddy session list` with args and returns the handles it
// printed.
func listed(t *testing.T, admin string, args ...string) string {
	t.Helper()
	out, err := runSessionCommand(t, append([]string{"list", "--address", admin}, args...)...)
	if err != nil {
		t.Fatalf("list %q: %v", args, err)
	}
	return out
}

// TestSubjectTypesDoNotCollide is issue 17 item 3 through Caddy: the user
// whose id is the string "42" and the user whose id is the number 42 are
// two subjects. revoke-others from one leaves the other logged in, and the
// command line lists each on its own (--subject for the string,
// --subject-json for any JSON value).
func TestSubjectTypesDoNotCollide(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, subjectSession(uniqueName(t)), up)
	number, hNumber := loginWith(t, g, `42`)
	str, hString := loginWith(t, g, `"42"`)
	boolean, hBool := loginWith(t, g, `true`)
	strTrue, hStrTrue := loginWith(t, g, `"true"`)

	if out := listed(t, admin, "--subject", "42"); !strings.Contains(out, hString) || strings.Contains(out, hNumber) {
		t.Errorf("list --subject 42 (the string):\n%s\nwant %s only", out, hString)
	}
	if out := listed(t, admin, "--subject-json", "42"); !strings.Contains(out, hNumber) || strings.Contains(out, hString) {
		t.Errorf("list --subject-json 42 (the number):\n%s\nwant %s only", out, hNumber)
	}
	if out := listed(t, admin, "--subject-json", `"42"`); !strings.Contains(out, hString) || strings.Contains(out, hNumber) {
		t.Errorf(`list --subject-json '"42"' (the string):`+"\n%s\nwant %s only", out, hString)
	}
	if out := listed(t, admin, "--subject-json", "true"); !strings.Contains(out, hBool) || strings.Contains(out, hStrTrue) {
		t.Errorf("list --subject-json true:\n%s\nwant %s only", out, hBool)
	}

	// The string user ends its other sessions: the number user stays.
	other, _ := loginWith(t, g, `"42"`)
	if r := other.get("/?control=revoke-others"); r.Status != http.StatusOK {
		t.Fatalf("revoke-others: %d %s", r.Status, r.Body)
	}
	if loggedIn(t, str) || !loggedIn(t, other) || !loggedIn(t, number) {
		t.Fatalf("revoke-others by \"42\": string session in %v, own %v, number 42's %v; want false, true, true",
			loggedIn(t, str), loggedIn(t, other), loggedIn(t, number))
	}
	if r := strTrue.get("/?control=revoke-all"); r.Status != http.StatusOK {
		t.Fatalf("revoke-all: %d %s", r.Status, r.Body)
	}
	if loggedIn(t, strTrue) || !loggedIn(t, boolean) {
		t.Fatal(`revoke-all by "true" ended the session of true`)
	}
	out, err := runSessionCommand(t, "revoke", "--subject-json", "42", "--address", admin)
	if err != nil || out != "revoked 1 session(s)\n" || loggedIn(t, number) || !loggedIn(t, other) {
		t.Fatalf("revoke --subject-json 42: %v %q", err, out)
	}
}

// TestSubjectRefusedWhenUnindexable: a subject value that could not be
// listed or revoked is refused with 502 at the write (issue 17 items 3
// and 7): an object, an array, a string holding NUL, or one over
// store.MaxSubjectLen. A subject of exactly the limit is written and can
// be listed and revoked through the command line.
func TestSubjectRefusedWhenUnindexable(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, subjectSession(uniqueName(t)), up)
	long := strings.Repeat("a", store.MaxSubjectLen)
	for _, bad := range []string{`{"id":1}`, `[1]`, `"a\u0000b"`, `"` + long + `b"`} {
		b := startBrowser(t, g)
		r := b.get("/?" + patchQuery(`{"user":`+bad+`}`))
		if r.Status != http.StatusBadGateway || b.sessionCookie("session") != "" {
			t.Errorf("subject %.30s...: status %d, cookie %v; want 502 and no session", bad, r.Status, b.sessionCookie("session") != "")
		}
		// An existing session is left as it was.
		a, _ := loginWith(t, g, `"x"`)
		if r := a.get("/?" + patchQuery(`{"user":`+bad+`}`)); r.Status != http.StatusBadGateway {
			t.Errorf("update to subject %.30s...: status %d, want 502", bad, r.Status)
		}
		if r := a.get("/"); r.Session["user"] != "x" {
			t.Errorf("session after a refused subject: %v", r.Session)
		}
	}
	b, h := loginWith(t, g, `"`+long+`"`)
	if out := listed(t, admin, "--subject", long); !strings.Contains(out, h) {
		t.Fatalf("list a subject of %d bytes:\n%s", len(long), out)
	}
	out, err := runSessionCommand(t, "revoke", "--subject", long, "--address", admin)
	if err != nil || out != "revoked 1 session(s)\n" || loggedIn(t, b) {
		t.Fatalf("revoke a subject of %d bytes: %v %q", len(long), err, out)
	}
}

// TestSubjectAnyValueRoundTrips is issue 17 item 7: `caddy session list`
// and `revoke` reach every subject, dot-segments and escapes included.
func TestSubjectAnyValueRoundTrips(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, subjectSession(uniqueName(t)), up)
	subjects := []string{".", "..", "...", "a/../b", "../x", "team/x", "%2E%2E", "a b?c#d", "é"}
	handles := map[string]string{}
	browsers := map[string]*gateway{}
	for _, s := range subjects {
		browsers[s], handles[s] = loginWith(t, g, fmt.Sprintf("%q", s))
	}
	for _, s := range subjects {
		out := listed(t, admin, "--subject", s)
		for _, other := range subjects {
			if strings.Contains(out, handles[other]) != (other == s) {
				t.Errorf("list --subject %q:\n%s\nwant only %s", s, out, handles[s])
				break
			}
		}
	}
	for _, s := range []string{"..", "."} {
		out, err := runSessionCommand(t, "revoke", "--subject", s, "--address", admin)
		if err != nil || out != "revoked 1 session(s)\n" || loggedIn(t, browsers[s]) {
			t.Fatalf("revoke --subject %q: %v %q", s, err, out)
		}
	}
	if !loggedIn(t, browsers["..."]) || !loggedIn(t, browsers["a/../b"]) {
		t.Fatal("revoking . and .. ended other subjects' sessions")
	}
	if status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/"+url.PathEscape(strings.Repeat("a", store.MaxSubjectLen+1))); status != http.StatusBadRequest {
		t.Fatalf("admin API, subject over the limit: %d %s", status, body)
	}
}

// TestSubjectFilledIn is issue 17 item 8: sessions written before the
// subject option was set have no subject stored. revoke-all from one
// ends its user's sessions instead of answering 502, and the next touch
// stores the subject (a compare-and-set update), so revoke-all and the
// admin API find the session from then on.
func TestSubjectFilledIn(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	name := uniqueName(t)
	port := freePort(t)
	proxy := "\treverse_proxy " + strings.TrimPrefix(up.URL, "http://") + "\n"
	without := fmt.Sprintf("\tsession {\n\t\tsecret %s\n\t\tstore memory %s\n\t}\n", testSecret, name)
	g := siteAt(t, options, port, without+proxy)
	old1, h1 := loginWith(t, g, `"alice"`)
	old2, _ := loginWith(t, g, `"alice"`)
	bob, _ := loginWith(t, g, `"bob"`)

	siteAt(t, options, port, subjectSession(name)+proxy) // the same memory store, now with subject
	if out := listed(t, admin, "--subject", "alice"); strings.Contains(out, h1) {
		t.Fatalf("a session written without subject is listed before any write:\n%s", out)
	}
	// A touch fills the subject in.
	skew(t, 2*time.Minute)
	if r := old1.get("/"); r.Status != http.StatusOK || r.Meta.New {
		t.Fatalf("touch: %d, new %v", r.Status, r.Meta.New)
	}
	if out := listed(t, admin, "--subject", "alice"); !strings.Contains(out, h1) {
		t.Fatalf("after the touch, alice's sessions:\n%s\nwant %s", out, h1)
	}
	// revoke-all from a session still without a stored subject: no 502,
	// it ends itself and the alice session the touch filled in.
	if r := old2.get("/?control=revoke-all"); r.Status != http.StatusOK {
		t.Fatalf("revoke-all from a session without a stored subject: %d %s", r.Status, r.Body)
	}
	if loggedIn(t, old1) || loggedIn(t, old2) || !loggedIn(t, bob) {
		t.Fatalf("after revoke-all: old1 %v, old2 %v, bob %v; want false, false, true", loggedIn(t, old1), loggedIn(t, old2), loggedIn(t, bob))
	}
}

// TestSubjectFillNeverOverwritesNewer is the other half of issue 17 item
// 8: the touch that fills in a missing subject is compare-and-set. A
// request that loaded the session before another request changed the
// subject (alice to carol) must not write alice back when its touch
// runs: the newer subject stands.
func TestSubjectFillNeverOverwritesNewer(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	name := uniqueName(t)
	port := freePort(t)
	proxy := "\treverse_proxy " + strings.TrimPrefix(up.URL, "http://") + "\n"
	g := siteAt(t, options, port, fmt.Sprintf("\tsession {\n\t\tsecret %s\n\t\tstore memory %s\n\t}\n", testSecret, name)+proxy)
	b, h := loginWith(t, g, `"alice"`)
	siteAt(t, options, port, subjectSession(name)+proxy) // now with subject
	skew(t, 2*time.Minute)                               // the next request's touch is due

	gate := uniqueName(t)
	slow := b.goGet("/?wait=" + gate) // loads alice, no subject stored; its touch is due
	<-gateFor(gate).arrived
	if r := b.get("/?" + patchQuery(`{"user":"carol"}`)); r.Status != http.StatusOK {
		t.Fatalf("change of subject: %d", r.Status)
	}
	close(gateFor(gate).open)
	if r := <-slow; r.Status != http.StatusOK {
		t.Fatalf("the slow request: %d", r.Status)
	}
	if out := listed(t, admin, "--subject", "carol"); !strings.Contains(out, h) {
		t.Errorf("carol's sessions:\n%s\nwant %s", out, h)
	}
	if out := listed(t, admin, "--subject", "alice"); strings.Contains(out, h) {
		t.Errorf("the late touch wrote the old subject back: alice lists %s", h)
	}
	if r := b.get("/"); r.Session["user"] != "carol" {
		t.Errorf("session after the race: %v", r.Session)
	}
}

// TestRevokeOldHandleAfterLogin is issue 17 item 4 through Caddy: after a
// login (regenerate), the old handle names only a tombstone. Revoking it
// through the admin API answers {"revoked":0}, leaves the user logged in,
// and leaves the tombstone its window: a late request with the old cookie
// still drops its change without a cookie.
func TestRevokeOldHandleAfterLogin(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, subjectSession(uniqueName(t)), up)
	b := startBrowser(t, g)
	b.get("/?" + patchQuery(`{"cart":1}`))
	old := b.get("/").Meta.ID
	oldCookie := b.sessionCookie("session")
	if r := b.get("/?control=regenerate&" + patchQuery(`{"user":"alice"}`)); r.Status != http.StatusOK {
		t.Fatalf("login: %d", r.Status)
	}
	if status, body := adminDo(t, admin, http.MethodDelete, "/session/sessions/"+old); status != http.StatusOK || strings.TrimSpace(body) != `{"revoked":0}` {
		t.Fatalf("revoke the old handle: %d %s, want {\"revoked\":0}", status, body)
	}
	if r := b.get("/"); r.Session["user"] != "alice" {
		t.Fatalf("the user after revoking the old handle: %v", r.Session)
	}
	late := startBrowser(t, g)
	late.setCookie("session", oldCookie)
	if r := late.get("/?" + patchQuery(`{"late":1}`)); r.Header.Get("Set-Cookie") != "" {
		t.Errorf("a late request with the old cookie got Set-Cookie %q: the tombstone was removed", r.Header.Get("Set-Cookie"))
	}
}
