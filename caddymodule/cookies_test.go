package caddymodule

// Cookies and memory (hardening issue 7, section 4) through a real Caddy:
// smuggled cookies, strict signature decoding, the memory store's bound
// and sessions with a short max-age.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/caddymodule/memorystore"
)

// base64URL is the alphabet of the cookie's base64 (RFC 4648 URL-safe).
const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// withCookieHeader sends GET / with exactly this Cookie header, from a
// browser with no jar.
func (g *gateway) withCookieHeader(value string) reply {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.base+"/", nil)
	req.Header.Set("Cookie", value)
	v := g.visitor()
	v.client.Jar = nil
	return v.do(req)
}

func TestCookieCommaFormNeverReachesUpstream(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	token := g.sessionCookie("session")
	for _, tc := range []struct{ name, header string }{
		{"comma and space before", "x=1, session=" + token},
		{"comma before", "x=1,session=" + token},
		{"space before", "x=1 session=" + token},
		{"comma after", "session=" + token + ", x=1"},
		{"comma before, semicolon after", "x=1, session=" + token + "; y=2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.withCookieHeader(tc.header)
			if r.Status != 200 {
				t.Fatalf("status %d", r.Status)
			}
			for _, c := range r.Cookie {
				if strings.Contains(c, token[:20]) {
					t.Fatalf("the session token reached the upstream in %d bytes of Cookie", len(c))
				}
			}
		})
	}
}

func TestCookieSignatureIsStrictBase64(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	good := g.sessionCookie("session")
	if r := g.withCookieHeader("session=" + good); r.RawSession != `{"user":"alice"}` {
		t.Fatalf("the real cookie: %s", r.RawSession)
	}
	// The last character of a 32-byte signature carries two padding bits:
	// lax decoding reads four spellings as the same signature.
	last := strings.IndexByte(base64URL, good[len(good)-1])
	if last < 0 {
		t.Fatalf("the cookie does not end in base64url")
	}
	spellings := map[string]string{"padded": good + "=", "double padded": good + "=="}
	for bits := 1; bits < 4; bits++ {
		spellings[fmt.Sprintf("padding bits %d", bits)] = good[:len(good)-1] + string(base64URL[last^bits])
	}
	for name, c := range spellings {
		t.Run(name, func(t *testing.T) {
			if r := g.withCookieHeader("session=" + c); r.RawSession != "{}" || !r.Meta.New {
				t.Fatalf("another spelling of the signature was accepted: %s", r.RawSession)
			}
		})
	}
}

func TestCookieMemoryStoreBoundThroughCaddy(t *testing.T) {
	up := upstream(t)
	const bound, visitors = 20, 200
	body := sessionBody(fmt.Sprintf("\t\tstore memory %s {\n\t\t\tmax_sessions %d\n\t\t}\n", uniqueName(t), bound))
	g := startGateway(t, globalOptions(t), body, up)
	tokens := make([]string, visitors)
	for i := range tokens {
		v := g.visitor()
		if r := v.get(fmt.Sprintf("/?%s", patchQuery(fmt.Sprintf(`{"i":%d}`, i)))); r.Status != 200 {
			t.Fatalf("visitor %d: status %d", i, r.Status)
		}
		tokens[i] = v.sessionCookie("session")
	}
	var mem *memorystore.MemoryStore
	for _, h := range runningHandlers() {
		if m, ok := rawStore(h.store).(*memorystore.MemoryStore); ok {
			mem = m
		}
	}
	if mem == nil {
		t.Fatal("no memory store running")
	}
	if n := mem.Len(); n > bound {
		t.Fatalf("the store holds %d sessions, bound %d", n, bound)
	}
	read := func(i int) string {
		v := g.visitor()
		v.setCookie("session", tokens[i])
		return v.get("/").RawSession
	}
	for i := visitors - bound; i < visitors; i++ {
		if got, want := read(i), fmt.Sprintf(`{"i":%d}`, i); got != want {
			t.Fatalf("recent visitor %d: %s, want %s", i, got, want)
		}
	}
	for i := range visitors - bound {
		if got := read(i); got != "{}" {
			t.Fatalf("visitor %d survived past the bound: %s", i, got)
		}
	}
}

func TestCookieShortMaxAgeKeepsActiveSessions(t *testing.T) {
	for _, cfg := range []struct{ name, body string }{
		{"default touch interval", basicSession},
		{"configured touch interval", sessionBody("\t\tidle_timeout 1h\n\t\ttouch_interval 10m\n")},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			up := upstream(t)
			g := startGateway(t, globalOptions(t), cfg.body, up)
			g.get("/?control=max-age%3D60&" + patchQuery(`{"user":"alice"}`))
			for elapsed := 20 * time.Second; elapsed <= 200*time.Second; elapsed += 20 * time.Second {
				skew(t, 20*time.Second)
				if r := g.get("/"); r.RawSession != `{"user":"alice"}` {
					t.Fatalf("a session with max-age=60 used every 20s ended after %v: %s", elapsed, r.RawSession)
				}
			}
			// Idle for longer than its max-age, it ends.
			skew(t, 61*time.Second)
			if r := g.get("/"); r.RawSession != "{}" {
				t.Fatalf("an idle session outlived its max-age: %s", r.RawSession)
			}
		})
	}
}
