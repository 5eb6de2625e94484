package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// TestAdminBadInput checks each way to call the session admin API wrong:
// the status and a message that says what is wrong, as Caddy's JSON error.
func TestAdminBadInput(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	startGateway(t, options, plainSession, up)
	for _, c := range []struct {
		name, method, path string
		status             int
		msg                string
	}{
		{"post on subject", http.MethodPost, "/session/subjects/alice", 405, "method POST not allowed"},
		{"put on subject", http.MethodPut, "/session/subjects/alice", 405, "allowed: GET, DELETE"},
		{"get on handle", http.MethodGet, "/session/sessions/0123456789ab", 405, "allowed: DELETE"},
		{"empty subject", http.MethodGet, "/session/subjects/", 400, "subject is empty"},
		{"empty subject delete", http.MethodDelete, "/session/subjects/", 400, "subject is empty"},
		{"long subject", http.MethodGet, "/session/subjects/" + strings.Repeat("a", store.MaxSubjectLen+1), 400, "longer than 1024"},
		{"invalid utf-8", http.MethodDelete, "/session/subjects/%ff%fe", 400, "not valid UTF-8"},
		{"empty handle", http.MethodDelete, "/session/sessions/", 400, "12 lower-case hex"},
		{"short handle", http.MethodDelete, "/session/sessions/0123456789a", 400, "12 lower-case hex"},
		{"long handle", http.MethodDelete, "/session/sessions/0123456789abc", 400, "12 lower-case hex"},
		{"upper-case handle", http.MethodDelete, "/session/sessions/0123456789AB", 400, "12 lower-case hex"},
		{"non-hex handle", http.MethodDelete, "/session/sessions/0123456789ag", 400, "12 lower-case hex"},
		{"unknown path", http.MethodGet, "/session/tokens/x", 404, "unknown session API path"},
		{"unknown store", http.MethodGet, "/session/subjects/alice?store=nope", 404, `no session store named "nope"`},
		{"store without index", http.MethodGet, "/session/subjects/alice", 404, "can find sessions by subject"},
		{"store without index by handle", http.MethodDelete, "/session/sessions/0123456789ab?store=plain", 404, "can find sessions by subject"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := adminDo(t, admin, c.method, c.path)
			if status != c.status {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, status, body, c.status)
			}
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("error body is not Caddy's JSON error: %q", body)
			}
			if !strings.Contains(e.Error, c.msg) {
				t.Fatalf("error %q does not say %q", e.Error, c.msg)
			}
		})
	}
}

// TestAdminNoSessionHandler: with no session handler in the config, the
// API says so instead of answering an empty list.
func TestAdminNoSessionHandler(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	startGateway(t, options, "", up)
	status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/alice")
	if status != http.StatusNotFound || !strings.Contains(body, "no session handler in the running config") {
		t.Fatalf("%d %s", status, body)
	}
}

// TestAdminHandle checks the handle syntax the API and the CLI accept.
func TestAdminHandle(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"0123456789ab", true}, {"ffffffffffff", true}, {"0123456789AB", false},
		{"0123456789a", false}, {"0123456789abc", false}, {"", false}, {"0123456789a/", false}, {"g123456789ab", false},
	} {
		t.Run(c.in, func(t *testing.T) {
			t.Parallel()
			if got := cookie.IsHandle(c.in); got != c.ok {
				t.Fatalf("cookie.IsHandle(%q) = %v", c.in, got)
			}
		})
	}
}
