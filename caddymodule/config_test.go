package caddymodule

// Start-up refusals: every bad value is refused by Validate, so a JSON
// config and a Caddyfile saying the same thing fail with the same error.

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/store/memstore"
)

// loadSessionJSON loads a JSON config whose only route is a session
// handler with the test secret and the given extra fields (a JSON object
// body, such as `"idle_timeout":"1h"`), then a respond handler.
func loadSessionJSON(t *testing.T, fields string) error {
	t.Helper()
	if fields != "" {
		fields = "," + fields
	}
	cfg := fmt.Sprintf(`{
	"admin": {"disabled": true, "config": {"persist": false}},
	"storage": {"module": "file_system", "root": %q},
	"apps": {"http": {"servers": {"s": {
		"listen": ["127.0.0.1:%d"],
		"automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "session", "secrets": [%q]%s},
			{"handler": "static_response", "body": "ok"}
		]}]
	}}}}
}`, t.TempDir(), freePort(t), testSecret, fields)
	return caddy.Load([]byte(cfg), true)
}

// loadSessionCaddyfile loads a Caddyfile whose site has a session block
// with the test secret and the given subdirective lines.
func loadSessionCaddyfile(t *testing.T, lines string) error {
	t.Helper()
	cf := fmt.Sprintf("%shttp://127.0.0.1:%d {\n\tsession {\n\t\tsecret %s\n%s\n\t}\n\trespond ok\n}\n",
		globalOptions(t), freePort(t), testSecret, lines)
	return loadCaddyfile(t, cf)
}

// validateMessage is the session handler's own words in a load error,
// after Caddy's chain of "loading ... module" prefixes.
func validateMessage(err error) string {
	msg := err.Error()
	const marker = "http.handlers.session"
	if i := strings.LastIndex(msg, marker); i >= 0 {
		msg = msg[i+len(marker):]
	}
	return strings.TrimPrefix(strings.TrimPrefix(msg, ": "), "invalid configuration: ")
}

