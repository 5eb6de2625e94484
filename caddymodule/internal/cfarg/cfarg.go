// Package cfarg reads subdirective arguments for the Caddyfile parsers of
// the session handler and the store modules.
package cfarg

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// One reads exactly one argument for the subdirective just read.
func One(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// Duration reads one duration for the subdirective just read, naming the
// subdirective in the error. Its range is the module's Validate's.
func Duration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	v, err := One(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("bad %s %q: want a duration such as 30m", opt, v)
	}
	return caddy.Duration(dur), nil
}
