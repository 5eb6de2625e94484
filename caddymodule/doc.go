// Package caddymodule holds the Caddy modules of caddy-session: the session
// handler, the require_session handler and the session store modules.
package caddymodule
