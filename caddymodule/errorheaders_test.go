package caddymodule

import (
	"net/http"
	"slices"
	"testing"
)

// TestErrorAnswerRestoresServer is issue 17 item 10: reverse_proxy
// replaces Caddy's Server header with the upstream's, and an error answer
// must go out with the headers as they were before the route ran, values
// included, not with the upstream's. Both ways of keeping them are
// covered: in place (up to four headers) and cloned (more).
func TestErrorAnswerRestoresServer(t *testing.T) {
	up := upstream(t)
	for _, tc := range []struct{ name, body string }{
		{"few earlier headers", sessionBody("")},
		{"more earlier headers than kept in place", "\theader {\n\t\tX-Early-1 1\n\t\tX-Early-2 2\n\t\tX-Early-3 3\n\t\tX-Early-4 4\n\t}\n" + sessionBody("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, globalOptions(t), tc.body, up)
			ok := g.get("/?header=Server:upstream-app")
			if got := ok.Header.Values("Server"); !slices.Equal(got, []string{"upstream-app"}) {
				t.Fatalf("a good answer carries the upstream's Server %q; the test's premise is gone", got)
			}
			bad := g.get("/?header=Server:upstream-app&" + patchQuery(`{"a":`))
			if bad.Status != http.StatusBadGateway {
				t.Fatalf("malformed patch: status %d, want 502", bad.Status)
			}
			if got := bad.Header.Values("Server"); !slices.Equal(got, []string{"Caddy"}) {
				t.Errorf("502 answer: Server %q, want exactly [Caddy]", got)
			}
			if tc.name != "few earlier headers" && (bad.Header.Get("X-Early-1") != "1" || bad.Header.Get("X-Early-4") != "4") {
				t.Errorf("502 answer lost the earlier headers: %v", bad.Header)
			}
		})
	}
}
