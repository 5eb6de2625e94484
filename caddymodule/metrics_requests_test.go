package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetricsEveryRequestCounted: caddy_session_requests_total counts
// every request through a session handler exactly once, with its
// outcome: also the ones the gateway answers itself or does not load a
// session for (a cross-origin 403, a failed load, a request the matcher
// skips), which it once left out. The sum over outcomes goes up by the
// number of requests sent.
func TestMetricsEveryRequestCounted(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, "\tsession /app/* {\n\t\tstore flaky\n\t\tsecret "+testSecret+"\n\t}\n", up)
	t.Cleanup(func() { flakyMode.Store(0) })
	outcomes := []string{"none", "valid", "invalid", "expired", "ambiguous", "skipped", "cross_origin", "too_early", "error"}
	req := func(name string) string { return series("caddy_session_requests_total", "outcome", name) }
	total := func(m map[string]float64) (n float64) {
		for _, o := range outcomes {
			n += m[req(o)]
		}
		return n
	}
	before := scrape(t, admin)

	sent := 0
	send := func(r *http.Request, status int) {
		t.Helper()
		sent++
		if got := g.do(r).Status; got != status {
			t.Fatalf("%s %s: status %d, want %d", r.Method, r.URL.Path, got, status)
		}
	}
	get := func(path string) *http.Request { r, _ := http.NewRequest(http.MethodGet, g.base+path, nil); return r }

	send(get("/other"), http.StatusOK)                                // skipped
	send(get("/app/?"+patchQuery(`{"user":"alice"}`)), http.StatusOK) // none
	send(get("/app/"), http.StatusOK)                                 // valid
	cross, _ := http.NewRequest(http.MethodPost, g.base+"/app/", strings.NewReader("x"))
	cross.Header.Set("Sec-Fetch-Site", "cross-site")
	send(cross, http.StatusForbidden) // cross_origin
	flakyMode.Store(2)
	send(get("/app/"), http.StatusServiceUnavailable) // error
	flakyMode.Store(0)

	after := scrape(t, admin)
	checkDeltas(t, before, after, map[string]float64{
		req("skipped"): 1, req("none"): 1, req("valid"): 1, req("cross_origin"): 1, req("error"): 1,
		req("invalid"): 0, req("expired"): 0, req("ambiguous"): 0, req("too_early"): 0,
	})
	if got := total(after) - total(before); got != float64(sent) {
		t.Errorf("caddy_session_requests_total went up by %v over all outcomes for %d requests", got, sent)
	}
}
