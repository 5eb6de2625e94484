package caddymodule

// The adopt block's configuration checks: they need no Node app, so they
// run in the fast test set (adopt_test.go, behind the e2e tag, walks the
// real legacy apps).

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// TestAdoptConfigRefused: a bad adopt block does not start, with the same
// message in JSON and Caddyfile configs.
func TestAdoptConfigRefused(t *testing.T) {
	t.Setenv("CADDY_SESSION_TEST_EMPTY", "")
	for _, tc := range []struct {
		name, caddyfile, json, want string // want "": accepted
	}{
		{"unknown kind", "adopt redis {\n\t\t\tkeys k1\n\t\t}", `"adopt":[{"kind":"redis","keys":["k1"]}]`,
			`adopt: unknown source "redis": want koa or express`},
		{"koa without keys", "adopt koa {\n\t\t\tcookie koa.sess\n\t\t}", `"adopt":[{"kind":"koa","cookie":"koa.sess"}]`,
			"adopt koa: no keys: give the legacy app's app.keys"},
		{"express without a secret", "adopt express {\n\t\t\tcookie connect.sid\n\t\t}", `"adopt":[{"kind":"express","cookie":"connect.sid"}]`,
			"adopt express: no keys: give the legacy app's session secret(s)"},
		{"a key from an unset variable", "adopt koa {\n\t\t\tkeys k1 {env.CADDY_SESSION_TEST_EMPTY}\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1","{env.CADDY_SESSION_TEST_EMPTY}"]}]`,
			"adopt koa: key 2 is empty (unset environment variable?)"},
		{"koa collection with the memory store", "adopt koa {\n\t\t\tkeys k1\n\t\t\tcollection sessions\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1"],"collection":"sessions"}]`,
			`adopt koa: collection "sessions" needs the mongodb session store`},
		{"express with the memory store", "adopt express {\n\t\t\tsecret s1\n\t\t}", `"adopt":[{"kind":"express","keys":["s1"]}]`,
			`adopt express: collection "sessions" needs the mongodb session store`},
		{"database without collection", "adopt koa {\n\t\t\tkeys k1\n\t\t\tdatabase app\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1"],"database":"app"}]`,
			"adopt koa: database without collection"},
		{"grace over 10m", "adopt koa {\n\t\t\tkeys k1\n\t\t\tgrace 11m\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1"],"grace":"11m"}]`,
			"adopt koa: grace 11m0s out of range"},
		{"unknown algorithm", "adopt koa {\n\t\t\tkeys k1\n\t\t\talgorithm md5\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1"],"algorithm":"md5"}]`,
			`adopt koa: unknown algorithm "md5": want sha1, sha256 or sha512`},
		{"koa cookie-only with the memory store is fine", "adopt koa {\n\t\t\tkeys k1\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1"]}]`, ""},
		// Issue 17 item 6: a legacy cookie under the gateway's own name (or
		// koa's signature cookie under it) would let a planted cookie
		// expire the session cookie.
		{"koa cookie named like the session cookie", "adopt koa {\n\t\t\tkeys k1\n\t\t\tcookie session\n\t\t}", `"adopt":[{"kind":"koa","keys":["k1"],"cookie":"session"}]`,
			`adopt koa: legacy cookie "session" clashes with the session cookie "session"`},
		{"koa signature cookie named like the session cookie", "adopt koa {\n\t\t\tkeys k1\n\t\t\tcookie koa\n\t\t}\n\t\tcookie_name koa.sig", `"adopt":[{"kind":"koa","keys":["k1"],"cookie":"koa"}],"cookie":{"name":"koa.sig"}`,
			`adopt koa: legacy cookie "koa.sig" clashes with the session cookie "koa.sig"`},
		{"express cookie named like the session cookie", "adopt express {\n\t\t\tsecret s1\n\t\t\tcookie sid\n\t\t}\n\t\tcookie_name sid", `"adopt":[{"kind":"express","keys":["s1"],"cookie":"sid"}],"cookie":{"name":"sid"}`,
			`adopt express: legacy cookie "sid" clashes with the session cookie "sid"`},
		{"default koa name against a custom cookie_name", "adopt koa {\n\t\t\tkeys k1\n\t\t}\n\t\tcookie_name koa.sess", `"adopt":[{"kind":"koa","keys":["k1"]}],"cookie":{"name":"koa.sess"}`,
			`adopt koa: legacy cookie "koa.sess" clashes with the session cookie "koa.sess"`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkSameConfigError(t, tc.json, "\t\t"+tc.caddyfile, tc.want) })
	}
}

// TestAdoptCaddyfileParseErrors: what the parser itself refuses names the
// line.
func TestAdoptCaddyfileParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, lines, want string }{
		{"no kind", "adopt", "wrong argument count"},
		{"two kinds", "adopt koa express", "wrong argument count"},
		{"unknown option", "adopt koa {\n\t\t\tkeys k1\n\t\t\tstore mongodb\n\t\t}", `unknown adopt option "store"`},
		{"unreadable grace", "adopt koa {\n\t\t\tkeys k1\n\t\t\tgrace soon\n\t\t}", "bad grace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := loadSessionCaddyfile(t, "\t\t"+tc.lines)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
				t.Errorf("error %q does not say %q with the line", err, tc.want)
			}
		})
	}
}

// TestAdoptRefusesTheStoresOwnCollection: express's default legacy
// collection, "sessions" in the store's database, is the gateway's own
// collection; adopting from it would claim and sweep the gateway's
// sessions, so it is a start-up error.
func TestAdoptRefusesTheStoresOwnCollection(t *testing.T) {
	uri, db := mongotest.Database(t)
	err := loadSessionCaddyfile(t, fmt.Sprintf("\t\tstore mongodb {\n\t\t\turi %s\n\t\t\tdatabase %s\n\t\t}\n\t\tadopt express {\n\t\t\tsecret s1\n\t\t}", uri, db))
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("an adopt block reading the store's own collection was accepted")
	}
	if msg := validateMessage(err); !strings.Contains(msg, "is the session store's own") || strings.Contains(msg, uri) {
		t.Fatalf("error %q does not name the clash, or names the URI", msg)
	}
}
