package caddymodule

import (
	"net/url"
	"testing"
)

// TestLoginUpdateReplacesPatchKeeps is docs/protocol.md's "Logging in": a
// login answered with X-Session-Update and regenerate gives a new token and
// replaces the data, so nothing of the previous visitor or user (alice's
// visits and cart) carries over to bob; with X-Session-Patch and
// regenerate, every key the patch does not name is kept.
func TestLoginUpdateReplacesPatchKeeps(t *testing.T) {
	up := upstream(t)
	for _, tc := range []struct{ header, want string }{
		{"update", `{"user":{"name":"bob"}}`},
		{"patch", `{"cart":[1],"user":{"name":"bob"},"visits":3}`},
	} {
		t.Run(tc.header, func(t *testing.T) {
			g := startGateway(t, globalOptions(t), basicSession, up)
			g.get("/?patch=" + url.QueryEscape(`{"user":{"name":"alice"},"visits":3,"cart":[1]}`))
			alice := g.sessionCookie("session")
			if alice == "" {
				t.Fatal("no session for alice")
			}
			r := g.get("/?control=regenerate&" + tc.header + "=" + url.QueryEscape(`{"user":{"name":"bob"}}`))
			if r.Status != 200 {
				t.Fatalf("login: status %d", r.Status)
			}
			if bob := g.sessionCookie("session"); bob == "" || bob == alice {
				t.Fatalf("login kept the token (%q, was %q): regenerate must give a new one", bob, alice)
			}
			if got := g.get("/").RawSession; got != tc.want {
				t.Errorf("after a login with X-Session-%s + regenerate: X-Session %s, want %s", tc.header, got, tc.want)
			}
		})
	}
}
