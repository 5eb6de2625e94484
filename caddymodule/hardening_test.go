package caddymodule

// Regression tests for the hardening issue (7), through a real Caddy:
// protocol headers on every channel (request trailers, Connection
// tokens, response trailers, unmatched requests, error answers), sizes,
// cookies and cross-origin requests. The races are in races_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/store"
)

// isProtocolName reports whether a header name is one of the protocol's,
// in any spelling.
func isProtocolName(name string) bool {
	return strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-session")
}

// hostOf is the host:port of the gateway.
func (g *gateway) hostOf() string { return strings.TrimPrefix(g.base, "http://") }

// rawExchange sends raw (a whole HTTP/1.1 request, CRLF line ends) on a
// new connection and returns the response with its body read (so its
// trailers are in), the body, and every byte read from the connection.
func rawExchange(t *testing.T, g *gateway, raw string) (*http.Response, []byte, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", g.hostOf())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(conn, &wire)), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body, wire.Bytes()
}

// decodeReply reads the upstream's report from a response body.
func decodeReply(t *testing.T, status int, body []byte) reply {
	t.Helper()
	var rep struct {
		Session    string              `json:"session"`
		Cookie     []string            `json:"cookie"`
		Names      []string            `json:"names"`
		Trailer    map[string][]string `json:"trailer"`
		Connection []string            `json:"connection"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("status %d, body is not the upstream's report: %q", status, body)
	}
	return reply{Status: status, RawSession: rep.Session, Cookie: rep.Cookie, Names: rep.Names,
		Trailer: rep.Trailer, Connection: rep.Connection, Body: string(body)}
}

// patchQuery is the query that makes the upstream send patch.
func patchQuery(patch string) string { return "patch=" + url.QueryEscape(patch) }

// sessionBody is a session block with the test secret and extra lines.
func sessionBody(extra string) string {
	return "\tsession {\n\t\tsecret " + testSecret + "\n" + extra + "\t}\n"
}

func TestHardeningRequestTrailers(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	token := g.sessionCookie("session")

	const declared = "Trailer: X-Session, x-session-update, X_Session_Patch, X-SESSION-META, x_session, X-Checksum\r\n"
	for _, tc := range []struct{ name, cookie, trailer string }{
		{"with a session", "Cookie: session=" + token + "\r\n", declared},
		{"new visitor", "", declared},
		{"only the ordinary trailer declared", "Cookie: session=" + token + "\r\n", "Trailer: X-Checksum\r\n"},
		{"nothing declared", "Cookie: session=" + token + "\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spoof := `{"user":"admin"}`
			raw := "POST /upload HTTP/1.1\r\nHost: " + g.hostOf() + "\r\n" + tc.cookie +
				"Transfer-Encoding: chunked\r\n" + tc.trailer +
				"Connection: close\r\n\r\n" +
				"5\r\nhello\r\n0\r\n" +
				"X-Session: " + spoof + "\r\n" +
				"x-session-update: " + spoof + "\r\n" +
				"X_Session_Patch: " + spoof + "\r\n" +
				"X-SESSION-META: {\"new\":false}\r\n" +
				"x_session: " + spoof + "\r\n" +
				"X-Checksum: abc\r\n\r\n"
			resp, body, _ := rawExchange(t, g, raw)
			r := decodeReply(t, resp.StatusCode, body)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, body)
			}
			// The channel works: an ordinary declared trailer gets through.
			if got := r.Trailer["X-Checksum"]; tc.trailer != "" && !slices.Equal(got, []string{"abc"}) {
				t.Fatalf("the ordinary trailer did not reach the upstream (%v): the test proves nothing", r.Trailer)
			}
			for name, vals := range r.Trailer {
				if isProtocolName(name) {
					t.Errorf("request trailer %s = %q reached the upstream", name, vals)
				}
			}
			want := "{}"
			if tc.cookie != "" {
				want = `{"user":"alice"}`
			}
			if r.RawSession != want {
				t.Errorf("X-Session %s, want %s", r.RawSession, want)
			}
		})
	}
	if r := g.get("/"); r.RawSession != `{"user":"alice"}` {
		t.Fatalf("session changed: %s", r.RawSession)
	}
}

func TestHardeningConnectionTokens(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	token := g.sessionCookie("session")

	for _, conn := range []string{
		"keep-alive, X-Session, X-Session-Meta, X-Drop-Me",
		"X-SESSION,x_session_meta , X-Drop-Me",
		"close, x-session",
	} {
		t.Run(conn, func(t *testing.T) {
			raw := "GET / HTTP/1.1\r\nHost: " + g.hostOf() + "\r\nCookie: session=" + token + "\r\n" +
				"Connection: " + conn + "\r\nX-Drop-Me: 1\r\n\r\n"
			resp, body, _ := rawExchange(t, g, raw)
			r := decodeReply(t, resp.StatusCode, body)
			if r.RawSession != `{"user":"alice"}` {
				t.Fatalf("the upstream lost X-Session: %q", r.RawSession)
			}
			if !slices.Contains(r.Names, "X-Session-Meta") {
				t.Fatalf("the upstream lost X-Session-Meta: %v", r.Names)
			}
			// The other tokens are kept: X-Drop-Me is still hop-by-hop.
			if strings.Contains(conn, "X-Drop-Me") && slices.Contains(r.Names, "X-Drop-Me") {
				t.Fatalf("the other Connection tokens were lost: X-Drop-Me reached the upstream")
			}
		})
	}
}

// loggingOptions are globalOptions with Caddy's log in a JSON file, at
// the returned path.
func loggingOptions(t *testing.T) (string, string) {
	path := filepath.Join(t.TempDir(), "caddy.log")
	return fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}\n}\n", t.TempDir(), path), path
}

func TestHardeningResponseTrailers(t *testing.T) {
	up := upstream(t)
	opts, logPath := loggingOptions(t)
	g := startGateway(t, opts, basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	token := g.sessionCookie("session")

	q := url.Values{"trailer": {
		`X-Session-Patch:{"user":"mallory"}`,
		`x-session-update:{"user":"mallory"}`,
		"X-Session-Control:destroy",
		"X-Checksum:abc",
	}, "ptrailer": { // sent without being announced
		`X-Session-Update:{"user":"mallory"}`,
		`X_Session_Meta:{"new":true}`,
		"X-Late:1",
	}}
	raw := "GET /?" + q.Encode() + " HTTP/1.1\r\nHost: " + g.hostOf() + "\r\nCookie: session=" + token +
		"\r\nConnection: close\r\n\r\n"
	resp, _, wire := rawExchange(t, g, raw)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	head, rest, _ := bytes.Cut(wire, []byte("\r\n\r\n"))
	if !bytes.Contains(bytes.ToLower(head), []byte("transfer-encoding: chunked")) {
		t.Fatalf("the response is not chunked: the test proves nothing\n%s", head)
	}
	// The chunked body ends with a zero-size chunk; the trailer follows.
	i := bytes.LastIndex(rest, []byte("\r\n0\r\n"))
	if i < 0 {
		t.Fatalf("no last chunk in %q", rest)
	}
	trailer := rest[i:]
	if !bytes.Contains(trailer, []byte("X-Checksum: abc")) || !bytes.Contains(trailer, []byte("X-Late: 1")) {
		t.Fatalf("the ordinary trailer did not reach the client (%q): the test proves nothing", trailer)
	}
	for _, part := range [][]byte{head, trailer} {
		if bytes.Contains(bytes.ToLower(part), []byte("x-session")) || bytes.Contains(bytes.ToLower(part), []byte("x_session")) {
			t.Errorf("a protocol header reached the client:\n%s", part)
		}
	}
	for name := range resp.Trailer {
		if isProtocolName(name) {
			t.Errorf("trailer %s reached the client", name)
		}
	}
	if resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("a trailer changed the cookie: %q", resp.Header.Get("Set-Cookie"))
	}
	if r := g.get("/"); r.RawSession != `{"user":"alice"}` {
		t.Fatalf("a response trailer changed the session: %s", r.RawSession)
	}
	// Dropped trailers are logged at warn level, once per handler, and
	// the log holds no session data (Caddy's own debug lines, which show
	// request URIs and headers, are off).
	rawExchange(t, g, raw)
	logText, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var warned int
	for line := range strings.SplitSeq(string(logText), "\n") {
		if strings.Contains(line, "as response trailers") {
			warned++
			if !strings.Contains(line, `"level":"warn"`) {
				t.Errorf("trailer log line not at warn level: %s", line)
			}
		}
	}
	if warned != 1 {
		t.Errorf("%d log lines about dropped trailers after two responses, want 1", warned)
	}
	if strings.Contains(string(logText), "mallory") {
		t.Error("the log holds session data from a trailer")
	}
}

func TestHardeningUnmatchedRequests(t *testing.T) {
	for _, cfg := range []struct{ name, body string }{
		{"path matcher", "\tsession /app/* {\n\t\tsecret " + testSecret + "\n\t}\n"},
		{"named matcher", "\t@app path /app/*\n\tsession @app {\n\t\tsecret " + testSecret + "\n\t}\n"},
	} {
		t.Run(cfg.name, func(t *testing.T) { checkUnmatched(t, cfg.body) })
	}
}

// checkUnmatched runs a gateway whose session directive matches /app/*
// and checks that requests to other paths are cleaned both ways.
func checkUnmatched(t *testing.T, body string) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), body, up)
	g.get("/app/?" + patchQuery(`{"user":"alice"}`))
	token := g.sessionCookie("session")
	if token == "" {
		t.Fatal("no session on the matched path")
	}

	t.Run("spoofed headers and the cookie are stripped", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, g.base+"/other", nil)
		req.Header.Set("X-Session", `{"user":"admin"}`)
		req.Header["x_session_meta"] = []string{`{"new":false}`}
		req.Header.Set("Cookie", "theme=dark")
		r := g.do(req) // the jar adds the session cookie
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		for _, n := range r.Names {
			if isProtocolName(n) {
				t.Errorf("header %s reached the upstream on an unmatched path", n)
			}
		}
		for _, c := range r.Cookie {
			if strings.Contains(c, token) || strings.Contains(c, "session=") {
				t.Errorf("the session cookie reached the upstream on an unmatched path: %q", c)
			}
		}
		if !slices.ContainsFunc(r.Cookie, func(c string) bool { return strings.Contains(c, "theme=dark") }) {
			t.Errorf("other cookies were dropped: %q", r.Cookie)
		}
	})
	t.Run("the upstream's headers do not reach the client", func(t *testing.T) {
		r := g.get("/other?update=" + url.QueryEscape(`{"user":"mallory"}`) + "&control=destroy") // g.do checks
		if r.Status != 200 || r.Header.Get("Set-Cookie") != "" {
			t.Fatalf("status %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
		}
		// Not the session's response: caches may share it.
		if v, cc := r.Header.Values("Vary"), r.Header.Get("Cache-Control"); len(v) != 0 || cc != "" {
			t.Errorf("Vary %q, Cache-Control %q on an unmatched path", v, cc)
		}
	})
	if r := g.get("/app/"); r.RawSession != `{"user":"alice"}` {
		t.Fatalf("session changed by an unmatched request: %s", r.RawSession)
	}
}

// flakyMode makes the flaky store fail: 0 never, 1 on writes, 2 always;
// 3 makes every Update and Rotate lose its compare-and-set.
var flakyMode atomic.Int32

// flakyOps records the flaky store's calls when recording is on.
var flakyOps struct {
	sync.Mutex
	on  bool
	ops []string
}

// takeFlakyOps returns the recorded calls and starts a new record.
func takeFlakyOps() []string {
	flakyOps.Lock()
	defer flakyOps.Unlock()
	out := flakyOps.ops
	flakyOps.ops, flakyOps.on = nil, true
	return out
}

// flakyStore is a real memory store that records its calls and fails
// with store.ErrUnavailable when flakyMode says so: the gateway's store
// failure path through Caddy. It is http.session.stores.flaky.
type flakyStore struct {
	testMemStore
}

func init() { caddy.RegisterModule(new(flakyStore)) }

func (*flakyStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.session.stores.flaky", New: func() caddy.Module { return new(flakyStore) }}
}

// call records op and fails it when flakyMode says so.
func (*flakyStore) call(op string, write bool) error {
	flakyOps.Lock()
	if flakyOps.on {
		flakyOps.ops = append(flakyOps.ops, op)
	}
	flakyOps.Unlock()
	if m := flakyMode.Load(); m == 2 || (m == 1 && write) {
		return fmt.Errorf("%w: flaky test store", store.ErrUnavailable)
	}
	return nil
}

func (f *flakyStore) Find(ctx context.Context, key string, now time.Time) (*store.Record, error) {
	if err := f.call("find", false); err != nil {
		return nil, err
	}
	return f.Store.Find(ctx, key, now)
}

func (f *flakyStore) Create(ctx context.Context, key string, rec *store.Record) error {
	if err := f.call("create", true); err != nil {
		return err
	}
	return f.Store.Create(ctx, key, rec)
}

func (f *flakyStore) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	if err := f.call("update", true); err != nil {
		return err
	}
	if flakyMode.Load() == 3 {
		return store.ErrConflict
	}
	return f.Store.Update(ctx, key, rec, now)
}

func (f *flakyStore) Touch(ctx context.Context, key string, expires, now time.Time) error {
	if err := f.call("touch", true); err != nil {
		return err
	}
	return f.Store.Touch(ctx, key, expires, now)
}

func (f *flakyStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	if err := f.call("rotate", true); err != nil {
		return err
	}
	if flakyMode.Load() == 3 {
		return store.ErrConflict
	}
	return f.Store.Rotate(ctx, key, version, successor, until, now)
}

func (f *flakyStore) Delete(ctx context.Context, key string) error {
	if err := f.call("delete", true); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func TestHardeningStoreFailureKeepsEarlierHeaders(t *testing.T) {
	up := upstream(t)
	const hsts = "max-age=31536000"
	flaky := "\tsession {\n\t\tstore flaky\n\t\tsecret " + testSecret + "\n\t}\n"
	for _, tc := range []struct{ name, body string }{
		{"header directive ordered before the session", "\theader Strict-Transport-Security " + hsts + "\n" + flaky},
		{"header earlier in a route", "\troute {\n\t\theader Strict-Transport-Security " + hsts + "\n" +
			strings.ReplaceAll(flaky, "\n\t", "\n\t\t") + "\n\t\treverse_proxy " + strings.TrimPrefix(up.URL, "http://") + "\n\t}\n"},
		// More earlier headers than the response writer keeps in place.
		{"many earlier headers", "\theader {\n\t\tStrict-Transport-Security " + hsts +
			"\n\t\tX-Early-1 1\n\t\tX-Early-2 2\n\t\tX-Early-3 3\n\t\tX-Early-4 4\n\t}\n" + flaky},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { flakyMode.Store(0) })
			flakyMode.Store(0)
			g := startGateway(t, globalOptions(t), tc.body, up)
			g.get("/?" + patchQuery(`{"user":"alice"}`))
			if g.sessionCookie("session") == "" {
				t.Fatal("no session")
			}
			for _, step := range []struct {
				name string
				mode int32
			}{{"write fails after the upstream answered", 1}, {"load fails before the upstream", 2}} {
				flakyMode.Store(step.mode)
				r := g.get("/?" + patchQuery(`{"n":1}`) + "&header=X-Upstream:yes&header=Strict-Transport-Security:max-age=0")
				flakyMode.Store(0)
				if r.Status != http.StatusServiceUnavailable {
					t.Fatalf("%s: status %d, want 503", step.name, r.Status)
				}
				h := r.Header
				if got := h.Values("Strict-Transport-Security"); !slices.Equal(got, []string{hsts}) {
					t.Errorf("%s: Strict-Transport-Security %q, want exactly %q", step.name, got, hsts)
				}
				if strings.Contains(tc.body, "X-Early-4") && (h.Get("X-Early-1") != "1" || h.Get("X-Early-4") != "4") {
					t.Errorf("%s: earlier headers lost: %v", step.name, h)
				}
				if h.Get("X-Upstream") != "" || strings.Contains(h.Get("Content-Type"), "json") {
					t.Errorf("%s: the upstream's headers were kept: %v", step.name, h)
				}
				if !strings.Contains(h.Get("Vary"), "Cookie") || !strings.Contains(h.Get("Cache-Control"), "private") || h.Get("Retry-After") != "5" {
					t.Errorf("%s: Vary %q, Cache-Control %q, Retry-After %q", step.name, h.Get("Vary"), h.Get("Cache-Control"), h.Get("Retry-After"))
				}
				if h.Get("Set-Cookie") != "" || strings.Contains(r.Body, "session") {
					t.Errorf("%s: the upstream's answer leaked: %q", step.name, r.Body)
				}
			}
			if r := g.get("/"); r.RawSession != `{"user":"alice"}` {
				t.Fatalf("session after the failures: %s", r.RawSession)
			}
		})
	}
}

// uniqueName is a name no other test uses (memory stores, gates).
func uniqueName(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "-" + rand.Text()[:8]
}

// TestHardeningContentionIsA503 makes every compare-and-set lose: after
// the four attempts protocol.md documents, no more and no fewer, the
// gateway answers 503 with Retry-After and writes nothing, for updates,
// regenerates and destroys alike.
func TestHardeningContentionIsA503(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), "\tsession {\n\t\tstore flaky\n\t\tsecret "+testSecret+"\n\t}\n", up)
	t.Cleanup(func() {
		flakyMode.Store(0)
		flakyOps.Lock()
		flakyOps.on, flakyOps.ops = false, nil
		flakyOps.Unlock()
	})
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	token := g.sessionCookie("session")
	for _, tc := range []struct{ name, query, write string }{
		{"patch", patchQuery(`{"n":1}`), "update"},
		{"regenerate", "control=regenerate&" + patchQuery(`{"n":1}`), "rotate"},
		{"destroy", "control=destroy", "rotate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flakyMode.Store(3)
			takeFlakyOps()
			r := g.get("/?" + tc.query)
			ops := takeFlakyOps()
			flakyMode.Store(0)
			if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "5" {
				t.Fatalf("status %d, Retry-After %q; want 503 and 5", r.Status, r.Header.Get("Retry-After"))
			}
			// The documented bound, written out: a change of maxAttempts
			// must change protocol.md too.
			const documentedAttempts = 4
			if n := strings.Count(strings.Join(ops, " "), tc.write); n != documentedAttempts {
				t.Fatalf("store calls %q: %d %s attempts, want the documented %d", ops, n, tc.write, documentedAttempts)
			}
			if r.Header.Get("Set-Cookie") != "" || g.sessionCookie("session") != token {
				t.Fatalf("a failed write touched the cookie: %q", r.Header.Get("Set-Cookie"))
			}
			if r := g.get("/"); r.RawSession != `{"user":"alice"}` {
				t.Fatalf("session after contention: %s", r.RawSession)
			}
		})
	}
}

// TestHardeningErrorAnswersVaryOnCookie: every error answer of a request
// through the session, before or after the upstream, varies on Cookie
// and is private when the request had a session.
func TestHardeningErrorAnswersVaryOnCookie(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession+"\terror /boom \"boom\" 500\n", up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"error raised before the upstream", "/boom", 500},
		{"bad upstream input", "/?" + patchQuery(`{"broken":`), http.StatusBadGateway},
		{"upstream error status", "/?status=500", 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.get(tc.path)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d", r.Status, tc.status)
			}
			if !strings.Contains(r.Header.Get("Vary"), "Cookie") || !strings.Contains(r.Header.Get("Cache-Control"), "private") {
				t.Fatalf("Vary %q, Cache-Control %q", r.Header.Get("Vary"), r.Header.Get("Cache-Control"))
			}
		})
	}
	t.Run("no session: varies, not private", func(t *testing.T) {
		r := g.visitor().get("/boom")
		if r.Status != 500 || !strings.Contains(r.Header.Get("Vary"), "Cookie") || strings.Contains(r.Header.Get("Cache-Control"), "private") {
			t.Fatalf("status %d, Vary %q, Cache-Control %q", r.Status, r.Header.Get("Vary"), r.Header.Get("Cache-Control"))
		}
	})
}
