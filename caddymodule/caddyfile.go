package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func parseSessionCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Handler)
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return s, err
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
//	}
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
			h.IdleTimeout, err = durationArg(d)
		case "lifetime":
			h.Lifetime, err = durationArg(d)
		case "touch_interval":
			h.TouchInterval, err = durationArg(d)
		case "cookie_name":
			cc().Name, err = oneArg(d)
		case "cookie_domain":
			cc().Domain, err = oneArg(d)
		case "cookie_path":
			cc().Path, err = oneArg(d)
		case "cookie_same_site":
			var v string
			if v, err = oneArg(d); err == nil {
				switch strings.ToLower(v) {
				case "lax", "strict", "none":
					cc().SameSite = strings.ToLower(v)
				default:
					return d.Errf("bad cookie_same_site %q: want lax, strict or none", v)
				}
			}
		case "cookie_secure":
			var v string
			if v, err = oneArg(d); err == nil {
				switch strings.ToLower(v) {
				case "auto", "always", "never":
					cc().Secure = strings.ToLower(v)
				default:
					return d.Errf("bad cookie_secure %q: want auto, always or never", v)
				}
			}
		case "cookie_max_age":
			var v string
			if v, err = oneArg(d); err == nil {
				if v == "session" {
					cc().MaxAge = -1
				} else if dur, perr := caddy.ParseDuration(v); perr == nil && dur > 0 {
					cc().MaxAge = caddy.Duration(dur)
				} else {
					return d.Errf("bad cookie_max_age %q: want a positive duration or 'session'", v)
				}
			}
		case "header_prefix":
			var v string
			if v, err = oneArg(d); err == nil {
				if !validHeaderName(v) {
					return d.Errf("bad header_prefix %q", v)
				}
				h.HeaderPrefix = v
			}
		case "max_update_size":
			var v string
			if v, err = oneArg(d); err == nil {
				n, perr := humanize.ParseBytes(v)
				if perr != nil || n == 0 || n > 1<<20 {
					return d.Errf("bad max_update_size %q: want a size such as 8KiB, at most 1MiB", v)
				}
				h.MaxUpdateSize = int(n)
			}
		case "subject":
			h.Subject, err = oneArg(d)
		default:
			return d.Errf("unknown session subdirective %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// oneArg reads exactly one argument for the subdirective just read.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// durationArg reads one positive duration for the subdirective just read,
// naming the subdirective in the error.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("bad %s %q: want a positive duration such as 30m", opt, v)
	}
	return caddy.Duration(dur), nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
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
