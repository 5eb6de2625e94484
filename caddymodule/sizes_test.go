package caddymodule

// Size limits (hardening issue 7, section 3) through a real Caddy: the
// cap is on the whole header line, it holds under concurrency and after
// the store round trip, and an over-cap session does not lock its user
// out.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// apacheLine is Apache 2.4's default LimitRequestFieldSize: the name,
// ": " and the value of one header line.
const apacheLine = 8190

// reload loads body into the running gateway's site, on the same port.
func (g *gateway) reload(t *testing.T, opts, body string, up *httptest.Server) {
	t.Helper()
	var port int
	fmt.Sscan(strings.TrimPrefix(g.base, "http://127.0.0.1:"), &port)
	if err := loadCaddyfile(t, siteCaddyfile(opts, port, body, up)); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// stringPatch is a patch setting key to a string of n bytes.
func stringPatch(key string, n int) string {
	return `{"` + key + `":"` + strings.Repeat("x", n) + `"}`
}

func TestSizeDefaultCapIsTheWholeLine(t *testing.T) {
	maxValue := protocol.DefaultMaxLine - len("X-Session: ")
	if protocol.DefaultMaxLine > apacheLine-100 {
		t.Fatalf("default cap %d does not fit Apache's %d with margin", protocol.DefaultMaxLine, apacheLine)
	}
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)

	t.Run("a stored session at the limit is accepted", func(t *testing.T) {
		v := g.visitor()
		a := 4000
		b := maxValue - len(`{"a":"","b":""}`) - a
		if r := v.get("/?" + patchQuery(stringPatch("a", a))); r.Status != 200 {
			t.Fatalf("first half: status %d", r.Status)
		}
		if r := v.get("/?" + patchQuery(stringPatch("b", b))); r.Status != 200 {
			t.Fatalf("second half (a session of exactly %d bytes): status %d", maxValue, r.Status)
		}
		r := v.get("/")
		if len(r.RawSession) != maxValue || len("X-Session: ")+len(r.RawSession) > apacheLine {
			t.Fatalf("X-Session of %d bytes, want %d", len(r.RawSession), maxValue)
		}
		// One byte more is refused, and the session stays as it was.
		if r := v.get("/?" + patchQuery(stringPatch("b", b+1))); r.Status != http.StatusBadGateway {
			t.Fatalf("one byte over the cap: status %d, want 502", r.Status)
		}
		if r := v.get("/"); len(r.RawSession) != maxValue {
			t.Fatalf("a refused change altered the session: %d bytes", len(r.RawSession))
		}
	})
	t.Run("a patch line at the limit is accepted", func(t *testing.T) {
		n := protocol.DefaultMaxLine - len("X-Session-Patch: ") - len(stringPatch("k", 0))
		v := g.visitor()
		if r := v.get("/?" + patchQuery(stringPatch("k", n+1))); r.Status != http.StatusBadGateway {
			t.Fatalf("a patch line of %d bytes: status %d, want 502", protocol.DefaultMaxLine+1, r.Status)
		}
		if r := v.get("/?" + patchQuery(stringPatch("k", n))); r.Status != 200 || v.sessionCookie("session") == "" {
			t.Fatalf("a patch line of exactly %d bytes: status %d", protocol.DefaultMaxLine, r.Status)
		}
	})
}

func TestSizeCapHoldsUnderConcurrency(t *testing.T) {
	maxValue := protocol.DefaultMaxLine - len("X-Session: ")
	onEachStore(t, func(t *testing.T, g *gateway) {
		g.get("/?" + patchQuery(`{"base":1}`))
		meet := uniqueName(t)
		var mu sync.Mutex
		var statuses []int
		var wg sync.WaitGroup
		for _, key := range []string{"a", "b"} {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, g.base+"/?block="+meet+"&"+patchQuery(stringPatch(key, 5000)), nil)
				r := g.do(req)
				mu.Lock()
				statuses = append(statuses, r.Status)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(statuses)
		if statuses[0] != 200 || (statuses[1] != http.StatusBadGateway && statuses[1] != http.StatusServiceUnavailable) {
			t.Fatalf("statuses %v, want one 200 and one 502 or 503", statuses)
		}
		r := g.get("/")
		_, hasA := r.Session["a"]
		_, hasB := r.Session["b"]
		if len(r.RawSession) > maxValue || hasA == hasB || r.Session["base"] != float64(1) {
			t.Fatalf("stored session of %d bytes (cap %d), a %v, b %v", len(r.RawSession), maxValue, hasA, hasB)
		}
	})
}

