package examples

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sessiongate/caddy-session/verify"
)

// TestGoVerifier puts the Go verifier module (verify.Handler) in front of
// a Go app behind the xcaddy-built Caddy: a forged X-Session straight to
// the app is refused (401), the same through Caddy is served, and the app
// gets the claims (sid after a login).
func TestGoVerifier(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t))
	v, err := verify.New(verify.Config{
		JWKSURL:  "http://127.0.0.1:" + port + "/.well-known/caddy-session/jwks.json",
		Audience: "go-app",
	})
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.FromContext(r.Context())
		if r.URL.Path == "/login" {
			w.Header().Set("X-Session-Update", `{"user":{"name":"gopher"}}`)
		}
		fmt.Fprintf(w, "sid=%s data=%s", c.SessionID, r.Header.Get("X-Session"))
	})))
	t.Cleanup(app.Close)

	cf := filepath.Join(t.TempDir(), "Caddyfile")
	config := fmt.Sprintf(`{
	admin off
}
http://127.0.0.1:%s {
	session {
		assertion {
			audience go-app
		}
	}
	session_jwks /.well-known/caddy-session/jwks.json
	reverse_proxy %s
}
`, port, app.Listener.Addr())
	if err := os.WriteFile(cf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := start(t, "caddy", t.TempDir(), []string{"XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data},
		caddyBin, "run", "--config", cf, "--adapter", "caddyfile")
	p.waitDial(t, "tcp", "127.0.0.1:"+port)
	gateway := "http://127.0.0.1:" + port

	forged := http.Header{"X-Session": {`{"user":{"name":"admin"}}`}}
	if status, body := send(t, app.URL+"/", forged); status != http.StatusUnauthorized {
		t.Fatalf("forged X-Session straight to the Go app: %d %s, want 401", status, body)
	}
	if status, body := send(t, gateway+"/", forged); status != http.StatusOK || body != "sid= data={}" {
		t.Fatalf("the same through Caddy: %d %q, want 200 with no session", status, body)
	}
	c := newClient(t, gateway)
	c.get("/login", nil).expect(http.StatusOK)
	r := c.get("/", nil)
	r.expect(http.StatusOK)
	if want := `data={"user":{"name":"gopher"}}`; len(r.body) < 16 || r.body[:4] != "sid=" || r.body[16:] != " "+want {
		t.Fatalf("after login the app got %q, want a 12-hex sid and %s", r.body, want)
	}
}
