package caddymodule

import (
	"net/http"
	"testing"
	"unsafe"

	"github.com/sessiongate/caddy-session/cookie"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// allocBudgets are the allocation budgets of the request path, with the
// memory store and an upstream that answers at once: the one place they
// are written. They count the handler's allocations only, not the
// request's own (Caddy's preparation, the test's set-up). A change that
// needs more raises its budget here, in the same commit, saying why; one
// that needs fewer lowers it (the test logs when a budget is loose). The
// history of the figures is in docs/benchmarks.md.
var allocBudgets = map[string]float64{
	// The response writer, which holds the request's state (one
	// allocation for both), and the placeholder function handed to the
	// request's replacer.
	"request without a cookie": 2,
	// The above, and the X-Session and X-Session-Meta values, cut from one
	// string (state.requestValues). Found records are shared read-only
	// snapshots, the cookie's store key comes from the verified-value
	// cache, and the one-value headers are backed by the state.
	"request with a valid cookie, unchanged": 3,
	// With a read scope: the projection comes from the handler's cache,
	// the meta value costs the one allocation.
	"request with a valid cookie, unchanged, read scope": 3,
	// The above, and the patch: encoding/json decoding the upstream's
	// header and encoding the result (internal/protocol), and the new
	// record.
	"request with a valid cookie and a patch": 54,
	// The token's bytes for the hash and the key's hex string
	// (hex.EncodeToString would make one more). Off the path of a
	// returning visitor: the verified-value cache knows the key.
	"cookie.Key": 2,
}

// TestAllocBudgets holds the request path to allocBudgets.
func TestAllocBudgets(t *testing.T) {
	const runs = 200
	for _, c := range []struct {
		name     string
		config   Handler // the handler's config, the test secret aside
		cookie   bool    // the request carries a valid session cookie
		upstream caddyhttp.HandlerFunc
	}{
		{"request without a cookie", Handler{}, false, upstreamOK},
		{"request with a valid cookie, unchanged", Handler{}, true, upstreamOK},
		{"request with a valid cookie, unchanged, read scope", Handler{Read: []string{"user.name"}}, true, upstreamOK},
		{"request with a valid cookie and a patch", Handler{}, true, upstreamPatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := benchHandlerOf(t, &c.config)
			value := ""
			if c.cookie {
				value = benchCookie(t, h)
			}
			// The requests are made beforehand: preparing one is Caddy's
			// work, not the handler's.
			reqs := make([]*http.Request, runs+1)
			for i := range reqs {
				reqs[i] = newBenchRequest(value)
			}
			w := &benchWriter{h: http.Header{}}
			i := 0
			var failed error
			got := testing.AllocsPerRun(runs, func() {
				clear(w.h)
				if err := h.ServeHTTP(w, reqs[i], c.upstream); err != nil && failed == nil {
					failed = err
				}
				i++
			})
			if failed != nil {
				t.Fatal(failed)
			}
			checkBudget(t, c.name, got)
		})
	}
	t.Run("cookie.Key", func(t *testing.T) {
		token := cookie.NewToken()
		checkBudget(t, "cookie.Key", testing.AllocsPerRun(runs, func() { _ = cookie.Key(token) }))
	})
}

// checkBudget compares got, the allocations of one run of name, with
// its budget.
func checkBudget(t *testing.T, name string, got float64) {
	t.Helper()
	budget, ok := allocBudgets[name]
	switch {
	case !ok:
		t.Fatalf("no allocation budget for %q", name)
	case got > budget:
		t.Errorf("%s: %v allocations, budget %v", name, got, budget)
	case got < budget:
		t.Logf("%s: %v allocations, under the budget of %v: lower it", name, got, budget)
	}
}

// TestStateCommitFieldsFirst: the state fields commit reads after the
// upstream answered share the first cache lines of the response writer
// (by then the request's memory has usually left the CPU cache; see
// docs/benchmarks.md). Keep them at the head of state.
func TestStateCommitFieldsFirst(t *testing.T) {
	var rw responseWriter
	base := uintptr(unsafe.Pointer(&rw))
	end := func(p unsafe.Pointer, size uintptr) uintptr { return uintptr(p) - base + size }
	const lines = 2 * 64
	st := &rw.st
	for _, f := range []struct {
		name string
		end  uintptr
	}{
		{"h", end(unsafe.Pointer(&st.h), unsafe.Sizeof(st.h))},
		{"rec", end(unsafe.Pointer(&st.rec), unsafe.Sizeof(st.rec))},
		{"the flags", end(unsafe.Pointer(&st.touchDue), unsafe.Sizeof(st.touchDue))},
		{"legacyExpire", end(unsafe.Pointer(&st.legacyExpire), unsafe.Sizeof(st.legacyExpire))},
		{"wroteHeader", end(unsafe.Pointer(&rw.wroteHeader), unsafe.Sizeof(rw.wroteHeader))},
		{"failure", end(unsafe.Pointer(&rw.failure), unsafe.Sizeof(rw.failure))},
	} {
		if f.end > lines {
			t.Errorf("state.%s ends at byte %d of the response writer, past its first two cache lines (%d bytes)", f.name, f.end, lines)
		}
	}
}
