package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/fcgi"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestCrossOriginBypassOnRoutedPath is issue 17 item 1: a bypass pattern
// is matched on the path Caddy routes on (decoded, dot-segments resolved),
// not on the escaped path. POST /hooks/..%2Faccount%2Fsettings from
// another origin, with the session cookie, is /account/settings to
// `handle` and to php_fastcgi, so it must be checked, not bypassed. Both
// routings are run: plain handle routes, and php_fastcgi in front of a
// real FastCGI responder (net/http/fcgi) behind a front controller.
func TestCrossOriginBypassOnRoutedPath(t *testing.T) {
	up := upstream(t)
	upHost := strings.TrimPrefix(up.URL, "http://")
	session := sessionBody("\t\tcross_origin {\n\t\t\tbypass \"POST /hooks/{provider}\" /webhooks/\n\t\t}\n")
	routings := []struct{ name, routes string }{
		{"handle routes", "\thandle /hooks/* {\n\t\treverse_proxy " + upHost + "\n\t}\n" +
			"\thandle /account/* {\n\t\treverse_proxy " + upHost + "\n\t}\n" +
			"\thandle {\n\t\treverse_proxy " + upHost + "\n\t}\n"},
		{"php_fastcgi", "\troot * " + frontController(t) + "\n\tphp_fastcgi " + fcgiUpstream(t, up.Config.Handler) + "\n"},
	}
	cross := map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}
	for _, routing := range routings {
		t.Run(routing.name, func(t *testing.T) {
			g := startSite(t, session+routing.routes)
			g.get("/?" + patchQuery(`{"user":"alice"}`))
			if g.sessionCookie("session") == "" {
				t.Fatal("no session")
			}
			for _, tc := range []originCase{
				{"wildcard bypass", "POST", "/hooks/github", cross, true},
				{"prefix bypass", "POST", "/webhooks/github", cross, true},
				{"encoded dot-segment out of a wildcard bypass", "POST", "/hooks/..%2Faccount%2Fsettings", cross, false},
				{"encoded dot-segment out of a prefix bypass", "POST", "/webhooks/..%2Faccount%2Fsettings", cross, false},
				{"encoded dots out of a prefix bypass", "POST", "/webhooks/%2E%2E/account/settings", cross, false},
				{"plain dot-segment out of a prefix bypass", "POST", "/webhooks/x/../../account/settings", cross, false},
				{"encoded slash inside a wildcard", "POST", "/hooks/a%2Fb", cross, false},
			} {
				t.Run(tc.name, func(t *testing.T) { checkOrigin(t, g, tc) })
			}
		})
	}
}

// startSite runs Caddy with a site block holding body on a free port.
func startSite(t *testing.T, body string) *gateway {
	t.Helper()
	return siteAt(t, globalOptions(t), freePort(t), body)
}

// siteAt loads a Caddyfile of options and one site block holding body on
// port (again, for a reload) and returns a browser for it.
func siteAt(t testing.TB, options string, port int, body string) *gateway {
	t.Helper()
	cf := fmt.Sprintf("%s\nhttp://127.0.0.1:%d {\n%s}\n", options, port, body)
	if err := loadCaddyfile(t, cf); err != nil {
		t.Fatalf("loading Caddyfile: %v\n%s", err, cf)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	jar, _ := cookiejar.New(nil)
	return &gateway{
		t:    t,
		base: fmt.Sprintf("http://127.0.0.1:%d", port),
		jar:  jar,
		client: &http.Client{
			Jar:           jar,
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// frontController is a site root with one index.php, as a PHP app with
// a front controller has: php_fastcgi sends every path that is not a file
// to it.
func frontController(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.php"), []byte("<?php // served by the FastCGI responder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fcgiUpstream serves h over FastCGI on a free port and returns its
// address: the app behind php_fastcgi, speaking the real protocol.
func fcgiUpstream(t *testing.T, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() { _ = fcgi.Serve(l, h) }()
	return l.Addr().String()
}