// TestConfigSameErrorsInJSONAndCaddyfile: the same bad value refuses to
// start in a JSON config and in a Caddyfile, with the same message from
// Validate (the Caddyfile parser only assigns).
func TestConfigSameErrorsInJSONAndCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		caddyfil string // subdirective lines
		json     string // handler fields
		want     string // in the message; "" means the config is accepted
	}{
		{"header_prefix with a space", `header_prefix "X Bad"`, `"header_prefix":"X Bad"`, `header_prefix "X Bad": want a header name`},
		{"header_prefix C would strip Cookie", `header_prefix C`, `"header_prefix":"C"`, `header_prefix "C": want`},
		{"header_prefix Co", `header_prefix Co`, `"header_prefix":"Co"`, `header_prefix "Co": want`},
		{"header_prefix Cookie", `header_prefix Cookie`, `"header_prefix":"Cookie"`, `header_prefix "Cookie": want`},
		{"header_prefix X-Ses is fine", `header_prefix X-Ses`, `"header_prefix":"X-Ses"`, ""},
		{"negative idle_timeout", `idle_timeout -1m`, `"idle_timeout":"-1m"`, "idle_timeout must not be negative"},
		{"negative lifetime", `lifetime -1h`, `"lifetime":"-1h"`, "lifetime must not be negative"},
		{"negative touch_interval", `touch_interval -1s`, `"touch_interval":"-1s"`, "touch_interval must not be negative"},
		{"lifetime shorter than idle_timeout", "idle_timeout 2h\n\t\tlifetime 1h", `"idle_timeout":"2h","lifetime":"1h"`, "lifetime (1h0m0s) is shorter than idle_timeout (2h0m0s)"},
		{"lifetime shorter than the default idle_timeout", `lifetime 30m`, `"lifetime":"30m"`, "lifetime (30m0s) is shorter than idle_timeout (1h0m0s)"},
		{"lifetime equal to idle_timeout is fine", "idle_timeout 1h\n\t\tlifetime 1h", `"idle_timeout":"1h","lifetime":"1h"`, ""},
		{"touch_interval over half idle_timeout", "idle_timeout 10m\n\t\ttouch_interval 6m", `"idle_timeout":"10m","touch_interval":"6m"`, "touch_interval (6m0s) is more than half of idle_timeout (10m0s)"},
		{"touch_interval equal to idle_timeout", "idle_timeout 10m\n\t\ttouch_interval 10m", `"idle_timeout":"10m","touch_interval":"10m"`, "touch_interval (10m0s) is more than half of idle_timeout (10m0s)"},
		{"touch_interval at half idle_timeout is fine", "idle_timeout 10m\n\t\ttouch_interval 5m", `"idle_timeout":"10m","touch_interval":"5m"`, ""},
		{"max_update_size too small", `max_update_size 10`, `"max_update_size":10`, "max_update_size 10: want between"},
		{"max_update_size too big", `max_update_size 2MiB`, `"max_update_size":2097152`, "max_update_size 2097152: want between"},
		{"max_update_size 1MiB is fine", `max_update_size 1MiB`, `"max_update_size":1048576`, ""},
		{"same_site sideways", `cookie_same_site sideways`, `"cookie":{"same_site":"sideways"}`, "session cookie: "},
		{"secure bogus", `cookie_secure bogus`, `"cookie":{"secure":"bogus"}`, `session cookie: secure "bogus": want auto, always or never`},
		{"subject with an empty segment", `subject a..b`, `"subject":"a..b"`, `subject: key path "a..b", step 2: empty key`},
		{"subject with a leading dot", `subject .a`, `"subject":".a"`, `subject: key path ".a", step 1: empty key`},
		{"subject with an array index is fine", `subject users.0.id`, `"subject":"users.0.id"`, ""},
		{"read into an array", `read user.name cart.0`, `"read":["user.name","cart.0"]`, `read: key path "cart.0", step 2: looks like an array index`},
		{"read with brackets", `read items[0]`, `"read":["items[0]"]`, `read: key path "items[0]", step 1: looks like an array index`},
		{"read with a wildcard", `read user.*`, `"read":["user.*"]`, `read: key path "user.*", step 2: wildcards`},
		{"read none with a path", `read none user`, `"read":["none","user"]`, `read: "none" must stand alone`},
		{"read none is fine", `read none`, `"read":["none"]`, ""},
		{"write a dotted key", `write a..b`, `"write":["a..b"]`, `write: key path "a..b", step 2: empty key (keys that contain dots cannot be named`},
		{"write a $ key", `write $set`, `"write":["$set"]`, `write: key path "$set", step 1: keys that start with $`},
		{"write paths are fine", "write reports prefs.theme\n\t\twrite none2", `"write":["reports","prefs.theme","none2"]`, ""},
		{"control unknown", `control destroy logout`, `"control":["destroy","logout"]`, `control: control directive "logout": want regenerate, destroy, max-age, revoke-others, revoke-all`},
		{"control none is fine", `control none`, `"control":["none"]`, ""},
		{"cookie max age under twice the touch interval", `cookie_max_age 90s`, `"cookie":{"max_age":"90s"}`, "cookie max_age (1m30s) is less than twice the touch interval (1m0s)"},
		{"cookie max age at twice the touch interval is fine", `cookie_max_age 2m`, `"cookie":{"max_age":"2m"}`, ""},
		{"negative cookie max age", `cookie_max_age -5m`, `"cookie":{"max_age":"-5m"}`, "cookie max_age (-5m0s) is negative: for a browser-session cookie write session (JSON: -1)"},
		{"cookie max age session is fine", `cookie_max_age session`, `"cookie":{"max_age":-1}`, ""},
		{"cross_origin bad origin", "cross_origin {\n\t\t\ttrust example.com/x\n\t\t}", `"cross_origin":{"trust":["example.com/x"]}`, "cross_origin trust: "},
		{"cross_origin bad pattern", "cross_origin {\n\t\t\tbypass /{x}/{x}\n\t\t}", `"cross_origin":{"bypass":["/{x}/{x}"]}`, `cross_origin bypass "/{x}/{x}": `},
		{"__Host- cookie without secure always", `cookie_name __Host-session`, `"cookie":{"name":"__Host-session"}`, "a __Host- cookie needs secure always, no domain and path /"},
		{"__Host- cookie with a domain", "cookie_name __Host-session\n\t\tcookie_secure always\n\t\tcookie_domain example.com", `"cookie":{"name":"__Host-session","secure":"always","domain":"example.com"}`, "a __Host- cookie needs secure always"},
		{"cache ttl under 10ms", mongoCache("5ms", ""), `"store":{"type":"mongodb","uri":"mongodb://127.0.0.1:1","cache":{"ttl":"5ms"}}`, "cache ttl 5ms is out of range"},
		{"cache ttl over 1m", mongoCache("2m", ""), `"store":{"type":"mongodb","uri":"mongodb://127.0.0.1:1","cache":{"ttl":"2m"}}`, "cache ttl 2m0s is out of range"},
		{"cache size 0", mongoCache("", "0"), `"store":{"type":"mongodb","uri":"mongodb://127.0.0.1:1","cache":{"size":0}}`, "cache size must be positive, got 0"},
		{"cache size negative", mongoCache("", "-1"), `"store":{"type":"mongodb","uri":"mongodb://127.0.0.1:1","cache":{"size":-1}}`, "cache size must be positive, got -1"},
		{"cache defaults are fine", mongoCache("", ""), `"store":{"type":"mongodb","uri":"mongodb://127.0.0.1:1","cache":{}}`, ""},
		{"__Host- cookie with secure always is fine", "cookie_name __Host-session\n\t\tcookie_secure always", `"cookie":{"name":"__Host-session","secure":"always"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { checkSameConfigError(t, tc.json, tc.caddyfil, tc.want) })
	}
}

// mongoCache is a MongoDB store block (never dialed) with a cache line.
func mongoCache(ttl, size string) string {
	block := ""
	if size != "" {
		block = " {\n\t\t\t\tsize " + size + "\n\t\t\t}"
	}
	return "store mongodb {\n\t\t\turi mongodb://127.0.0.1:1\n\t\t\tcache " + ttl + block + "\n\t\t}"
}

// TestConfigParserErrorsNameTheLine: what the Caddyfile parser itself
// refuses (a value it cannot read at all) names the line.
func TestConfigParserErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ name, lines, want string }{
		{"unreadable duration", "idle_timeout soon", "bad idle_timeout"},
		{"unreadable size", "max_update_size lots", "bad max_update_size"},
		{"unreadable cookie_max_age", "cookie_max_age forever", "bad cookie_max_age"},
		{"unknown subdirective", "bogus 1", "unknown session subdirective"},
		{"read without a path", "read", "argument count"},
		{"control without a directive", "control", "argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := loadSessionCaddyfile(t, "\t\t"+tc.lines)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("accepted")
			}
			// globalOptions is 6 lines; the site line, session, secret:
			// the subdirective is on line 10.
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:10") {
				t.Errorf("error %q does not say %q on Caddyfile:10", err, tc.want)
			}
		})
	}
}

// checkSameConfigError loads the JSON fragment and the Caddyfile lines of
// one session config and checks both are refused with the same Validate
// message holding want, or both accepted when want is empty.
func checkSameConfigError(t *testing.T, json, caddyfile, want string) {
	t.Helper()
	jsonErr := loadSessionJSON(t, json)
	if jsonErr == nil {
		_ = caddy.Stop()
	}
	cfErr := loadSessionCaddyfile(t, caddyfile)
	if cfErr == nil {
		_ = caddy.Stop()
	}
	if want == "" {
		if jsonErr != nil || cfErr != nil {
			t.Fatalf("refused a good config: JSON %v; Caddyfile %v", jsonErr, cfErr)
		}
		return
	}
	if jsonErr == nil || cfErr == nil {
		t.Fatalf("accepted: JSON error %v; Caddyfile error %v", jsonErr, cfErr)
	}
	j, c := validateMessage(jsonErr), validateMessage(cfErr)
	if !strings.Contains(j, want) {
		t.Errorf("JSON error %q does not say %q", j, want)
	}
	if j != c {
		t.Errorf("different errors:\nJSON:      %s\nCaddyfile: %s", j, c)
	}
}

// provisionedStores counts the Provision calls of the test store module
// http.session.stores.provisioned: a bad config must open nothing.
var provisionedStores atomic.Int64

// provisionedStore is a memory store that counts its provisioning.
type provisionedStore struct{ *memstore.Store }

func init() { caddy.RegisterModule(new(provisionedStore)) }

func (*provisionedStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.session.stores.provisioned", New: func() caddy.Module { return new(provisionedStore) }}
}

func (p *provisionedStore) Provision(caddy.Context) error {
	provisionedStores.Add(1)
	p.Store = memstore.New()
	return nil
}

func (p *provisionedStore) Cleanup() error { return p.Close() }

// TestConfigBadOpensNothing: Caddy provisions a module before it
// validates it, so the handler runs its checks first: a bad config never
// provisions its store (no client, no goroutine), and a good one does.
func TestConfigBadOpensNothing(t *testing.T) {
	store := `"store":{"type":"provisioned"}`
	for _, bad := range []string{
		`"idle_timeout":"2h","lifetime":"1h"`,
		`"header_prefix":"C"`,
		`"cookie":{"same_site":"sideways"}`,
		`"secrets":["{env.CADDY_SESSION_TEST_UNSET}"]`,
		`"adopt":[{"kind":"koa","keys":["{env.CADDY_SESSION_TEST_UNSET}"]}]`,
	} {
		provisionedStores.Store(0)
		if err := loadSessionJSON(t, bad+","+store); err == nil {
			_ = caddy.Stop()
			t.Fatalf("%s: accepted", bad)
		}
		if n := provisionedStores.Load(); n != 0 {
			t.Errorf("%s: the store was provisioned %d times before the config was refused", bad, n)
		}
	}
	provisionedStores.Store(0)
	if err := loadSessionJSON(t, store); err != nil {
		t.Fatal(err)
	}
	_ = caddy.Stop()
	if n := provisionedStores.Load(); n != 1 {
		t.Fatalf("a good config provisioned its store %d times, want 1", n)
	}
}

// TestConfigErrorDeterministic: with several bad values the first in the
// list is reported, every time.
func TestConfigErrorDeterministic(t *testing.T) {
	h := &Handler{IdleTimeout: -1, Lifetime: -1, TouchInterval: -1}
	for range 20 {
		if err := h.Validate(); err == nil || err.Error() != "idle_timeout must not be negative" {
			t.Fatalf("Validate: %v, want the idle_timeout error every time", err)
		}
	}
}
