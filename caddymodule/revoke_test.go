package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// revokeStores are the session bodies of the revoke tests, with subject.
var revokeStores = []struct {
	name string
	body func(t *testing.T) string
}{
	{"memory", func(t *testing.T) string {
		return sessionBody("\t\tstore memory " + uniqueName(t) + "\n\t\tsubject user\n")
	}},
	{"mongodb", func(t *testing.T) string {
		uri, db := mongotest.Database(t)
		return mongoSessionBody(uri, db, "", "\t\tsubject user\n")
	}},
}

// revokeLogin returns a browser of g logged in as user.
func revokeLogin(t *testing.T, g *gateway, user string) *gateway {
	t.Helper()
	b := g.visitor()
	if r := b.get("/?" + patchQuery(`{"user":"`+user+`"}`)); r.Status != http.StatusOK {
		t.Fatalf("login of %s: status %d", user, r.Status)
	}
	return b
}

// wantUser checks whose session browser b reads ("" for none).
func wantUser(t *testing.T, b *gateway, name, user string) {
	t.Helper()
	r := b.get("/")
	got, _ := r.Session["user"].(string)
	if got != user {
		t.Errorf("%s reads user %q, want %q", name, got, user)
	}
}

// TestRevokeOthersAndAll: revoke-others ends every other session of the
// subject and keeps this one (with regenerate: the password change);
// revoke-all ends them all, this one included. Other subjects are left
// alone. Both stores.
func TestRevokeOthersAndAll(t *testing.T) {
	for _, st := range revokeStores {
		t.Run(st.name, func(t *testing.T) {
			up := upstream(t)
			g := startGateway(t, globalOptions(t), st.body(t), up)
			a, b, c := revokeLogin(t, g, "alice"), revokeLogin(t, g, "alice"), revokeLogin(t, g, "alice")
			bob := revokeLogin(t, g, "bob")

			g.step(t, "revoke-others keeps this session only", func(t *testing.T, _ *gateway) {
				if r := a.get("/?control=revoke-others"); r.Status != http.StatusOK || r.Header.Get("Set-Cookie") != "" {
					t.Fatalf("revoke-others: status %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
				}
				wantUser(t, a, "the revoking browser", "alice")
				wantUser(t, b, "another browser of alice", "")
				wantUser(t, c, "a third browser of alice", "")
				wantUser(t, bob, "bob", "bob")
			})

			g.step(t, "regenerate with revoke-others: new token, others gone", func(t *testing.T, _ *gateway) {
				d := revokeLogin(t, g, "alice")
				old := a.sessionCookie("session")
				if r := a.get("/?control=regenerate,revoke-others"); r.Status != http.StatusOK {
					t.Fatalf("status %d", r.Status)
				}
				if a.sessionCookie("session") == old {
					t.Fatal("no new token")
				}
				wantUser(t, a, "the browser that changed its password", "alice")
				wantUser(t, d, "a browser logged in before", "")
				a.setCookie("session", old)
				wantUser(t, a, "the old token", "")
			})

			g.step(t, "revoke-all ends every session of the subject", func(t *testing.T, _ *gateway) {
				e, f := revokeLogin(t, g, "alice"), revokeLogin(t, g, "alice")
				r := e.get("/?control=revoke-all")
				if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
					t.Fatalf("revoke-all: status %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
				}
				wantUser(t, e, "the browser that logged out everywhere", "")
				wantUser(t, f, "another browser of alice", "")
				wantUser(t, bob, "bob", "bob")
			})
		})
	}
}

// TestRevokeRefused: without the subject option, or for a session with
// no subject value, revoke directives are bad upstream input: 502, and
// nothing is written or ended.
func TestRevokeRefused(t *testing.T) {
	up := upstream(t)
	for _, tc := range []struct{ name, body, user string }{
		{"no subject option", sessionBody(""), `"alice"`},
		{"session without a subject value", sessionBody("\t\tsubject user\n"), `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, globalOptions(t), tc.body, up)
			other := g.visitor()
			other.get("/?" + patchQuery(`{"user":"alice","n":1}`))
			g.get("/?" + patchQuery(`{"user":`+tc.user+`,"n":1}`))
			for _, control := range []string{"revoke-others", "revoke-all", "regenerate,revoke-others"} {
				before := g.sessionCookie("session")
				r := g.get("/?control=" + control + "&" + patchQuery(`{"n":2}`))
				if r.Status != http.StatusBadGateway || r.Header.Get("Set-Cookie") != "" {
					t.Fatalf("%s: status %d, Set-Cookie %q, want 502 and none", control, r.Status, r.Header.Get("Set-Cookie"))
				}
				if g.sessionCookie("session") != before {
					t.Fatalf("%s: the cookie changed", control)
				}
				if r := g.get("/"); r.Session["n"] != float64(1) {
					t.Fatalf("%s: the session changed: %v", control, r.Session)
				}
				if r := other.get("/"); r.Session["user"] != "alice" {
					t.Fatalf("%s: another session was ended", control)
				}
			}
		})
	}
}

// TestRevokeSubjectRule pins which subject each directive revokes by
// when the same response also changes the subject (protocol.md):
// revoke-others keeps the session, changed, so it goes by the subject
// after the change; revoke-all ends the session like destroy, so the
// response's change is ignored and it goes by the subject the session
// had when the request arrived. Both stores.
func TestRevokeSubjectRule(t *testing.T) {
	for _, st := range revokeStores {
		t.Run(st.name, func(t *testing.T) {
			up := upstream(t)
			g := startGateway(t, globalOptions(t), st.body(t), up)
			alice1, alice2, bob1 := revokeLogin(t, g, "alice"), revokeLogin(t, g, "alice"), revokeLogin(t, g, "bob")

			g.step(t, "revoke-all with a patch to another subject ends the sessions of the stored one", func(t *testing.T, _ *gateway) {
				r := alice1.get("/?control=revoke-all&" + patchQuery(`{"user":"bob"}`))
				if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
					t.Fatalf("revoke-all: status %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
				}
				wantUser(t, alice1, "the browser that logged out everywhere", "")
				wantUser(t, alice2, "alice's other browser", "")
				wantUser(t, bob1, "bob, named only by the ignored patch", "bob")
			})

			g.step(t, "revoke-all with a patch removing the subject still revokes", func(t *testing.T, _ *gateway) {
				alice3, alice4 := revokeLogin(t, g, "alice"), revokeLogin(t, g, "alice")
				if r := alice3.get("/?control=revoke-all&" + patchQuery(`{"user":null}`)); r.Status != http.StatusOK {
					t.Fatalf("revoke-all with the subject patched away: status %d, want 200", r.Status)
				}
				wantUser(t, alice3, "the browser that logged out everywhere", "")
				wantUser(t, alice4, "alice's other browser", "")
			})

			g.step(t, "revoke-others goes by the subject after the change", func(t *testing.T, _ *gateway) {
				bob2, carol := revokeLogin(t, g, "bob"), revokeLogin(t, g, "carol")
				if r := bob2.get("/?control=revoke-others&" + patchQuery(`{"user":"carol"}`)); r.Status != http.StatusOK {
					t.Fatalf("revoke-others: status %d", r.Status)
				}
				wantUser(t, bob2, "the browser that became carol", "carol")
				wantUser(t, carol, "carol's other browser", "")
				wantUser(t, bob1, "bob's other browser", "bob")
			})
		})
	}
}
