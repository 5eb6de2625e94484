package examples

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBlog runs Caddyfile.example with BLOG=on: the Python example is the
// main app and the PHP example, under /blog, a second app behind the same
// session that reads user.name only, may write nothing and may send no
// control directive (issue 20, "One gateway, several apps").
func TestBlog(t *testing.T) {
	t.Parallel()
	py, err := filepath.Abs("python")
	if err != nil {
		t.Fatal(err)
	}
	php, _ := filepath.Abs("php")
	cf, _ := filepath.Abs("../Caddyfile.example")
	caddyPort := strconv.Itoa(freePort(t))
	appEnv := []string{"ASSERTION_JWKS_URL=http://127.0.0.1:" + caddyPort + "/.well-known/caddy-session/jwks.json"}

	appPort := strconv.Itoa(freePort(t))
	app := start(t, "python", py, append(appEnv, "APP_PORT="+appPort), pythonWithJWT(t), "app.py")
	app.waitDial(t, "tcp", "127.0.0.1:"+appPort)
	need(t, "php-fpm", "/usr/sbin/php-fpm*")
	sock := filepath.Join(t.TempDir(), "fpm.sock")
	fpm := start(t, "php-fpm", php, append(appEnv, "FPM_LISTEN="+sock, "BASE_PATH=/blog"), "bash", "run-fpm.sh")
	fpm.waitDial(t, "unix", sock)
	data := t.TempDir()
	caddy := start(t, "caddy", py, []string{
		"PORT=" + caddyPort, "UPSTREAM=127.0.0.1:" + appPort,
		"CADDY_ADMIN=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data,
		"BLOG=on", "BLOG_UPSTREAM=unix/" + sock, "BLOG_ROOT=" + filepath.Join(php, "public"),
	}, caddyBin, "run", "--config", cf, "--adapter", "caddyfile")
	caddy.waitDial(t, "tcp", "127.0.0.1:"+caddyPort)
	c := newClient(t, "http://127.0.0.1:"+caddyPort)

	c.login("alice", "/account", "/account")
	c.account("/account", "alice", 1) // the main app keeps visits in the session

	// The blog knows who is logged in, and nothing else of the session.
	if r := c.get("/blog/", nil); r.status != http.StatusOK || !strings.Contains(r.body, "Logged in as alice.") {
		t.Fatalf("blog home: %d\n%s", r.status, r.body)
	}
	r := c.get("/blog/debug/headers", http.Header{"Accept": {"application/json"}})
	r.expect(http.StatusOK)
	var got map[string]string
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("blog headers: %v\n%s", err, r.body)
	}
	if got["HTTP_X_SESSION"] != `{"user":{"name":"alice"}}` {
		t.Fatalf("the blog got X-Session %q, want user.name only", got["HTTP_X_SESSION"])
	}

	// What the blog may not do is refused (502), the session untouched.
	for _, req := range []struct {
		method, path string
		form         url.Values
	}{
		{"GET", "/blog/account", nil},                            // X-Session-Patch visits: write none
		{"POST", "/blog/logout", url.Values{}},                   // destroy: control none
		{"POST", "/blog/logout-everywhere", url.Values{}},        // revoke-all: control none
		{"POST", "/blog/login", url.Values{"name": {"mallory"}}}, // update + regenerate
	} {
		r := c.do(req.method, req.path, nil, req.form)
		r.expect(http.StatusBadGateway)
		r.noSetCookie()
	}
	// The main app sees the same session, its counter untouched by the
	// blog's attempt: 2, not 3.
	c.account("/account", "alice", 2)
}