// TestSizeNumbersAgreeAcrossStores sends the same numbers through both
// stores: the answers and the data read back are the same, byte for
// byte.
func TestSizeNumbersAgreeAcrossStores(t *testing.T) {
	big := "[" + strings.TrimSuffix(strings.Repeat("1e20,", 400), ",") + "]"
	cases := []struct {
		name, patch string
		status      int
		want        string // the X-Session read back; "" for a refusal
	}{
		{"exponent numbers come back canonical", `{"n":[1e20,1e20,1e20]}`, 200,
			`{"n":[100000000000000000000,100000000000000000000,100000000000000000000]}`},
		{"exponent numbers that grow past the cap", `{"n":` + big + `}`, http.StatusBadGateway, ""},
		{"a number out of float64 range", `{"n":1e400}`, http.StatusBadGateway, ""},
		{"a negative one out of range", `{"n":[-1e400]}`, http.StatusBadGateway, ""},
		{"numbers keep their value", `{"n":[9223372036854775808,1.0,-0,1e-400,0.1,12345678901234567890]}`, 200,
			`{"n":[9223372036854775808,1,0,0,0.1,12345678901234567890]}`},
		{"integers at the int64 edges", `{"n":[9223372036854775807,-9223372036854775808,-9223372036854775809,2147483648,-0.0,1E2]}`, 200,
			`{"n":[9223372036854775807,-9223372036854775808,-9223372036854775809,2147483648,0,100]}`},
	}
	got := map[string][]string{}
	onEachStore(t, func(t *testing.T, g *gateway) {
		waitMongoReady(t)
		for _, tc := range cases {
			v := g.visitor()
			r := v.get("/?" + patchQuery(tc.patch))
			back := ""
			if r.Status == 200 {
				back = v.get("/").RawSession
			}
			if r.Status != tc.status || back != tc.want {
				t.Errorf("%s: status %d, read back %s; want %d, %s", tc.name, r.Status, back, tc.status, tc.want)
			}
			got[tc.name] = append(got[tc.name], fmt.Sprintf("%d %s", r.Status, back))
		}
	})
	for name, answers := range got {
		if len(answers) == 2 && answers[0] != answers[1] {
			t.Errorf("%s: the stores disagree: memory %s, MongoDB %s", name, answers[0], answers[1])
		}
	}
}

func TestSizeOverCapStoredSessionIsCleared(t *testing.T) {
	up := upstream(t)
	opts, logPath := loggingOptions(t)
	storeLine := "\t\tstore memory " + uniqueName(t) + "\n"
	g := startGateway(t, opts, sessionBody(storeLine), up)
	g.get("/?" + patchQuery(stringPatch("big", 3000)))
	old := g.sessionCookie("session")
	stored := g.get("/")
	if old == "" || stored.Meta.ID == "" {
		t.Fatal("no session")
	}

	g.reload(t, opts, sessionBody(storeLine+"\t\tmax_update_size 1000\n"), up)
	r := g.get("/")
	if r.Status != 200 || r.RawSession != "{}" || !r.Meta.New {
		t.Fatalf("over-cap session: status %d, X-Session of %d bytes, new %v; want a new visitor", r.Status, len(r.RawSession), r.Meta.New)
	}
	// The operator is told, once, by handle and sizes, never the data.
	var warned []logLine
	for _, l := range logLines(t, logPath) {
		if strings.Contains(l.Msg, "over max_update_size") {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 {
		t.Fatalf("%d log lines about the over-cap session, want 1", len(warned))
	}
	if w := warned[0]; w.Level != "warn" || w.Session != stored.Meta.ID || w.Bytes != len(stored.RawSession) || w.Limit != 1000 ||
		strings.Contains(w.raw, strings.Repeat("x", 16)) {
		t.Fatalf("the over-cap warning: want level warn, session %s, bytes %d, limit 1000 and no data:\n%.300s",
			stored.Meta.ID, len(stored.RawSession), w.raw)
	}
	if sc := r.Header.Get("Set-Cookie"); !strings.Contains(sc, "session=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("the over-cap session's cookie was not expired: %q", sc)
	}
	// Not locked out: the user gets a new session at once.
	if r := g.get("/?" + patchQuery(`{"user":"alice"}`)); r.Status != 200 || g.sessionCookie("session") == "" {
		t.Fatalf("after clearing: status %d, cookie %v", r.Status, g.sessionCookie("session") != "")
	}
	if r := g.get("/"); r.RawSession != `{"user":"alice"}` {
		t.Fatalf("the new session: %s", r.RawSession)
	}
	// The old session is gone for good.
	v := g.visitor()
	v.setCookie("session", old)
	if r := v.get("/"); r.RawSession != "{}" {
		t.Fatalf("the over-cap session came back: %d bytes", len(r.RawSession))
	}
}

// waitMongoReady waits until the running MongoDB stores have finished
// their start-up checks. A write before that, on FerretDB 1.x, may send a
// Decimal128 the server drops the connection for (a 503): the store
// learns only from the check that the server lacks Decimal128.
func waitMongoReady(t *testing.T) {
	t.Helper()
	for _, h := range runningHandlers() {
		st, ok := rawStore(h.store).(interface{ Ready() <-chan struct{} })
		if !ok {
			continue
		}
		select {
		case <-st.Ready():
		case <-time.After(20 * time.Second):
			t.Fatal("the MongoDB store did not finish its start-up checks")
		}
	}
}
