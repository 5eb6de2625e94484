package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// CrossOriginConfig configures the protection against cross-site request
// forgery. It is the standard library's http.CrossOriginProtection
// (Sec-Fetch-Site, then Origin against Host), applied only to requests
// that carry the session cookie: an unsafe method (any but GET, HEAD
// and OPTIONS) from another origin gets 403 before the upstream is
// called.
// Requests without the cookie, such as an OIDC form_post callback, are not
// affected.
type CrossOriginConfig struct {
	// Trust lists origins ("https://app.example.com") whose cross-origin
	// requests are let through.
	Trust []string `json:"trust,omitempty"`
	// Bypass lists request patterns, in http.ServeMux syntax ("/hooks/",
	// "POST /api/callback"), that are let through from any origin. They
	// are matched against the path Caddy routes on: decoded, dot-segments
	// resolved and slashes merged, so /hooks/..%2Faccount is /account and
	// is not bypassed by /hooks/.
	Bypass []string `json:"bypass,omitempty"`
	// Off turns the protection off.
	Off bool `json:"off,omitempty"`
}

// protection builds the check; nil when it is off. A nil config is the
// default: on, trusting no other origin.
func (c *CrossOriginConfig) protection() *http.CrossOriginProtection {
	if c != nil && c.Off {
		return nil
	}
	p := http.NewCrossOriginProtection()
	if c == nil {
		return p
	}
	for _, o := range c.Trust {
		_ = p.AddTrustedOrigin(o) // checked in validate
	}
	for _, pat := range c.Bypass {
		if validBypass(pat) == nil {
			p.AddInsecureBypassPattern(pat)
		}
	}
	return p
}

// validate checks the origins and patterns.
func (c *CrossOriginConfig) validate() error {
	if c == nil {
		return nil
	}
	p := http.NewCrossOriginProtection()
	for _, o := range c.Trust {
		if err := p.AddTrustedOrigin(o); err != nil {
			return fmt.Errorf("cross_origin trust: %v", err)
		}
	}
	for _, pat := range c.Bypass {
		if err := validBypass(pat); err != nil {
			return fmt.Errorf("cross_origin bypass %q: %v", pat, err)
		}
	}
	return nil
}

// validBypass reports whether pat is a pattern http.ServeMux accepts
// (AddInsecureBypassPattern panics on one it does not).
func validBypass(pat string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	http.NewServeMux().Handle(pat, http.NotFoundHandler())
	return nil
}

// checkCrossOrigin runs p on r as Caddy's routing sees r: with the path
// decoded and cleaned (caddyhttp.CleanPath, as the path matcher, handle
// and php_fastcgi use it). http.CrossOriginProtection matches its bypass
// patterns on the escaped path, so on r itself /hooks/..%2Faccount would
// match a bypass of /hooks/ and then be routed to /account unchecked.
func checkCrossOrigin(p *http.CrossOriginProtection, r *http.Request) error {
	if r.URL.Path == "" {
		return p.Check(r)
	}
	clean := caddyhttp.CleanPath(r.URL.Path, true)
	if clean == r.URL.Path && r.URL.RawPath == "" {
		return p.Check(r)
	}
	u := *r.URL
	u.Path, u.RawPath = clean, ""
	routed := *r
	routed.URL = &u
	return p.Check(&routed)
}
