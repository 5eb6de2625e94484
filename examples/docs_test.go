package examples

// Caddyfiles the docs show, run or validated as written: only the site
// address and the upstream are swapped for test ones.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// docCaddyfile returns the first fenced code block after marker in the
// doc at path (relative to the repository's root) that is marked
// caddyfile or not marked at all.
func docCaddyfile(t *testing.T, path, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("%s: no %q", path, marker)
	}
	doc = doc[i:]
	for {
		start := strings.Index(doc, "\n```")
		if start < 0 {
			t.Fatalf("%s: no Caddyfile code block after %q", path, marker)
		}
		doc = doc[start+4:]
		nl := strings.Index(doc, "\n")
		info := doc[:nl] // the rest of the fence line: "" or "caddyfile", "sh"...
		doc = doc[nl+1:]
		end := strings.Index(doc, "\n```")
		if end < 0 {
			t.Fatalf("%s: unterminated code block after %q", path, marker)
		}
		if info == "" || info == "caddyfile" {
			return doc[:end+1]
		}
		doc = doc[end+4:]
	}
}

// swap replaces old with new in s, failing the test when the doc no longer
// holds old (so the test cannot silently test something else).
func swap(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the documented Caddyfile no longer holds %q:\n%s", old, s)
	}
	return strings.ReplaceAll(s, old, new)
}

const docSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestDocsCommonCaseProtectsAccount runs docs/caddyfile.md's common case:
// /account itself needs a session, not only what is under it.
func TestDocsCommonCaseProtectsAccount(t *testing.T) {
	t.Parallel()
	cf := docCaddyfile(t, "docs/caddyfile.md", "## The common case")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app: %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)
	port := freePort(t)
	cf = swap(t, cf, "example.com {", "http://127.0.0.1:"+strconv.Itoa(port)+" {")
	cf = swap(t, cf, "127.0.0.1:8080", strings.TrimPrefix(app.URL, "http://"))
	uri, db := mongotest.Database(t)
	runCaddyfile(t, cf, port, "MONGODB_URI="+mongotest.WithDatabase(uri, db), "SESSION_SECRET="+docSecret)

	c := newClient(t, "http://127.0.0.1:"+strconv.Itoa(port))
	for _, path := range []string{"/account", "/account/", "/account/settings", "/admin", "/admin/users"} {
		c.get(path, nil).expectLogin(path)
		c.get(path, http.Header{"Accept": {"application/json"}}).expect(http.StatusUnauthorized)
	}
	for _, path := range []string{"/", "/login", "/about"} {
		r := c.get(path, nil)
		r.expect(http.StatusOK)
		if r.body != "app: "+path {
			t.Errorf("GET %s: %q, want the app's answer", path, r.body)
		}
	}
}

// TestDocsDeployCaddyfileValidates runs `caddy validate` on docs/deploy.md's
// production Caddyfile, with the environment its systemd unit gives it, and
// on the README's "Use it" Caddyfile.
func TestDocsDeployCaddyfileValidates(t *testing.T) {
	t.Parallel()
	for _, doc := range []struct{ path, marker string }{
		{"docs/deploy.md", "## 4. The production Caddyfile"},
		{"README.md", "## Use it"},
	} {
		t.Run(doc.path, func(t *testing.T) {
			t.Parallel()
			validateDocCaddyfile(t, doc.path, docCaddyfile(t, doc.path, doc.marker))
		})
	}
}

func validateDocCaddyfile(t *testing.T, doc, cf string) {
	for _, want := range []string{"cookie_name __Host-session", "cookie_secure always", "secret {env.SESSION_SECRET}",
		"uri {env.MONGODB_URI}", "reverse_proxy 127.0.0.1:"} {
		if !strings.Contains(cf, want) {
			t.Errorf("%s's Caddyfile lacks %q", doc, want)
		}
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	uri, _ := mongotest.Database(t)
	// The URI as docs/deploy.md writes it: a database and pool sizes.
	withPool := mongotest.WithDatabase(uri, "myapp")
	if strings.Contains(withPool, "?") {
		withPool += "&maxPoolSize=50&minPoolSize=5"
	} else {
		withPool += "?maxPoolSize=50&minPoolSize=5"
	}
	data := t.TempDir()
	cmd := exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "SESSION_SECRET="+docSecret, "MONGODB_URI="+withPool,
		"XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+data)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate: %v\n%s\n%s", err, out, cf)
	}

	// And validate is not a rubber stamp: the same file without the secret's
	// environment variable is refused.
	cmd = exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "SESSION_SECRET=", "MONGODB_URI="+uri, "XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+data)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("caddy validate passed without SESSION_SECRET:\n%s", out)
	}
}

// runCaddyfile runs the xcaddy-built Caddy with the Caddyfile text cf until
// the test ends, waiting until it listens on port.
func runCaddyfile(t *testing.T, cf string, port int, env ...string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	caddy := start(t, "caddy", dir, append([]string{
		"CADDY_ADMIN=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir,
	}, env...), caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	caddy.waitDial(t, "tcp", "127.0.0.1:"+strconv.Itoa(port))
}
