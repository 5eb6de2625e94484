package examples

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAssertionRefusesDirect: each example app refuses a request that did
// not come through the gateway, and accepts the same through it. "Straight
// to the upstream" is the app's own port for Python and Node; for PHP
// behind php-fpm it is a second Caddy site without `session`, with a
// php_fastcgi route to the same pool: the misrouted vhost.
func TestAssertionRefusesDirect(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{"python", "node", "php"} {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			s := example(t, lang)
			direct := "http://" + s.upstream
			if lang == "php" {
				direct = phpWithoutSession(t, s.upstream)
			}
			forged := http.Header{"X-Session": {`{"user":{"name":"admin"}}`}}

			// Straight to the upstream, a forged X-Session: refused.
			if status, body := send(t, direct+"/account", forged); status != http.StatusUnauthorized {
				t.Fatalf("forged X-Session straight to the upstream: %d %s, want 401", status, body)
			}
			// The same request through the gateway: accepted (the gateway
			// drops the client's X-Session and signs its own).
			if status, body := send(t, s.base+"/", forged); status != http.StatusOK {
				t.Fatalf("the same through the gateway: %d %s, want 200", status, body)
			}

			// An assertion taken from a request through the gateway does not
			// cover another X-Session.
			status, body := send(t, s.base+"/debug/headers", nil)
			if status != http.StatusOK {
				t.Fatalf("/debug/headers through the gateway: %d", status)
			}
			data, token := sessionHeaders(t, body)
			if token == "" || data != "{}" {
				t.Fatalf("the app got X-Session %q and assertion %q through the gateway", data, token)
			}
			stolen := http.Header{"X-Session": forged["X-Session"], "X-Session-Assertion": {token}}
			if status, body := send(t, direct+"/account", stolen); status != http.StatusUnauthorized {
				t.Fatalf("a gateway assertion with a forged X-Session: %d %s, want 401", status, body)
			}
			// With the X-Session it was signed for, it is accepted within
			// its ttl: an assertion is a bearer token (docs/protocol.md).
			replayed := http.Header{"X-Session": {data}, "X-Session-Assertion": {token}}
			if status, body := send(t, direct+"/", replayed); status != http.StatusOK {
				t.Fatalf("the assertion with its own X-Session, straight: %d %s, want 200", status, body)
			}
		})
	}
}

// phpWithoutSession starts a second Caddy whose one site serves the PHP
// example through php_fastcgi with no session handler, and returns its URL.
func phpWithoutSession(t *testing.T, fpm string) string {
	t.Helper()
	dir, err := filepath.Abs("php")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freePort(t))
	cf := filepath.Join(t.TempDir(), "Caddyfile")
	config := fmt.Sprintf("{\n\tadmin off\n}\nhttp://127.0.0.1:%s {\n\troot * %s\n\tphp_fastcgi %s\n}\n", port, filepath.Join(dir, "public"), fpm)
	if err := os.WriteFile(cf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := start(t, "caddy-direct", dir, []string{"XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data},
		caddyBin, "run", "--config", cf, "--adapter", "caddyfile")
	p.waitDial(t, "tcp", "127.0.0.1:"+port)
	return "http://127.0.0.1:" + port
}

// send makes one GET with the given headers, no cookie, no redirects.
func send(t *testing.T, url string, h http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// sessionHeaders reads X-Session and X-Session-Assertion from an app's
// /debug/headers answer, whatever its spelling of the names (as sent,
// lower case, or PHP's HTTP_X_SESSION).
func sessionHeaders(t *testing.T, body string) (data, token string) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/debug/headers: %v: %s", err, body)
	}
	for k, v := range got {
		name := strings.TrimPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "http-")
		s := fmt.Sprint(v)
		switch name {
		case "x-session":
			data = s
		case "x-session-assertion":
			token = s
		}
	}
	return data, token
}
