package caddymodule

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestTooEarlyDecision is issue 17 item 9's rule: a request still in TLS
// early data with an unsafe method and the session cookie waits for the
// handshake (425); safe methods, requests without the cookie and requests
// after the handshake go on. TestEarlyDataThroughHTTP3 sends a GET and a
// POST in real 0-RTT through Caddy.
func TestTooEarlyDecision(t *testing.T) {
	early := &tls.ConnectionState{HandshakeComplete: false}
	done := &tls.ConnectionState{HandshakeComplete: true}
	for _, tc := range []struct {
		method    string
		tls       *tls.ConnectionState
		hadCookie bool
		want      bool
	}{
		{"POST", early, true, true},
		{"PUT", early, true, true},
		{"PATCH", early, true, true},
		{"DELETE", early, true, true},
		{"PROPFIND", early, true, true},
		{"GET", early, true, false},
		{"HEAD", early, true, false},
		{"OPTIONS", early, true, false},
		{"POST", early, false, false},
		{"POST", done, true, false},
		{"POST", nil, true, false},
	} {
		r := &http.Request{Method: tc.method, TLS: tc.tls}
		if got := tooEarly(r, tc.hadCookie); got != tc.want {
			t.Errorf("%s, handshake complete %v, cookie %v: tooEarly %v, want %v",
				tc.method, tc.tls != nil && tc.tls.HandshakeComplete, tc.hadCookie, got, tc.want)
		}
	}
}

// TestEarlyDataThroughHTTP3 sends requests in real HTTP/3 0-RTT through
// Caddy (tls internal, a resumed QUIC session) and holds the client's
// second flight back, so they are served before the handshake completes.
// A GET reaches the upstream, which answers with a session patch: the
// gateway must not apply it (a replay would apply it again) and answers
// 425; the same request after the handshake applies it once. A POST with
// the session cookie gets 425 without reaching the upstream.
func TestEarlyDataThroughHTTP3(t *testing.T) {
	up := upstream(t)
	port := freePort(t)
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
	local_certs
	skip_install_trust
	auto_https disable_redirects
	http_port %d
}
https://127.0.0.1:%d {
	tls internal
%s	reverse_proxy %s
}
`, t.TempDir(), freePort(t), port, basicSession, strings.TrimPrefix(up.URL, "http://"))
	if err := loadCaddyfile(t, cf); err != nil {
		t.Fatalf("loading Caddyfile: %v\n%s", err, cf)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	tickets := tls.NewLRUClientSessionCache(4)
	tlsConf := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tickets, ServerName: "127.0.0.1"}

	// First connection: full handshake, a session and a resumption ticket.
	// Caddy issues its internal certificate in the background: retry the
	// first handshake until it is there.
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		first := &http3.Transport{TLSClientConfig: tlsConf}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/?"+patchQuery(`{"n":1}`), nil)
		r, err := first.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			first.Close()
			resp = r
			break
		}
		first.Close()
		if time.Now().After(deadline) {
			t.Fatalf("first HTTP/3 request: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == "" {
		t.Fatalf("first request: status %d, cookie %q", resp.StatusCode, cookie)
	}

	// Second connection: 0-RTT, the client's handshake completion held
	// back until the answer is in.
	var held atomic.Bool
	held.Store(true)
	second := &http3.Transport{
		TLSClientConfig: tlsConf,
		Dial: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return dialHeld(ctx, addr, tc, qc, &held)
		},
	}
	defer second.Close()
	calls := upstreamCalls.Load()
	early := h3Do(t, second, http3.MethodGet0RTT, base+"/?"+patchQuery(`{"n":2}`), cookie)
	held.Store(false)
	if early.StatusCode != http.StatusTooEarly {
		t.Fatalf("GET with a session change in 0-RTT: status %d, want 425", early.StatusCode)
	}
	if upstreamCalls.Load() == calls {
		t.Fatal("the GET did not reach the upstream: a safe request goes on in early data")
	}
	if sc := early.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("425 answer sets cookies: %q", sc)
	}
	// A POST in 0-RTT, on a third connection: quic-go's Transport sends
	// only GET and HEAD early, but a request stream opened on an early
	// connection goes out at once. 425 before the upstream.
	held.Store(true)
	h3conf := tlsConf.Clone()
	h3conf.NextProtos = []string{http3.NextProtoH3}
	conn, err := dialHeld(t.Context(), strings.TrimPrefix(base, "https://"), h3conf, &quic.Config{}, &held)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	calls = upstreamCalls.Load()
	post := h3EarlyRequest(t, second.NewClientConn(conn), http.MethodPost, base+"/?"+patchQuery(`{"n":3}`), cookie)
	held.Store(false)
	if !conn.ConnectionState().Used0RTT {
		t.Fatal("the POST did not go out in 0-RTT: the test proves nothing")
	}
	if post.StatusCode != http.StatusTooEarly {
		t.Fatalf("POST with the session cookie in 0-RTT: status %d, want 425", post.StatusCode)
	}
	if n := upstreamCalls.Load() - calls; n != 0 {
		t.Fatalf("the POST in early data reached the upstream (%d calls)", n)
	}

	// After the handshake, the same connection: applied once.
	after := h3Do(t, second, http.MethodGet, base+"/", cookie)
	if after.StatusCode != http.StatusOK || !strings.Contains(h3Body(t, after), `{\"n\":1}`) {
		t.Fatalf("session after the early request: status %d; want n still 1", after.StatusCode)
	}
	retry := h3Do(t, second, http.MethodGet, base+"/?"+patchQuery(`{"n":2}`), cookie)
	if retry.StatusCode != http.StatusOK {
		t.Fatalf("the retry after the handshake: status %d", retry.StatusCode)
	}
	if got := h3Body(t, h3Do(t, second, http.MethodGet, base+"/", cookie)); !strings.Contains(got, `{\"n\":2}`) {
		t.Fatalf("session after the retry: %s", got)
	}
}

// h3Do sends one request over t and returns the response, its body read
// into a buffer kept on the response.
func h3Do(t *testing.T, tr *http3.Transport, method, url, cookie string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// h3EarlyRequest sends a body-less request on a new request stream of cc
// without waiting for the handshake, and reads the response.
func h3EarlyRequest(t *testing.T, cc *http3.ClientConn, method, url, cookie string) *http.Response {
	t.Helper()
	str, err := cc.OpenRequestStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	req.Header.Set("Cookie", cookie)
	if err := str.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	_ = str.Close() // no body: end the request
	resp, err := str.ReadResponse()
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func h3Body(t *testing.T, resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// dialHeld dials addr with 0-RTT over a UDP socket that, while held is
// set, delays every packet after the client's first flight by half a
// second: the server gets the ClientHello and the 0-RTT request at once,
// and the client's Finished only later, so the request is served while
// the handshake is still incomplete.
func dialHeld(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config, held *atomic.Bool) (*quic.Conn, error) {
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: &heldConn{UDPConn: udp, held: held}}
	return tr.DialEarly(ctx, raddr, tc, qc)
}

// heldConn delays writes made after the first read while held is set.
type heldConn struct {
	*net.UDPConn
	held    *atomic.Bool
	gotData atomic.Bool
}

func (c *heldConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.UDPConn.ReadFrom(p)
	if n > 0 {
		c.gotData.Store(true)
	}
	return n, a, err
}

func (c *heldConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.gotData.Load() && c.held.Load() {
		time.Sleep(500 * time.Millisecond)
	}
	return c.UDPConn.WriteTo(p, addr)
}
