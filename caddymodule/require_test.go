package caddymodule

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestRequireSessionAndPlaceholders(t *testing.T) {
	up := upstream(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	g := startGateway(t, globalOptions(t), `	session {
		secret `+testSecret+`
		subject user.id
	}
	log {
		output file `+logFile+`
	}
	require_session /private* user
	require_session /any* {
		login_url /signin?from=app
	}
	respond /ph "{http.session.user.name}|{http.session_meta.new}|{http.session.cart.1}|{http.auth.user.id}|{http.session_meta.id}"
`, up)

	html := func(path string) reply {
		req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		return g.do(req)
	}

	// Public paths stay public.
	if r := g.get("/public"); r.Status != 200 {
		t.Fatalf("public path: %d", r.Status)
	}
	// Browsers are sent to the login page with the path they asked for.
	r := html("/private/page?a=1")
	if r.Status != http.StatusFound || r.Header.Get("Location") != "/login?next="+url.QueryEscape("/private/page?a=1") {
		t.Fatalf("browser: %d %q", r.Status, r.Header.Get("Location"))
	}
	if r := html("/any"); r.Header.Get("Location") != "/signin?from=app&next=%2Fany" {
		t.Fatalf("login_url with a query: %q", r.Header.Get("Location"))
	}
	// Other clients get 401 with a small JSON body.
	r = g.get("/private/page")
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, `"session required"`) || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("API client: %d %q", r.Status, r.Body)
	}

	// A session without the key is not enough for /private, enough for /any.
	g.get("/?patch=" + url.QueryEscape(`{"cart":["a","b"]}`))
	if r := g.get("/private"); r.Status != http.StatusUnauthorized {
		t.Fatalf("session without user: %d", r.Status)
	}
	if r := g.get("/any"); r.Status != 200 {
		t.Fatalf("any session: %d", r.Status)
	}
	// Placeholders before login.
	if r := g.get("/ph"); !strings.HasPrefix(r.Body, "|false|b|") || !strings.Contains(r.Body, g.get("/").Meta.ID) {
		t.Fatalf("placeholders: %q", r.Body)
	}

	g.get("/?patch=" + url.QueryEscape(`{"user":{"id":42,"name":"Ann"}}`))
	if r := g.get("/private"); r.Status != 200 {
		t.Fatalf("logged in: %d", r.Status)
	}
	if r := g.get("/ph"); !strings.HasPrefix(r.Body, "Ann|false|b|42|") {
		t.Fatalf("placeholders: %q", r.Body)
	}

	// The access log names the subject, as Caddy's own authentication does.
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if strings.Contains(sc.Text(), `"user_id":"42"`) {
			found = true
		}
		if strings.Contains(sc.Text(), g.sessionCookie("session")) {
			t.Fatal("the access log holds the session token")
		}
	}
	if !found {
		t.Fatal("no access log line with user_id 42")
	}
}

func TestLoginRedirectIsAlwaysSameSite(t *testing.T) {
	rs := &RequireSession{}
	_ = rs.Provision(caddyCtx(t))
	for _, uri := range []string{"/a?b=c", "//evil.example/x", "/\\evil.example/x", "///\\/evil.example", "/%2F%2Fevil"} {
		req := httptest.NewRequest(http.MethodGet, "http://site.example/", nil)
		req.URL = &url.URL{Path: strings.SplitN(uri, "?", 2)[0]}
		if i := strings.Index(uri, "?"); i >= 0 {
			req.URL.RawQuery = uri[i+1:]
		}
		req = req.WithContext(context.WithValue(req.Context(), caddyhttp.OriginalRequestCtxKey, *req))
		loc, err := url.Parse(rs.loginLocation(req))
		if err != nil || loc.Path != "/login" || loc.Host != "" {
			t.Fatalf("%s: bad login location %v", uri, loc)
		}
		next := loc.Query().Get("next")
		if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
			t.Errorf("%s: next=%q could leave the site", uri, next)
		}
	}
}
