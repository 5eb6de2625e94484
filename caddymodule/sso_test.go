package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/internal/idptest"
	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store"
)

// ssoStore is one store the single sign-on walks run on: open returns
// the session body with extra lines, and a count of a subject's live
// sessions read from the store itself, not through the gateway.
type ssoStore struct {
	name string
	open func(t *testing.T, extra string) (body string, count func(t *testing.T, subject string) int)
}

func ssoStores() []ssoStore {
	return []ssoStore{
		{"memory", func(t *testing.T, extra string) (string, func(*testing.T, string) int) {
			body := sessionBody("\t\tstore memory " + uniqueName(t) + "\n\t\tsubject user\n" + extra)
			return body, func(t *testing.T, subject string) int {
				n := 0
				for _, ls := range storesInUse("") {
					found, err := ls.idx.FindBySubject(t.Context(), subject, time.Now())
					if err != nil {
						t.Fatal(err)
					}
					n += len(found)
				}
				return n
			}
		}},
		{"mongodb", func(t *testing.T, extra string) (string, func(*testing.T, string) int) {
			uri, db := mongotest.Database(t)
			body := mongoSessionBody(uri, db, "", "\t\tsubject user\n"+extra)
			return body, func(t *testing.T, subject string) int {
				n, err := mongotest.Client(t).Database(db).Collection("sessions").CountDocuments(t.Context(), bson.D{
					{Key: "sub", Value: subject}, {Key: "expires", Value: bson.D{{Key: "$gt", Value: time.Now()}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				return int(n)
			}
		}},
	}
}

// logOptions are globalOptions plus a JSON log of warnings and above in
// a file, so a test can read the lines the gateway wrote.
func logOptions(t *testing.T) (options, logFile string) {
	logFile = filepath.Join(t.TempDir(), "caddy.log")
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output file %s
		format json
		level INFO
	}
}
`, t.TempDir(), logFile), logFile
}

// logLines returns the log lines whose message contains msg.
func ssoLogLines(t *testing.T, file, msg string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range strings.SplitSeq(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && strings.Contains(fmt.Sprint(m["msg"]), msg) {
			out = append(out, m)
		}
	}
	return out
}

// login returns a new browser of g logged in as user with IdP session
// sid, sending userAgent.
func ssoLogin(t *testing.T, g *gateway, user, sid, userAgent string) *gateway {
	t.Helper()
	b := g.visitor()
	data := map[string]any{"user": user}
	if sid != "" {
		data["oidc"] = map[string]any{"sid": sid}
	}
	patch, _ := json.Marshal(data)
	req, _ := http.NewRequest(http.MethodGet, b.base+"/?control=regenerate&"+patchQuery(string(patch)), nil)
	req.Header.Set("User-Agent", userAgent)
	if r := b.do(req); r.Status != http.StatusOK || b.sessionCookie("session") == "" {
		t.Fatalf("login of %s: status %d", user, r.Status)
	}
	return b
}

// postLogout sends a back-channel logout request with token.
func postLogout(t *testing.T, g *gateway, path, token string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.base+path, strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return g.do(req)
}

func backchannelBlock(idp *idptest.IdP) string {
	return fmt.Sprintf("\t\tbackchannel_logout /oidc/backchannel {\n\t\t\tissuer %s\n\t\t\taudience other-app %s\n\t\t\tsid_key oidc.sid\n\t\t}\n",
		idp.Issuer, idp.ClientID)
}

// TestBackchannelLogout walks OpenID Connect Back-Channel Logout through a
// real Caddy on both stores, with a real IdP (discovery and keys on
// loopback) signing real RSA and EC logout tokens.
func TestBackchannelLogout(t *testing.T) {
	for _, st := range ssoStores() {
		t.Run(st.name, func(t *testing.T) {
			idp := idptest.New(t, idptest.RS256, idptest.ES256)
			options, logFile := logOptions(t)
			body, count := st.open(t, backchannelBlock(idp))
			g := startGateway(t, options, body, upstream(t))
			const path = "/oidc/backchannel"
			a := ssoLogin(t, g, "alice", "sid-a", "laptop")
			b := ssoLogin(t, g, "alice", "sid-b", "phone")
			bob := ssoLogin(t, g, "bob", "sid-bob", "desktop")
			first := idp.LogoutToken(t, idptest.RS256, "sid-a", "alice")
			ok0, refused0 := counterValue(t, ssoMetric(bcEnded)), counterValue(t, ssoMetric(bcRefused))

			g.step(t, "a token with sid ends that login only, answered by the gateway", func(t *testing.T, g *gateway) {
				calls := upstreamCalls.Load()
				r := postLogout(t, g, path, first)
				if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("status %d, Cache-Control %q, body %q", r.Status, r.Header.Get("Cache-Control"), r.Body)
				}
				if upstreamCalls.Load() != calls {
					t.Fatal("the back-channel request reached the upstream")
				}
				wantUser(t, a, "the IdP session that logged out", "")
				wantUser(t, b, "alice's other IdP session", "alice")
				wantUser(t, bob, "bob", "bob")
				if n := count(t, "alice"); n != 1 {
					t.Fatalf("the store holds %d sessions of alice, want 1", n)
				}
			})

			g.step(t, "a replay is refused: 400 invalid_request, one warn line, no token in it", func(t *testing.T, g *gateway) {
				r := postLogout(t, g, path, first)
				if r.Status != http.StatusBadRequest || r.Body != `{"error":"invalid_request"}`+"\n" || r.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("status %d, body %q", r.Status, r.Body)
				}
				lines := ssoLogLines(t, logFile, "back-channel logout refused")
				if len(lines) != 1 || lines[0]["reason"] != "replay" || lines[0]["level"] != "warn" {
					t.Fatalf("log lines %v, want one warn line with reason replay", lines)
				}
				raw, _ := os.ReadFile(logFile)
				if strings.Contains(string(raw), first) || strings.Contains(string(raw), strings.Split(first, ".")[1]) {
					t.Fatal("the log holds the token")
				}
			})

			g.step(t, "no matching session is still 200", func(t *testing.T, g *gateway) {
				if r := postLogout(t, g, path, idp.LogoutToken(t, idptest.ES256, "sid-nobody", "")); r.Status != http.StatusOK {
					t.Fatalf("status %d", r.Status)
				}
			})

			g.step(t, "a token with sub only ends every session of the user", func(t *testing.T, g *gateway) {
				c := ssoLogin(t, g, "alice", "", "tablet")
				if r := postLogout(t, g, path, idp.LogoutToken(t, idptest.ES256, "", "alice")); r.Status != http.StatusOK {
					t.Fatalf("status %d", r.Status)
				}
				wantUser(t, b, "alice's phone", "")
				wantUser(t, c, "alice's tablet", "")
				wantUser(t, bob, "bob", "bob")
				if n := count(t, "alice"); n != 0 {
					t.Fatalf("the store holds %d sessions of alice, want 0", n)
				}
			})

			g.step(t, "the cross-origin check does not apply, even with a cookie", func(t *testing.T, g *gateway) {
				tok := idp.LogoutToken(t, idptest.RS256, "sid-bob", "")
				r := postLogout(t, bob, path, tok, "Origin", "https://idp.example", "Sec-Fetch-Site", "cross-site")
				if r.Status != http.StatusOK {
					t.Fatalf("status %d", r.Status)
				}
				wantUser(t, bob, "bob", "")
			})

			g.step(t, "refused tokens and requests", func(t *testing.T, g *gateway) {
				k := idp.Key(t, idptest.RS256)
				for name, tok := range map[string]string{
					"wrong audience": k.Sign(t, nil, func() map[string]any { c := idp.Claims("s", ""); c["aud"] = "x"; return c }()),
					"not a JWT":      "garbage",
					"empty":          "",
				} {
					if r := postLogout(t, g, path, tok); r.Status != http.StatusBadRequest || r.Body != `{"error":"invalid_request"}`+"\n" {
						t.Errorf("%s: status %d, body %q", name, r.Status, r.Body)
					}
				}
				if r := g.get(path); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" {
					t.Errorf("GET: status %d, Allow %q", r.Status, r.Header.Get("Allow"))
				}
			})

			g.step(t, "key rotation at the IdP", func(t *testing.T, g *gateway) {
				d := ssoLogin(t, g, "carol", "sid-d", "laptop")
				idp.Rotate(t, idptest.RS256)
				skew(t, 61*time.Second) // the last fetch of the key set is over a minute old
				if r := postLogout(t, g, path, idp.LogoutToken(t, idptest.RS256, "sid-d", "")); r.Status != http.StatusOK {
					t.Fatalf("a token signed with the new key: status %d", r.Status)
				}
				wantUser(t, d, "carol", "")
			})

			g.step(t, "the metric counts logouts by outcome", func(t *testing.T, g *gateway) {
				// ok: sid-a, sid-nobody, sub alice, sid-bob, sid-d; refused:
				// the replay and three bad tokens.
				if ok, refused := counterValue(t, ssoMetric(bcEnded))-ok0, counterValue(t, ssoMetric(bcRefused))-refused0; ok != 5 || refused != 4 {
					t.Fatalf("caddy_session_backchannel_logouts_total moved by ok %v, refused %v; want 5 and 4", ok, refused)
				}
			})
		})
	}
}

// ssoLoginData returns a new browser of g logged in with session data
// data (a JSON object).
func ssoLoginData(t *testing.T, g *gateway, data string) *gateway {
	t.Helper()
	b := g.visitor()
	if r := b.get("/?control=regenerate&" + patchQuery(data)); r.Status != http.StatusOK || b.sessionCookie("session") == "" {
		t.Fatalf("login with %s: status %d", data, r.Status)
	}
	return b
}

// TestBackchannelLogoutSubKey: with sub_key naming a path other than the
// subject's (oidc.sub, beside sid_key oidc.sid), a logout token carrying
// only sub ends exactly the sessions whose value at sub_key equals it:
// not a session whose subject or sid has that value, not one whose
// value there moved on since login. Both stores, checked in the store.
func TestBackchannelLogoutSubKey(t *testing.T) {
	for _, st := range ssoStores() {
		t.Run(st.name, func(t *testing.T) {
			idp := idptest.New(t, idptest.RS256)
			block := fmt.Sprintf("\t\tbackchannel_logout /oidc/backchannel {\n\t\t\tissuer %s\n\t\t\taudience %s\n"+
				"\t\t\tsid_key oidc.sid\n\t\t\tsub_key oidc.sub\n\t\t}\n", idp.Issuer, idp.ClientID)
			body, count := st.open(t, block)
			g := startGateway(t, globalOptions(t), body, upstream(t))
			const path = "/oidc/backchannel"
			a := ssoLoginData(t, g, `{"user":"alice","oidc":{"sid":"s-a","sub":"idp-1"}}`)
			b := ssoLoginData(t, g, `{"user":"alice","oidc":{"sub":"idp-1"}}`)
			asSubject := ssoLoginData(t, g, `{"user":"idp-1","oidc":{"sub":"idp-2"}}`)
			asSid := ssoLoginData(t, g, `{"user":"bob","oidc":{"sid":"idp-1","sub":"idp-3"}}`)
			moved := ssoLoginData(t, g, `{"user":"erin","oidc":{"sub":"idp-1"}}`)
			if r := moved.get("/?" + patchQuery(`{"oidc":{"sub":"idp-4"}}`)); r.Status != http.StatusOK {
				t.Fatalf("moving erin's IdP subject: status %d", r.Status)
			}

			if r := postLogout(t, g, path, idp.LogoutToken(t, idptest.RS256, "", "idp-1")); r.Status != http.StatusOK {
				t.Fatalf("status %d, body %q", r.Status, r.Body)
			}
			wantUser(t, a, "alice's session with sid and sub", "")
			wantUser(t, b, "alice's session with sub only", "")
			wantUser(t, asSubject, "the session whose subject is the token's sub", "idp-1")
			wantUser(t, asSid, "the session whose sid is the token's sub", "bob")
			wantUser(t, moved, "the session whose sub moved on", "erin")
			for subject, want := range map[string]int{"alice": 0, "idp-1": 1, "bob": 1, "erin": 1} {
				if n := count(t, subject); n != want {
					t.Errorf("the store holds %d sessions of %s, want %d", n, subject, want)
				}
			}

			// The sid still ends by sid, the new sub at its new value.
			if r := postLogout(t, g, path, idp.LogoutToken(t, idptest.RS256, "idp-1", "ignored")); r.Status != http.StatusOK {
				t.Fatalf("by sid: status %d", r.Status)
			}
			wantUser(t, asSid, "bob, by sid", "")
			if r := postLogout(t, g, path, idp.LogoutToken(t, idptest.RS256, "", "idp-4")); r.Status != http.StatusOK {
				t.Fatalf("by the moved sub: status %d", r.Status)
			}
			wantUser(t, moved, "erin, by her new IdP subject", "")
			wantUser(t, asSubject, "the session whose subject is idp-1", "idp-1")
		})
	}
}

// TestBackchannelIdPUnreachable: when the IdP's keys cannot be fetched,
// the answer is 503 with Retry-After (the IdP retries), never 400 or 500.
func TestBackchannelIdPUnreachable(t *testing.T) {
	for _, st := range ssoStores() {
		t.Run(st.name, func(t *testing.T) {
			idp := idptest.New(t, idptest.ES256)
			tok := idp.LogoutToken(t, idptest.ES256, "sid-a", "")
			body, _ := st.open(t, backchannelBlock(idp))
			g := startGateway(t, globalOptions(t), body, upstream(t))
			a := ssoLogin(t, g, "alice", "sid-a", "laptop")
			idp.SetDown(true)
			r := postLogout(t, g, "/oidc/backchannel", tok)
			if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Fatalf("IdP down: status %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
			}
			wantUser(t, a, "alice", "alice")
			idp.SetDown(false)
			if r := postLogout(t, g, "/oidc/backchannel", tok); r.Status != http.StatusOK {
				t.Fatalf("IdP back: status %d (the refused attempt must not use up the jti)", r.Status)
			}
			wantUser(t, a, "alice", "")
		})
	}
}

// devicesList reads the devices listing as browser b.
func devicesList(t *testing.T, b *gateway) ([]deviceJSON, reply) {
	t.Helper()
	r := b.get("/account/devices")
	var list []deviceJSON
	if r.Status == http.StatusOK {
		if err := json.Unmarshal([]byte(r.Body), &list); err != nil {
			t.Fatalf("listing %q: %v", r.Body, err)
		}
	}
	return list, r
}

func deleteDevice(t *testing.T, b *gateway, id string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, b.base+"/account/devices/"+id, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

// TestDevices walks the devices endpoint through a real Caddy on both
// stores: the listing, ending a session of one's own, 404 for anyone
// else's, 401 without a subject, the cross-origin check.
func TestDevices(t *testing.T) {
	for _, st := range ssoStores() {
		t.Run(st.name, func(t *testing.T) {
			body, count := st.open(t, "\t\tdevices /account/devices\n")
			g := startGateway(t, globalOptions(t), body, upstream(t))
			long := strings.Repeat("x", 300)
			a := ssoLogin(t, g, "alice", "", "Laptop/1.0")
			time.Sleep(2 * time.Millisecond) // MongoDB keeps milliseconds: b is created strictly later
			b := ssoLogin(t, g, "alice", "", long)
			bob := ssoLogin(t, g, "bob", "", "Bob/1.0")

			var list []deviceJSON
			g.step(t, "GET lists the user's sessions, newest first", func(t *testing.T, g *gateway) {
				var r reply
				list, r = devicesList(t, a)
				if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("status %d, Cache-Control %q", r.Status, r.Header.Get("Cache-Control"))
				}
				if len(list) != 2 {
					t.Fatalf("listing %+v, want alice's two sessions", list)
				}
				if list[0].UserAgent != long[:store.MaxUserAgentLen] || list[0].Current || list[1].UserAgent != "Laptop/1.0" || !list[1].Current {
					t.Fatalf("listing %+v: want the phone (agent cut to 256 bytes) first, then the current laptop", list)
				}
				for _, d := range list {
					if d.IP != "127.0.0.0/24" || d.LastSeen < d.Created || d.Expires <= d.LastSeen || len(d.ID) != 12 {
						t.Fatalf("device %+v", d)
					}
				}
				if r.Session != nil || strings.Contains(r.Body, `"session"`) {
					t.Fatal("the listing was answered by the upstream")
				}
			})

			g.step(t, "DELETE of another user's session, or of nothing, is 404", func(t *testing.T, g *gateway) {
				bobs, _ := devicesList(t, bob)
				for _, id := range []string{bobs[0].ID, "000000000000", "not-an-id"} {
					if r := deleteDevice(t, a, id); r.Status != http.StatusNotFound {
						t.Fatalf("DELETE %s: status %d", id, r.Status)
					}
				}
				wantUser(t, bob, "bob", "bob")
			})

			g.step(t, "a cross-origin DELETE is refused", func(t *testing.T, g *gateway) {
				r := deleteDevice(t, a, list[0].ID, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
				if r.Status != http.StatusForbidden {
					t.Fatalf("status %d", r.Status)
				}
				wantUser(t, b, "the phone", "alice")
			})

			g.step(t, "DELETE ends one of the user's sessions", func(t *testing.T, g *gateway) {
				revokes := counterValue(t, ssoCollectorsDevice())
				defer func() {
					if got := counterValue(t, ssoCollectorsDevice()) - revokes; got != 1 {
						t.Errorf("caddy_session_device_revokes_total moved by %v, want 1", got)
					}
				}()
				if r := deleteDevice(t, a, list[0].ID); r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("status %d", r.Status)
				}
				wantUser(t, b, "the phone", "")
				wantUser(t, a, "the laptop", "alice")
				if n := count(t, "alice"); n != 1 {
					t.Fatalf("the store holds %d sessions of alice", n)
				}
				if l, _ := devicesList(t, a); len(l) != 1 || !l[0].Current {
					t.Fatalf("listing after: %+v", l)
				}
			})

			g.step(t, "without a session with a subject: 401", func(t *testing.T, g *gateway) {
				anon := g.visitor()
				if _, r := devicesList(t, anon); r.Status != http.StatusUnauthorized {
					t.Fatalf("no session: status %d", r.Status)
				}
				anon.get("/?" + patchQuery(`{"cart":1}`))
				if _, r := devicesList(t, anon); r.Status != http.StatusUnauthorized {
					t.Fatalf("a session without subject: status %d", r.Status)
				}
				if r := deleteDevice(t, anon, list[1].ID); r.Status != http.StatusUnauthorized {
					t.Fatalf("DELETE without subject: status %d", r.Status)
				}
				wantUser(t, a, "the laptop", "alice")
			})

			g.step(t, "the admin API lists the same fields", func(t *testing.T, g *gateway) {
				got, err := listSubject(context.Background(), storesInUse(""), "alice")
				if err != nil || len(got) != 1 || got[0].UserAgent != "Laptop/1.0" || got[0].IP != "127.0.0.0/24" || got[0].LastSeen == 0 {
					t.Fatalf("admin listing %+v, %v", got, err)
				}
			})

			g.step(t, "ending the current session expires its cookie", func(t *testing.T, g *gateway) {
				l, _ := devicesList(t, a)
				r := deleteDevice(t, a, l[0].ID)
				if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
					t.Fatalf("status %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
				}
				wantUser(t, a, "the laptop", "")
			})
		})
	}
}

// TestMaxSessionsPerSubject walks the per-user limit through a real Caddy
// on both stores: sequential logins end the least recently seen, a first
// write of the subject counts, and 10 concurrent logins leave at most n
// and at least one session in the store.
func TestMaxSessionsPerSubject(t *testing.T) {
	for _, st := range ssoStores() {
		t.Run(st.name, func(t *testing.T) {
			options, logFile := logOptions(t)
			body, count := st.open(t, "\t\tmax_sessions_per_subject 2\n")
			g := startGateway(t, options, body, upstream(t))
			before := counterValue(t, ssoCollectorsLimit())
			outer := t // the clock moves for the rest of the walk, not one step

			g.step(t, "the third login ends the least recently seen", func(t *testing.T, g *gateway) {
				a := ssoLogin(t, g, "alice", "", "a")
				b := ssoLogin(t, g, "alice", "", "b")
				// a is seen after b logged in: b is now the least recently seen.
				skew(outer, 2*time.Minute)
				wantUser(t, a, "a", "alice")
				c := ssoLogin(t, g, "alice", "", "c")
				wantUser(t, c, "the new login", "alice")
				wantUser(t, a, "a, seen recently", "alice")
				wantUser(t, b, "b, least recently seen", "")
				if n := count(t, "alice"); n != 2 {
					t.Fatalf("the store holds %d sessions of alice, want 2", n)
				}
				lines := ssoLogLines(t, logFile, "max_sessions_per_subject")
				if len(lines) != 1 || lines[0]["ended_by_limit"] != float64(1) {
					t.Fatalf("log lines %v, want one saying ended_by_limit 1", lines)
				}
				if got := counterValue(t, ssoCollectorsLimit()) - before; got != 1 {
					t.Fatalf("caddy_session_limit_ended_total moved by %v, want 1", got)
				}
			})

			g.step(t, "a first write of the subject counts", func(t *testing.T, g *gateway) {
				anon := g.visitor()
				anon.get("/?" + patchQuery(`{"cart":1}`))
				anon.get("/?" + patchQuery(`{"user":"alice"}`))
				wantUser(t, anon, "the session that became alice's", "alice")
				if n := count(t, "alice"); n != 2 {
					t.Fatalf("the store holds %d sessions of alice, want 2", n)
				}
			})

			g.step(t, "a login from an anonymous session (regenerate) counts", func(t *testing.T, g *gateway) {
				anon := g.visitor()
				anon.get("/?" + patchQuery(`{"cart":2}`))
				anon.get("/?control=regenerate&" + patchQuery(`{"user":"alice"}`))
				wantUser(t, anon, "the session that logged in", "alice")
				if n := count(t, "alice"); n != 2 {
					t.Fatalf("the store holds %d sessions of alice, want 2", n)
				}
			})

			g.step(t, "10 concurrent logins leave between 1 and n", func(t *testing.T, g *gateway) {
				var wg sync.WaitGroup
				for range 10 {
					b := g.visitor()
					wg.Go(func() {
						req, _ := http.NewRequest(http.MethodGet, b.base+"/?control=regenerate&"+patchQuery(`{"user":"dave"}`), nil)
						if r := b.do(req); r.Status != http.StatusOK {
							t.Errorf("login: status %d", r.Status)
						}
					})
				}
				wg.Wait()
				if n := count(t, "dave"); n < 1 || n > 2 {
					t.Fatalf("the store holds %d sessions of dave after 10 concurrent logins, want 1 or 2", n)
				}
			})
		})
	}
}

func ssoCollectorsLimit() prometheus.Counter {
	ssoCollectors.once.Do(initSSOCollectors)
	return ssoCollectors.limitEnded
}

// TestSSOConfigRefused: the single sign-on options are checked the same
// for a Caddyfile and a JSON config.
func TestSSOConfigRefused(t *testing.T) {
	bc := func(lines string) string { return "backchannel_logout /bc {\n\t\t\t" + lines + "\n\t\t}" }
	for _, tc := range []struct {
		name, caddyfil, json, want string
	}{
		{"devices without subject", `devices /d`, `"devices":"/d"`, "devices needs the subject option"},
		{"devices not a path", "subject u\n\t\tdevices d", `"subject":"u","devices":"d"`, `devices "d": want a path`},
		{"devices ending in /", "subject u\n\t\tdevices /d/", `"subject":"u","devices":"/d/"`, `devices "/d/": want a path`},
		{"limit without subject", `max_sessions_per_subject 2`, `"max_sessions_per_subject":2`, "max_sessions_per_subject needs the subject option"},
		{"negative limit", "subject u\n\t\tmax_sessions_per_subject -1", `"subject":"u","max_sessions_per_subject":-1`, "must not be negative"},
		{"limit is fine", "subject u\n\t\tmax_sessions_per_subject 1", `"subject":"u","max_sessions_per_subject":1`, ""},
		{"backchannel without issuer", "subject u\n\t\t" + bc("audience a"), `"subject":"u","backchannel_logout":{"path":"/bc","audiences":["a"]}`, "backchannel_logout: issuer"},
		{"backchannel over plain http", "subject u\n\t\t" + bc("issuer http://idp.example\n\t\t\taudience a"), `"subject":"u","backchannel_logout":{"path":"/bc","issuer":"http://idp.example","audiences":["a"]}`, "plain http is allowed only to a loopback address"},
		{"backchannel without audience", "subject u\n\t\t" + bc("issuer https://idp.example"), `"subject":"u","backchannel_logout":{"path":"/bc","issuer":"https://idp.example"}`, "at least one audience"},
		{"backchannel with nothing to match", bc("issuer https://idp.example\n\t\t\taudience a"), `"backchannel_logout":{"path":"/bc","issuer":"https://idp.example","audiences":["a"]}`, "needs sid_key, sub_key or the subject option"},
		{"sub_key other than the subject", "subject u\n\t\t" + bc("issuer https://idp.example\n\t\t\taudience a\n\t\t\tsub_key v"), `"subject":"u","backchannel_logout":{"path":"/bc","issuer":"https://idp.example","audiences":["a"],"sub_key":"v"}`, ""},
		{"sub_key alone", bc("issuer https://idp.example\n\t\t\taudience a\n\t\t\tsub_key oidc.sub"), `"backchannel_logout":{"path":"/bc","issuer":"https://idp.example","audiences":["a"],"sub_key":"oidc.sub"}`, ""},
		{"bad sub_key", bc("issuer https://idp.example\n\t\t\taudience a\n\t\t\tsub_key .x"), `"backchannel_logout":{"path":"/bc","issuer":"https://idp.example","audiences":["a"],"sub_key":".x"}`, `sub_key ".x" is not a dotted key path`},
		{"bad sid_key", bc("issuer https://idp.example\n\t\t\taudience a\n\t\t\tsid_key a..b"), `"backchannel_logout":{"path":"/bc","issuer":"https://idp.example","audiences":["a"],"sid_key":"a..b"}`, `sid_key "a..b" is not a dotted key path`},
		{"backchannel is fine", bc("issuer https://idp.example\n\t\t\taudience a b\n\t\t\tsid_key oidc.sid"), `"backchannel_logout":{"path":"/bc","issuer":"https://idp.example","audiences":["a","b"],"sid_key":"oidc.sid"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { checkSameConfigError(t, tc.json, tc.caddyfil, tc.want) })
	}
}

func ssoMetric(o bcOutcome) prometheus.Counter {
	ssoCollectors.once.Do(initSSOCollectors)
	return ssoCollectors.bcOutcomes[o]
}

func ssoCollectorsDevice() prometheus.Counter {
	ssoCollectors.once.Do(initSSOCollectors)
	return ssoCollectors.deviceEnded
}
