package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestCommandConfigFindsTheAdminAddress runs `caddy session list` and
// `revoke` with --config (and no --address) against a running Caddy
// whose Caddyfile sets the admin address: the command reads the address
// from that file, as operations.md says, and reaches this Caddy's
// sessions (their handles can come from nowhere else).
func TestCommandConfigFindsTheAdminAddress(t *testing.T) {
	up := upstream(t)
	options, _ := opsOptions(t)
	port := freePort(t)
	cf := fmt.Sprintf("%s\nhttp://127.0.0.1:%d {\n\tsession {\n\t\tsecret %s\n\t\tsubject user\n\t}\n\treverse_proxy %s\n}\n",
		options, port, testSecret, strings.TrimPrefix(up.URL, "http://"))
	// caddy's own rule: a file named Caddyfile is read with the caddyfile
	// adapter, so --adapter is not needed.
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadCaddyfile(t, cf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	jar, _ := cookiejar.New(nil)
	g := &gateway{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), jar: jar,
		client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	_, handle := loginAs(t, g, "cfg-alice")

	out, err := runSessionCommand(t, "list", "--subject", "cfg-alice", "--config", path)
	if err != nil || !strings.Contains(out, handle) {
		t.Fatalf("list --config %s: %v\n%s\nwant the session %s", path, err, out, handle)
	}
	out, err = runSessionCommand(t, "revoke", "--subject", "cfg-alice", "--config", path)
	if err != nil || !strings.Contains(out, "revoked 1 session") {
		t.Fatalf("revoke --config: %v\n%s", err, out)
	}
	if r := g.get("/"); !r.Meta.New {
		t.Fatalf("the session outlived revoke --config: %+v", r.Meta)
	}
}
