package caddysession_test

import (
	"testing"

	"github.com/caddyserver/caddy/v2"

	_ "github.com/sessiongate/caddy-session"
)

// TestModulesRegistered: importing the package xcaddy builds with (as
// `xcaddy build --with github.com/sessiongate/caddy-session` does)
// registers every module of this repository, the store modules included.
func TestModulesRegistered(t *testing.T) {
	for _, id := range []string{
		"http.handlers.session",
		"http.handlers.require_session",
		"http.session.stores.memory",
		"http.session.stores.mongodb",
		"admin.api.session",
	} {
		if _, err := caddy.GetModule(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}
