package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

func init() {
	caddy.RegisterModule(RequireSession{})
}

// DefaultLoginURL is where browsers without a session are sent.
const DefaultLoginURL = "/login"

// RequireSession lets a request through only when it has a session, or a
// non-null value at Key in it. Otherwise browsers (requests that accept
// HTML) are redirected to LoginURL with the path they asked for in the
// "next" query parameter, and other clients get 401 with a small JSON
// body. It must come after the session handler in the route; the
// Caddyfile orders it so.
type RequireSession struct {
	// Key is a dotted path into the session data (e.g. "user") that must
	// hold a non-null value. Empty: any session will do.
	Key string `json:"key,omitempty"`

	// LoginURL is where browsers are redirected. Default: /login.
	LoginURL string `json:"login_url,omitempty"`

	path []string
}

// CaddyModule returns the Caddy module information.
func (RequireSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.require_session",
		New: func() caddy.Module { return new(RequireSession) },
	}
}

// Provision sets defaults.
func (rs *RequireSession) Provision(caddy.Context) error {
	if rs.LoginURL == "" {
		rs.LoginURL = DefaultLoginURL
	}
	if rs.Key != "" {
		rs.path = strings.Split(rs.Key, ".")
	}
	return nil
}

// Validate checks the configuration.
func (rs *RequireSession) Validate() error {
	if !strings.HasPrefix(rs.LoginURL, "/") && !strings.HasPrefix(rs.LoginURL, "https://") && !strings.HasPrefix(rs.LoginURL, "http://") {
		return errors.New("login_url must be a path or an absolute http(s) URL")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (rs *RequireSession) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	st, _ := caddyhttp.GetVar(r.Context(), stateVarKey).(*state)
	if st == nil {
		// Fail closed: a misordered config must not expose the route.
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("require_session needs the session handler earlier in the route"))
	}
	if st.rec != nil {
		if rs.path == nil {
			return next.ServeHTTP(w, r)
		}
		if v, ok := protocol.Lookup(st.rec.Data, rs.path); ok && v != nil {
			return next.ServeHTTP(w, r)
		}
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	addVary(hdr)
	if acceptsHTML(r) {
		status := http.StatusFound
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusSeeOther // the login page is fetched with GET
		}
		http.Redirect(w, r, rs.loginLocation(r), status)
		return nil
	}
	hdr.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, err := w.Write([]byte(`{"error":"session required"}` + "\n"))
	return err
}

// loginLocation is LoginURL with the originally requested path and query
// in "next". The value is always a same-site path: leading slashes and
// backslashes are collapsed so it can never read as another host
// ("//evil.example"), whatever the client asked for.
func (rs *RequireSession) loginLocation(r *http.Request) string {
	uri := r.URL.RequestURI()
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		uri = orig.URL.RequestURI()
	}
	uri = "/" + strings.TrimLeft(uri, "/\\")
	sep := "?"
	if strings.Contains(rs.LoginURL, "?") {
		sep = "&"
	}
	return rs.LoginURL + sep + "next=" + url.QueryEscape(uri)
}

// acceptsHTML tells browsers navigating to a page from API clients.
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*RequireSession)(nil)
	_ caddy.Validator             = (*RequireSession)(nil)
	_ caddyhttp.MiddlewareHandler = (*RequireSession)(nil)
)
