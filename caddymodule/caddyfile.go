package caddymodule

import (
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/sessiongate/caddy-session/caddymodule/internal/cfarg"
	"github.com/sessiongate/caddy-session/internal/adopt"
)

// parseSessionCaddyfile keeps the directive's matcher inside the handler
// instead of on the route, so requests it does not match are still
// cleaned of protocol headers and the session cookie.
func parseSessionCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	s := new(Handler)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if matcherSet != nil {
		s.MatcherSetsRaw = caddyhttp.RawMatcherSets{matcherSet}
	}
	return h.NewRoute(nil, s), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	session [<matcher>] {
//	    store        memory [<name>] | mongodb { ... }
//	    secret       <key> [<older keys>...]
//	    idle_timeout <duration>
//	    lifetime     <duration>
//	    touch_interval <duration>
//	    cookie_name  <name>
//	    cookie_domain <domain>
//	    cookie_path  <path>
//	    cookie_same_site lax|strict|none
//	    cookie_secure auto|always|never
//	    cookie_max_age <duration>|session
//	    header_prefix <prefix>
//	    max_update_size <size>
//	    subject      <key path>
//	    read         <key path>... | none
//	    write        <key path>... | none
//	    control      <directive>... | none
//	    adopt koa|express {
//	        keys|secret <key>...
//	        cookie      <name>
//	        collection  <name>
//	        database    <name>
//	        algorithm   sha1|sha256|sha512
//	        path        <path>
//	        domain      <domain>
//	        grace       <duration>
//	    }
//	    backchannel_logout <path> {
//	        issuer   <url>
//	        audience <client id>...
//	        jwks_uri <url>
//	        sid_key  <key path>
//	        sub_key  <key path>
//	    }
//	    devices <path>
//	    max_sessions_per_subject <n>
//	    cross_origin [off] {
//	        trust  <origin>...
//	        bypass <pattern>...
//	        off
//	    }
//	    assertion {
//	        key      <PEM file> | {env.VAR}
//	        previous <PEM public key file>...
//	        issuer   <string>
//	        audience <string>
//	        ttl      <duration>
//	    }
//	}
//
// It only parses: Validate checks the values, for JSON configs too.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	cc := func() *CookieConfig {
		if h.Cookie == nil {
			h.Cookie = new(CookieConfig)
		}
		return h.Cookie
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "store":
			if h.StoreRaw != nil {
				return d.Err("store given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, uerr := caddyfile.UnmarshalModule(d, "http.session.stores."+name)
			if uerr != nil {
				return uerr
			}
			h.StoreRaw = caddyconfig.JSONModuleObject(mod, "type", name, nil)
		case "secret":
			h.Secrets = d.RemainingArgs()
			if len(h.Secrets) == 0 {
				return d.ArgErr()
			}
		case "idle_timeout":
			h.IdleTimeout, err = cfarg.Duration(d)
		case "lifetime":
			h.Lifetime, err = cfarg.Duration(d)
		case "touch_interval":
			h.TouchInterval, err = cfarg.Duration(d)
		case "cookie_name":
			cc().Name, err = cfarg.One(d)
		case "cookie_domain":
			cc().Domain, err = cfarg.One(d)
		case "cookie_path":
			cc().Path, err = cfarg.One(d)
		case "cookie_same_site":
			cc().SameSite, err = cfarg.One(d)
		case "cookie_secure":
			cc().Secure, err = cfarg.One(d)
		case "cookie_max_age":
			var v string
			if v, err = cfarg.One(d); err == nil {
				if v == "session" {
					cc().MaxAge = browserSessionCookie
				} else if dur, perr := caddy.ParseDuration(v); perr == nil {
					cc().MaxAge = caddy.Duration(dur)
				} else {
					return d.Errf("bad cookie_max_age %q: want a duration or 'session'", v)
				}
			}
		case "header_prefix":
			h.HeaderPrefix, err = cfarg.One(d)
		case "max_update_size":
			var v string
			if v, err = cfarg.One(d); err == nil {
				n, perr := humanize.ParseBytes(v)
				if perr != nil || n > math.MaxInt32 { // range: Validate
					return d.Errf("bad max_update_size %q: want a size such as 8000 or 8KiB", v)
				}
				h.MaxUpdateSize = int(n)
			}
		case "subject":
			h.Subject, err = cfarg.One(d)
		case "read", "write", "control":
			// Repeated lines add up; Validate checks the values.
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			list := map[string]*[]string{"read": &h.Read, "write": &h.Write, "control": &h.Control}[opt]
			*list = append(*list, args...)
		case "cross_origin":
			h.CrossOrigin, err = parseCrossOrigin(d)
		case "backchannel_logout":
			h.BackchannelLogout, err = parseBackchannel(d)
		case "devices":
			h.Devices, err = cfarg.One(d)
		case "max_sessions_per_subject":
			var v string
			if v, err = cfarg.One(d); err == nil {
				n, perr := strconv.Atoi(v)
				if perr != nil {
					return d.Errf("bad max_sessions_per_subject %q: want a whole number", v)
				}
				h.MaxSessionsPerSubject = n
			}
		case "assertion":
			h.Assertion, err = parseAssertion(d)
		case "adopt":
			var cfg adopt.Config
			if cfg, err = parseAdopt(d); err == nil {
				h.Adopt = append(h.Adopt, cfg)
			}
		default:
			return d.Errf("unknown session subdirective %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseAssertion reads an assertion block. An empty audience or issuer
// ("") is refused here: in JSON, the empty string means the default.
func parseAssertion(d *caddyfile.Dispenser) (*AssertionConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(AssertionConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var err error
		switch opt {
		case "key":
			c.Key, err = cfarg.One(d)
		case "previous":
			c.Previous = append(c.Previous, d.RemainingArgs()...)
			if len(c.Previous) == 0 {
				return nil, d.ArgErr()
			}
		case "issuer":
			c.Issuer, err = cfarg.One(d)
		case "audience":
			c.Audience, err = cfarg.One(d)
		case "ttl":
			c.TTL, err = cfarg.Duration(d)
		default:
			return nil, d.Errf("unknown assertion option %q", opt)
		}
		if err != nil {
			return nil, err
		}
		if (opt == "audience" || opt == "issuer" || opt == "key") && d.Val() == "" {
			return nil, d.Errf("assertion %s is empty", opt)
		}
	}
	return c, nil
}

// parseCrossOrigin reads a cross_origin block.
func parseCrossOrigin(d *caddyfile.Dispenser) (*CrossOriginConfig, error) {
	c := new(CrossOriginConfig)
	if d.NextArg() {
		if d.Val() != "off" {
			return nil, d.Errf("unknown cross_origin argument %q: want off or a block", d.Val())
		}
		c.Off = true
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "trust":
			c.Trust = append(c.Trust, d.RemainingArgs()...)
		case "bypass":
			c.Bypass = append(c.Bypass, d.RemainingArgs()...)
		case "off":
			c.Off = true
		default:
			return nil, d.Errf("unknown cross_origin option %q", d.Val())
		}
	}
	return c, nil
}

// parseAdopt reads an `adopt koa|express { ... }` block.
func parseAdopt(d *caddyfile.Dispenser) (adopt.Config, error) {
	var c adopt.Config
	kind, err := cfarg.One(d)
	if err != nil {
		return c, err
	}
	c.Kind = adopt.Kind(kind)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "keys", "secret":
			c.Keys = append(c.Keys, d.RemainingArgs()...)
		case "cookie":
			c.Cookie, err = cfarg.One(d)
		case "algorithm":
			c.Algorithm, err = cfarg.One(d)
		case "collection":
			c.Collection, err = cfarg.One(d)
		case "database":
			c.Database, err = cfarg.One(d)
		case "path":
			c.Path, err = cfarg.One(d)
		case "domain":
			c.Domain, err = cfarg.One(d)
		case "grace":
			c.Grace, err = cfarg.Duration(d)
		default:
			return c, d.Errf("unknown adopt option %q", opt)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func parseRequireCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	rs := new(RequireSession)
	err := rs.UnmarshalCaddyfile(h.Dispenser)
	return rs, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	require_session [<matcher>] [<key path>] {
//	    key       <key path>
//	    login_url <url>
//	}
func (rs *RequireSession) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		rs.Key = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "key", "login_url":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if opt == "key" {
				rs.Key = d.Val()
			} else {
				rs.LoginURL = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown require_session subdirective %q", opt)
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*RequireSession)(nil)
)

// parseBackchannel reads a `backchannel_logout <path> { ... }` block.
func parseBackchannel(d *caddyfile.Dispenser) (*BackchannelConfig, error) {
	path, err := cfarg.One(d)
	if err != nil {
		return nil, err
	}
	c := &BackchannelConfig{Path: path}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "issuer":
			c.Issuer, err = cfarg.One(d)
		case "audience":
			c.Audiences = append(c.Audiences, d.RemainingArgs()...)
		case "jwks_uri":
			c.JWKSURI, err = cfarg.One(d)
		case "sid_key":
			c.SidKey, err = cfarg.One(d)
		case "sub_key":
			c.SubKey, err = cfarg.One(d)
		default:
			return nil, d.Errf("unknown backchannel_logout option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}
