// Package caddysession is the import path xcaddy builds with. It registers
// the caddy-session modules with Caddy; the code lives in package
// caddymodule.
package caddysession

import (
	// Registers http.handlers.session and friends.
	_ "github.com/sessiongate/caddy-session/caddymodule"
)
