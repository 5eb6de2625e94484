package caddymodule

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

	// Each early request goes on a connection of its own, resumed with a
	// ticket of the connections before, its request stream written before
	// the client reads the server's first flight (see earlyConn).
	h3conf := tlsConf.Clone()
	h3conf.NextProtos = []string{http3.NextProtoH3}
	second := &http3.Transport{TLSClientConfig: tlsConf}
	defer second.Close()
	early := func(method, url string) *http.Response {
		t.Helper()
		ec := dialEarly(t, strings.TrimPrefix(base, "https://"), h3conf)
		resp := ec.request(second.NewClientConn(ec.conn), method, url, cookie)
		if !ec.conn.ConnectionState().Used0RTT {
			t.Fatalf("%s did not go out in 0-RTT: the test proves nothing", method)
		}
		return resp
	}

	// A GET with the cookie goes on to the upstream, which asks for a
	// session change: not applied, 425.
	calls := upstreamCalls.Load()
	get := early(http.MethodGet, base+"/?"+patchQuery(`{"n":2}`))
	if get.StatusCode != http.StatusTooEarly {
		t.Fatalf("GET with a session change in 0-RTT: status %d, want 425", get.StatusCode)
	}
	if upstreamCalls.Load() == calls {
		t.Fatal("the GET did not reach the upstream: a safe request goes on in early data")
	}
	if sc := get.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("425 answer sets cookies: %q", sc)
	}
	// A POST with the cookie: 425 before the upstream. (quic-go's
	// Transport sends only GET and HEAD early; a request stream opened on
	// an early connection goes out at once, whatever its method.)
	calls = upstreamCalls.Load()
	post := early(http.MethodPost, base+"/?"+patchQuery(`{"n":3}`))
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

// earlyConn is a QUIC connection dialed with 0-RTT over a UDP socket
// that orders the handshake for the test: the client reads nothing from
// the server until its request is written (so the request goes out in
// 0-RTT packets), and every datagram holding a Handshake or 1-RTT packet
// (the client's Finished, and all that follows) is held back for half a
// second. The server thus serves the request while its handshake is still
// incomplete, every time.
type earlyConn struct {
	t    *testing.T
	conn *quic.Conn
	udp  *heldConn
}

func dialEarly(t *testing.T, addr string, tc *tls.Config) *earlyConn {
	t.Helper()
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hc := &heldConn{PacketConn: udp, readable: make(chan struct{})}
	tr := &quic.Transport{Conn: hc}
	t.Cleanup(func() {
		hc.release()
		tr.Close()
	})
	conn, err := tr.DialEarly(t.Context(), raddr, tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return &earlyConn{t: t, conn: conn, udp: hc}
}

// request sends a body-less request on a new request stream of cc without
// waiting for the handshake, lets the client read once the request is on
// the wire in 0-RTT packets, and reads the response.
func (ec *earlyConn) request(cc *http3.ClientConn, method, url, cookie string) *http.Response {
	t := ec.t
	t.Helper()
	str, err := cc.OpenRequestStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Cookie", cookie)
	before := ec.udp.zeroRTT.Load()
	if err := str.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	_ = str.Close() // no body: end the request
	for deadline := time.Now().Add(5 * time.Second); ec.udp.zeroRTT.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("the request was not sent in a 0-RTT packet")
		}
		time.Sleep(time.Millisecond)
	}
	ec.udp.release()
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

// heldConn is earlyConn's socket: reads wait for readable, datagrams
// holding Handshake or 1-RTT packets are delayed, and zeroRTT counts the
// datagrams written that hold a 0-RTT packet.
type heldConn struct {
	// net.PacketConn, not *net.UDPConn: quic-go would use the UDP
	// socket's own ReadMsgUDP and WriteMsgUDP, around these methods.
	net.PacketConn
	readable chan struct{}
	once     sync.Once
	zeroRTT  atomic.Int64
}

// release lets reads through.
func (c *heldConn) release() { c.once.Do(func() { close(c.readable) }) }

func (c *heldConn) ReadFrom(p []byte) (int, net.Addr, error) {
	<-c.readable
	return c.PacketConn.ReadFrom(p)
}

func (c *heldConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	types := quicPacketTypes(p)
	if types&(1<<quicHandshake|1<<quicShort) != 0 {
		time.Sleep(500 * time.Millisecond)
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if types&(1<<quic0RTT) != 0 {
		c.zeroRTT.Add(1)
	}
	return n, err
}

// QUIC v1 packet types (RFC 9000, 17.2), and quicShort for a 1-RTT packet.
const (
	quicInitial = iota
	quic0RTT
	quicHandshake
	quicRetry
	quicShort
)

// quicPacketTypes returns the set (a bit per type) of the packet types in
// a datagram, walking its coalesced long-header packets (RFC 9000, 12.2).
func quicPacketTypes(d []byte) (set int) {
	for len(d) > 0 {
		if d[0]&0x80 == 0 {
			return set | 1<<quicShort // a short header runs to the end
		}
		typ := int(d[0]>>4) & 3
		set |= 1 << typ
		p := 5 // first byte, version
		if p >= len(d) {
			return set
		}
		p += 1 + int(d[p]) // destination connection id
		if p >= len(d) {
			return set
		}
		p += 1 + int(d[p]) // source connection id
		if typ == quicRetry || p >= len(d) {
			return set
		}
		if typ == quicInitial {
			n, w := quicVarint(d[p:])
			p += w + n // token
		}
		if p >= len(d) {
			return set
		}
		n, w := quicVarint(d[p:])
		p += w + n // length, then the packet number and payload
		if w == 0 || p > len(d) {
			return set
		}
		d = d[p:]
	}
	return set
}

// quicVarint reads a QUIC variable-length integer: its value and width (0
// when d is too short).
func quicVarint(d []byte) (int, int) {
	if len(d) == 0 {
		return 0, 0
	}
	w := 1 << (d[0] >> 6)
	if len(d) < w {
		return 0, 0
	}
	v := int(d[0] & 0x3f)
	for _, b := range d[1:w] {
		v = v<<8 | int(b)
	}
	return v, w
}
