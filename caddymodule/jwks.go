package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessiongate/caddy-session/caddymodule/internal/cfarg"
)

func init() {
	caddy.RegisterModule(JWKS{})
	httpcaddyfile.RegisterHandlerDirective("session_jwks", parseJWKSCaddyfile)
	// It answers by itself, so it goes before session (which is inserted
	// before basic_auth): fetching the keys loads no session and the
	// answer stays publicly cacheable.
	httpcaddyfile.RegisterDirectiveOrder("session_jwks", httpcaddyfile.After, "try_files")
}

// DefaultJWKSMaxAge is how long clients may cache the JWK Set by default.
const DefaultJWKSMaxAge = 5 * time.Minute

// JWKS answers with the JWK Set of the assertion keys: the signing and
// previous keys of every session handler of the running config, each key
// once. GET and HEAD only.
type JWKS struct {
	// MaxAge is sent as Cache-Control: public, max-age. Verifiers refetch
	// the set on an unknown kid anyway, so a new key is found at once;
	// a dropped key stays trusted by caches for up to this long.
	// Default: 5m.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (JWKS) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.session_jwks",
		New: func() caddy.Module { return new(JWKS) },
	}
}

// Validate checks the configuration.
func (j *JWKS) Validate() error {
	if j.MaxAge < 0 {
		return errors.New("session_jwks: max_age must not be negative")
	}
	return nil
}

// ServeHTTP answers with the key set.
func (j *JWKS) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	body, err := json.Marshal(keySet())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	maxAge := durationOr(j.MaxAge, DefaultJWKSMaxAge)
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(maxAge/time.Second)))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// parseJWKSCaddyfile reads the session_jwks directive.
func parseJWKSCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	j := new(JWKS)
	return j, j.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	session_jwks [<matcher>] {
//	    max_age <duration>
//	}
//
// It only parses: Validate checks the values.
func (j *JWKS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_age":
			var err error
			if j.MaxAge, err = cfarg.Duration(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown session_jwks option %q", d.Val())
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Validator             = (*JWKS)(nil)
	_ caddyhttp.MiddlewareHandler = (*JWKS)(nil)
	_ caddyfile.Unmarshaler       = (*JWKS)(nil)
)
