package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
)

// testSecret is a 32-byte signing key for tests.
const testSecret = "0123456789abcdef0123456789abcdef"

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// upstream is a real HTTP server that plays the application: it reports
// what it received and answers with the session headers the test asks
// for through query parameters (update, patch, control, status).
func upstream(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		q := r.URL.Query()
		// The body is read first, so request trailers have arrived.
		_, _ = io.Copy(io.Discard, r.Body)
		if q.Get("wait") != "" {
			gateFor(q.Get("wait")).pass()
		}
		if q.Get("block") != "" {
			blockUntil(q.Get("block"))
		}
		if d, err := time.ParseDuration(q.Get("delay")); err == nil {
			time.Sleep(d)
		}
		for _, hv := range q["header"] { // header=<name>:<value>
			name, value, _ := strings.Cut(hv, ":")
			w.Header().Add(name, value)
		}
		for _, tv := range q["trailer"] { // trailer=<name>:<value>, sent after the body
			name, _, _ := strings.Cut(tv, ":")
			w.Header().Add("Trailer", name)
		}
		if q.Has("hints") {
			w.Header().Set("X-Session-Patch", `{"evil":1}`)
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		}
		for _, name := range []string{"update", "patch", "control"} {
			if q.Has(name) {
				w.Header().Set("X-Session-"+name, q.Get(name))
			}
		}
		if q.Has("addkey") { // a full update built from the snapshot, as an app would
			var data map[string]any
			_ = json.Unmarshal([]byte(r.Header.Get("X-Session")), &data)
			data[q.Get("addkey")] = true
			b, _ := json.Marshal(data)
			w.Header().Set("X-Session-Update", string(b))
		}
		w.Header().Set("X_Session_Junk", "leak")
		w.Header().Set("x-session-other", "leak")
		status := http.StatusOK
		if s := q.Get("status"); s != "" {
			fmt.Sscan(s, &status)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if r.Method == http.MethodHead || status == http.StatusNotModified || status == http.StatusNoContent {
			return
		}
		names := []string{}
		for k := range r.Header {
			names = append(names, k)
		}
		json.NewEncoder(w).Encode(map[string]any{
			"session":    r.Header.Get("X-Session"),
			"meta":       r.Header.Get("X-Session-Meta"),
			"cookie":     r.Header.Values("Cookie"),
			"names":      names,
			"trailer":    r.Trailer,
			"connection": r.Header.Values("Connection"),
		})
		for _, tv := range q["trailer"] {
			name, value, _ := strings.Cut(tv, ":")
			w.Header().Set(name, value)
		}
		for _, tv := range q["ptrailer"] { // ptrailer=<name>:<value>, a trailer never announced
			name, value, _ := strings.Cut(tv, ":")
			w.Header().Set(http.TrailerPrefix+name, value)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// upstreamCalls counts the requests the test upstreams received.
var upstreamCalls atomic.Int64

// gate holds a request inside the upstream until the test opens it:
// arrived is closed when the request got there (so its session was
// loaded), and the request answers once open is closed.
type gate struct {
	arrived, open chan struct{}
	once          sync.Once
}

// gates holds a *gate per name, made by gateFor.
var gates sync.Map

// gateFor returns the gate called name, made on first use.
func gateFor(name string) *gate {
	v, _ := gates.LoadOrStore(name, &gate{arrived: make(chan struct{}), open: make(chan struct{})})
	return v.(*gate)
}

// pass is the upstream's side: say it arrived, then wait for the test
// to open the gate (at most 5 s, so a failing test does not hang).
func (g *gate) pass() {
	g.once.Do(func() { close(g.arrived) })
	select {
	case <-g.open:
	case <-time.After(5 * time.Second):
	}
}

// barriers holds a channel per name, made by the test before it sends
// the requests that meet there.
var barriers sync.Map

// blockUntil lets concurrent test requests meet inside the upstream, so
// both have loaded the same snapshot before either answers.
func blockUntil(name string) {
	v, _ := barriers.LoadOrStore(name, make(chan struct{}))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
	case <-ch:
	case <-time.After(5 * time.Second):
	}
}

// gateway is a real Caddy, running in this process, loaded from a
// Caddyfile.
type gateway struct {
	t      testing.TB
	base   string
	client *http.Client
	jar    http.CookieJar
}

// step runs one named step of a walk as a subtest, with the gateway's
// client bound to the subtest so a failure stops only that step's
// goroutine. Later steps build on earlier ones: the walk stops at the
// first failed step.
func (g *gateway) step(t *testing.T, name string, fn func(t *testing.T, g *gateway)) {
	t.Helper()
	sub := *g
	if !t.Run(name, func(t *testing.T) { sub.t = t; fn(t, &sub) }) {
		t.FailNow()
	}
}

// globalOptions keep a test Caddy to itself: no admin endpoint, nothing
// persisted, storage in a temporary folder.
func globalOptions(t testing.TB) string {
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
}
`, t.TempDir())
}

// loadCaddyfile adapts and (re)loads a Caddyfile into this process's Caddy.
func loadCaddyfile(t testing.TB, cf string) error {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(cf), nil)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		t.Logf("caddyfile warning: %s", w.Message)
	}
	return caddy.Load(cfg, true)
}

// startGateway runs Caddy with the session directive configured by body
// in front of up, on a free port. The site block is written around body.
func startGateway(t testing.TB, options, body string, up *httptest.Server) *gateway {
	t.Helper()
	return siteAt(t, options, freePort(t), body+"\n\treverse_proxy "+strings.TrimPrefix(up.URL, "http://")+"\n")
}

// reply is what the upstream saw, as it reported it.
type reply struct {
	Status  int
	Header  http.Header
	Session map[string]any
	Meta    struct {
		New     bool   `json:"new"`
		ID      string `json:"id"`
		Created int64  `json:"created"`
		Expires int64  `json:"expires"`
	}
	RawSession string
	Cookie     []string
	Names      []string
	// Trailer and Connection are the request trailers and Connection
	// header values the upstream received.
	Trailer    map[string][]string
	Connection []string
	Body       string
}

func (g *gateway) do(req *http.Request) reply {
	g.t.Helper()
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := reply{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	var rep struct {
		Session    string              `json:"session"`
		Meta       string              `json:"meta"`
		Cookie     []string            `json:"cookie"`
		Names      []string            `json:"names"`
		Trailer    map[string][]string `json:"trailer"`
		Connection []string            `json:"connection"`
	}
	if json.Unmarshal(body, &rep) == nil {
		out.Cookie, out.Names, out.Trailer, out.Connection = rep.Cookie, rep.Names, rep.Trailer, rep.Connection
	}
	if json.Unmarshal(body, &rep) == nil && rep.Session != "" {
		out.RawSession = rep.Session
		if err := json.Unmarshal([]byte(rep.Session), &out.Session); err != nil {
			g.t.Fatalf("X-Session is not JSON: %q", rep.Session)
		}
		if err := json.Unmarshal([]byte(rep.Meta), &out.Meta); err != nil {
			g.t.Fatalf("X-Session-Meta is not JSON: %q", rep.Meta)
		}
		out.Cookie, out.Names = rep.Cookie, rep.Names
	}
	for _, hdr := range []http.Header{resp.Header, resp.Trailer} {
		for name := range hdr {
			if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-session") {
				g.t.Errorf("session header %s reached the client (status %d)", name, resp.StatusCode)
			}
		}
	}
	return out
}

func (g *gateway) get(path string) reply {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
	return g.do(req)
}

// sessionCookie is the session cookie the jar holds, or "".
func (g *gateway) sessionCookie(name string) string {
	req, _ := http.NewRequest(http.MethodGet, g.base, nil)
	for _, c := range g.jar.Cookies(req.URL) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie replaces the jar's session cookie value.
func (g *gateway) setCookie(name, value string) {
	req, _ := http.NewRequest(http.MethodGet, g.base, nil)
	g.jar.SetCookies(req.URL, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// countingStore is a real memory store that counts the calls it gets, so
// tests can assert that bad cookies cost no store round trip. It is a
// Caddy module like any store: http.session.stores.counting.
type countingStore struct {
	testMemStore
}

var storeCalls atomic.Int64

func init() { caddy.RegisterModule(new(countingStore)) }

func (*countingStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.session.stores.counting", New: func() caddy.Module { return new(countingStore) }}
}

// testMemStore is the base of the test store modules (counting, flaky,
// rotfail): a real memory store of its own, provisioned and cleaned up
// like the memory store module, configured with just `store <name>`.
// Each module overrides the calls it watches or fails.
type testMemStore struct {
	*memstore.Store
}

func (b *testMemStore) Provision(caddy.Context) error {
	b.Store = memstore.New()
	return nil
}

func (b *testMemStore) Cleanup() error { return b.Store.Close() }

// UnmarshalCaddyfile accepts `store <name>` and nothing more.
func (*testMemStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (c *countingStore) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	storeCalls.Add(1)
	return c.Store.Find(ctx, key, now)
}

func (c *countingStore) Create(ctx context.Context, key string, rec *store.Record) error {
	storeCalls.Add(1)
	return c.Store.Create(ctx, key, rec)
}

// caddyCtx is a Caddy context for provisioning modules outside a config.
func caddyCtx(t testing.TB) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}
