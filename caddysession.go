// Package caddysession is the import path xcaddy builds with. It registers
// the caddy-session modules with Caddy; the code lives in package
// caddymodule and the store modules in their own packages.
package caddysession

import (
	// Registers http.handlers.session and friends.
	_ "github.com/sessiongate/caddy-session/caddymodule"
	// Register http.session.stores.memory and http.session.stores.mongodb.
	_ "github.com/sessiongate/caddy-session/caddymodule/memorystore"
	_ "github.com/sessiongate/caddy-session/caddymodule/mongodbstore"
)
