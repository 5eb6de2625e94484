package cookie

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SecureMode says when the Secure attribute is set.
type SecureMode string

// Secure modes.
const (
	// SecureAuto sets Secure when the request came over TLS, so a cookie
	// set over HTTPS is never sent back over plain HTTP.
	SecureAuto SecureMode = "auto"
	// SecureAlways always sets Secure (needed behind a TLS-terminating
	// load balancer that talks plain HTTP to Caddy).
	SecureAlways SecureMode = "always"
	// SecureNever never sets Secure. Only for local development.
	SecureNever SecureMode = "never"
)

// Attributes are the attributes a session cookie is sent with. HttpOnly is
// always set: no script ever needs the session token.
//
// # Cookie name prefixes
//
// On HTTPS the recommended name is "__Host-session" (any name after the
// prefix works). Browsers accept a cookie whose name starts with __Host-
// only if it is set with Secure, with Path=/ and without Domain, and they
// never let another host or a plain-HTTP page set or overwrite such a
// cookie. That closes cookie tossing (a sibling subdomain or a network
// attacker planting a cookie of our name) at the browser, where
// TakeVerified can only ignore the planted cookies it can tell apart.
// The settings it needs: Secure SecureAlways, Path "" or "/", Domain "".
//
// A name starting with __Secure- needs Secure SecureAlways only; it keeps
// plain-HTTP pages from setting the cookie but allows Domain, so it does
// not stop tossing from sibling subdomains.
//
// Validate refuses prefixed names without these settings (browsers would
// silently drop the cookie otherwise). Browsers match the prefixes without
// regard to case, and so does Validate.
type Attributes struct {
	// Name is the cookie name. See "Cookie name prefixes" above.
	Name string
	// Domain is the Domain attribute; empty sends none, so the cookie is
	// host-only. A __Host- cookie needs it empty.
	Domain string
	// Path is the Path attribute; empty means "/". A __Host- cookie needs
	// "/".
	Path string
	// SameSite is the SameSite attribute.
	SameSite http.SameSite
	// Secure says when the Secure attribute is set. Prefixed names and
	// SameSite None need SecureAlways.
	Secure SecureMode
	// MaxAge caps how long the browser keeps the cookie. Zero keeps it
	// until the session's absolute lifetime ends; a negative value makes
	// it a browser-session cookie (no Max-Age) unless the upstream asks
	// for a persistent session with max-age.
	MaxAge time.Duration
}

// ParseSameSite turns "lax", "strict" or "none" into an http.SameSite.
func ParseSameSite(s string) (http.SameSite, error) {
	switch strings.ToLower(s) {
	case "", "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	case "none":
		return http.SameSiteNoneMode, nil
	}
	return 0, fmt.Errorf("unknown same_site value %q: want lax, strict or none", s)
}

// Validate checks the attributes against the rules browsers enforce, so a
// misconfiguration fails at start-up instead of silently losing cookies.
func (a *Attributes) Validate() error {
	if a.Name == "" {
		return errors.New("cookie name is empty")
	}
	if !validName(a.Name) {
		return fmt.Errorf("cookie name %q has characters not allowed in a cookie name", a.Name)
	}
	switch a.Secure {
	case SecureAuto, SecureAlways, SecureNever:
	default:
		return fmt.Errorf("unknown secure mode %q: want auto, always or never", a.Secure)
	}
	if a.Path != "" && !strings.HasPrefix(a.Path, "/") {
		return fmt.Errorf("cookie path %q must start with /", a.Path)
	}
	if hasPrefixFold(a.Name, "__Host-") {
		if a.Secure != SecureAlways || a.Domain != "" || (a.Path != "" && a.Path != "/") {
			return errors.New("a __Host- cookie needs secure always, no domain and path /")
		}
	}
	if hasPrefixFold(a.Name, "__Secure-") && a.Secure != SecureAlways {
		return errors.New("a __Secure- cookie needs secure always")
	}
	if a.SameSite == http.SameSiteNoneMode && a.Secure != SecureAlways {
		return errors.New("same_site none needs secure always: browsers drop such cookies otherwise")
	}
	return nil
}

// hasPrefixFold is strings.HasPrefix without regard to ASCII case, as
// browsers match cookie name prefixes.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// NeedsSecure reports whether browsers take a cookie named name only with
// the Secure attribute: its name starts with __Secure- or __Host-, in any
// letter case.
func NeedsSecure(name string) bool {
	return hasPrefixFold(name, "__Secure-") || hasPrefixFold(name, "__Host-")
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// New returns the cookie that carries value. tls says whether the request
// came over TLS. maxAge is how long the browser should keep it; zero or
// less makes a browser-session cookie.
func (a *Attributes) New(value string, tls bool, maxAge time.Duration) *http.Cookie {
	c := a.base(tls)
	c.Value = value
	if maxAge > 0 {
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	}
	return c
}

// Expired returns a cookie that makes the browser forget the session
// cookie at once.
func (a *Attributes) Expired(tls bool) *http.Cookie {
	c := a.base(tls)
	c.MaxAge = -1 // net/http writes this as Max-Age=0
	return c
}

func (a *Attributes) base(tls bool) *http.Cookie {
	path := a.Path
	if path == "" {
		path = "/"
	}
	return &http.Cookie{
		Name:     a.Name,
		Path:     path,
		Domain:   a.Domain,
		HttpOnly: true,
		SameSite: a.SameSite,
		Secure:   a.Secure == SecureAlways || (a.Secure == SecureAuto && tls),
	}
}
