package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// loginAs starts a new browser (its own cookie jar) logged in as user and
// returns it with its session's handle.
func loginAs(t *testing.T, g *gateway, user string) (*gateway, string) {
	t.Helper()
	b := startBrowser(t, g)
	if r := b.get("/?patch=" + url.QueryEscape(fmt.Sprintf(`{"user":%q}`, user))); r.Status != http.StatusOK {
		t.Fatalf("login %s: %d", user, r.Status)
	}
	r := b.get("/")
	if r.Meta.New || r.Session["user"] != user {
		t.Fatalf("login %s did not stick: %+v", user, r)
	}
	return b, r.Meta.ID
}

// startBrowser is another client of g's Caddy with a cookie jar of its own.
func startBrowser(t *testing.T, g *gateway) *gateway {
	t.Helper()
	b := *g
	b.jar, _ = cookiejar.New(nil)
	c := *g.client
	c.Jar = b.jar
	b.client = &c
	return &b
}

func loggedIn(t *testing.T, b *gateway) bool {
	t.Helper()
	return !b.get("/").Meta.New
}

// adminWalk lists and revokes sessions through the admin API of a Caddy
// running body, whose store is named storeName and indexes the subject
// "user".
func adminWalk(t *testing.T, body, storeName string) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, body, up)
	a1, h1 := loginAs(t, g, "alice")
	a2, h2 := loginAs(t, g, "alice")
	bob, _ := loginAs(t, g, "bob")
	slash, _ := loginAs(t, g, "team/x")

	status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/alice")
	var list []adminSummary
	if status != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("list: %d %s", status, body)
	}
	ids := []string{}
	for _, s := range list {
		ids = append(ids, s.ID)
		now := time.Now().Unix()
		if s.Created > now || s.Updated < s.Created || s.Expires <= now {
			t.Errorf("implausible times %+v", s)
		}
	}
	if want := []string{h1, h2}; !sameSet(ids, want) {
		t.Fatalf("alice's sessions %v, want %v", ids, want)
	}
	// "user" quoted: the data key, not the listing's user_agent field.
	for _, leak := range []string{"token", "data", `"user"`, "alice", "key"} {
		if strings.Contains(body, leak) {
			t.Fatalf("the listing holds %q: %s", leak, body)
		}
	}
	if status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/team%2Fx"); status != 200 || strings.Count(body, `"id"`) != 1 {
		t.Fatalf("subject with a slash: %d %s", status, body)
	}
	if status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/alice?store="+storeName); status != 200 || strings.Count(body, `"id"`) != 2 {
		t.Fatalf("?store=%s: %d %s", storeName, status, body)
	}
	if status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/nobody"); status != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("unknown subject: %d %s, want []", status, body)
	}

	// One session by its handle: only that browser is logged out.
	if status, body := adminDo(t, admin, http.MethodDelete, "/session/sessions/"+h1); status != 200 || strings.TrimSpace(body) != `{"revoked":1}` {
		t.Fatalf("revoke %s: %d %s", h1, status, body)
	}
	if loggedIn(t, a1) || !loggedIn(t, a2) {
		t.Fatal("revoking one handle must end that session only")
	}
	if status, body := adminDo(t, admin, http.MethodDelete, "/session/sessions/"+h1); status != 200 || strings.TrimSpace(body) != `{"revoked":0}` {
		t.Fatalf("revoke %s again: %d %s", h1, status, body)
	}

	// Every session of a subject: alice is out everywhere, bob is not.
	a3, _ := loginAs(t, g, "alice")
	if status, body := adminDo(t, admin, http.MethodDelete, "/session/subjects/alice"); status != 200 || strings.TrimSpace(body) != `{"revoked":2}` {
		t.Fatalf("revoke alice: %d %s", status, body)
	}
	if loggedIn(t, a2) || loggedIn(t, a3) || !loggedIn(t, bob) || !loggedIn(t, slash) {
		t.Fatal("revoking a subject must end its sessions and no others")
	}
	if status, body := adminDo(t, admin, http.MethodGet, "/session/subjects/alice"); status != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("alice after revoke: %d %s", status, body)
	}
}

// commandWalk runs `caddy session list` and `revoke` against a Caddy
// running body, whose store indexes the subject "user".
func commandWalk(t *testing.T, body string) {
	up := upstream(t)
	options, admin := opsOptions(t)
	g := startGateway(t, options, body, up)
	a1, h1 := loginAs(t, g, "alice")
	a2, h2 := loginAs(t, g, "alice")

	out, err := runSessionCommand(t, "list", "--subject", "alice", "--address", admin)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(out, h1) || !strings.Contains(out, h2) {
		t.Fatalf("list:\n%s", out)
	}
	out, err = runSessionCommand(t, "list", "--subject", "alice", "--address", admin, "--json")
	var list []adminSummary
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
		t.Fatalf("list --json: %v %s", err, out)
	}

	out, err = runSessionCommand(t, "revoke", "--id", h1, "--address", admin)
	if err != nil || out != "revoked 1 session(s)\n" {
		t.Fatalf("revoke --id: %v %q", err, out)
	}
	if loggedIn(t, a1) || !loggedIn(t, a2) {
		t.Fatal("revoke --id must end that session only")
	}
	out, err = runSessionCommand(t, "revoke", "--subject", "alice", "--address", admin)
	if err != nil || out != "revoked 1 session(s)\n" || loggedIn(t, a2) {
		t.Fatalf("revoke --subject: %v %q", err, out)
	}
	out, err = runSessionCommand(t, "list", "--subject", "alice", "--address", admin)
	if err != nil || out != "no live sessions\n" {
		t.Fatalf("list after revoke: %v %q", err, out)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
