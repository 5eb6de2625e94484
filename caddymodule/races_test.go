package caddymodule

// Races around login, logout and concurrent writes (hardening issue 7,
// section 2), through a real Caddy with the memory and MongoDB stores.
// Requests meet inside the upstream at gates and barriers, never by
// sleeping.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// raceStores are the stores the race tests run against: a session body
// for each, made on demand (MongoDB needs a database per test).
var raceStores = []struct {
	name string
	body func(t *testing.T) string
}{
	{"memory", func(t *testing.T) string {
		return sessionBody("\t\tstore memory " + uniqueName(t) + "\n")
	}},
	{"mongodb", func(t *testing.T) string {
		uri, db := mongotest.Database(t)
		return mongoSessionBody(uri, db, "", "")
	}},
}

// onEachStore runs test once per store of raceStores, as a subtest, with
// a gateway in front of its own upstream.
func onEachStore(t *testing.T, test func(t *testing.T, g *gateway)) {
	for _, st := range raceStores {
		t.Run(st.name, func(t *testing.T) {
			test(t, startGateway(t, globalOptions(t), st.body(t), upstream(t)))
		})
	}
}

// goGet sends GET path from g's browser in the background; the reply
// comes on the channel.
func (g *gateway) goGet(path string) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
		ch <- g.do(req)
	}()
	return ch
}

// setCookies are the Set-Cookie values of r for the session cookie.
func sessionSetCookies(r reply) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "session" {
			out = append(out, c)
		}
	}
	return out
}

func TestRaceLogoutSticks(t *testing.T) {
	onEachStore(t, func(t *testing.T, g *gateway) {
		g.get("/?" + patchQuery(`{"user":"alice"}`))
		old := g.sessionCookie("session")

		// A: a login (regenerate) whose upstream answers only after
		// B, a logout, has ended the session.
		gate := uniqueName(t)
		a := g.goGet("/?wait=" + gate + "&control=regenerate&" + patchQuery(`{"step":"login"}`))
		<-gateFor(gate).arrived
		b := g.get("/?control=destroy")
		if sc := b.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
			t.Fatalf("logout did not expire the cookie: %q", sc)
		}
		close(gateFor(gate).open)
		ra := <-a
		if ra.Status != 200 {
			t.Fatalf("the late regenerate: status %d", ra.Status)
		}
		for _, c := range sessionSetCookies(ra) {
			if c.MaxAge >= 0 && c.Value != "" {
				t.Errorf("the late regenerate set a new session cookie")
				v := g.visitor()
				v.setCookie("session", c.Value)
				if r := v.get("/"); r.RawSession != "{}" {
					t.Fatalf("logout undone: the regenerate's cookie reads %s", r.RawSession)
				}
			}
		}
		for _, tok := range []string{old, g.sessionCookie("session")} {
			if tok == "" {
				continue
			}
			v := g.visitor()
			v.setCookie("session", tok)
			if r := v.get("/"); r.RawSession != "{}" || !r.Meta.New {
				t.Fatalf("logout undone: a cookie reads %s", r.RawSession)
			}
		}
	})
}

func TestRaceSlowRequestDoesNotUndoLogin(t *testing.T) {
	onEachStore(t, func(t *testing.T, g *gateway) {
		g.get("/?" + patchQuery(`{"n":1}`))
		before := g.sessionCookie("session")

		// A slow request loads the session, then a login regenerates
		// it, then the slow request writes.
		gate := uniqueName(t)
		slow := g.goGet("/?wait=" + gate + "&" + patchQuery(`{"slow":1}`))
		<-gateFor(gate).arrived
		login := g.get("/?control=regenerate&" + patchQuery(`{"user":"bob"}`))
		after := g.sessionCookie("session")
		if login.Status != 200 || after == "" || after == before {
			t.Fatalf("login: status %d, new cookie %v", login.Status, after != before)
		}
		close(gateFor(gate).open)
		rs := <-slow
		if rs.Status != 200 {
			t.Fatalf("slow request: status %d", rs.Status)
		}
		if sc := rs.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Fatalf("the slow request sent a cookie, which would undo the login: %q", sc)
		}
		if g.sessionCookie("session") != after {
			t.Fatal("the login's cookie was replaced")
		}
		r := g.get("/")
		if r.RawSession != `{"n":1,"user":"bob"}` || r.Meta.New {
			t.Fatalf("after login and slow write: %s (new %v); want the login's data without the slow change", r.RawSession, r.Meta.New)
		}
		// The new session keeps working.
		g.get("/?" + patchQuery(`{"n":2}`))
		if r := g.get("/"); r.RawSession != `{"n":2,"user":"bob"}` {
			t.Fatalf("write after login: %s", r.RawSession)
		}
	})
}

func TestRaceConcurrentNestedPatchesAllSurvive(t *testing.T) {
	onEachStore(t, func(t *testing.T, g *gateway) {
		g.get("/?" + patchQuery(`{"a":{"x":0,"d":{"e":{"z":0}}}}`))
		want := map[string]any{"x": float64(0), "d": map[string]any{"e": map[string]any{"z": float64(0)}}}
		for round, pair := range [][2]string{
			{`{"a":{"b":1}}`, `{"a":{"c":1}}`},
			{`{"a":{"d":{"f":1}}}`, `{"a":{"d":{"g":1}}}`},
			{`{"a":{"d":{"e":{"h":1}}}}`, `{"a":{"d":{"e":{"i":1}}}}`},
			{`{"a":{"b":null}}`, `{"a":{"d":{"e":{"z":null}}}}`},
		} {
			meet := uniqueName(t)
			var wg sync.WaitGroup
			for _, p := range pair {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, g.base+"/?block="+meet+"&"+patchQuery(p), nil)
					if r := g.do(req); r.Status != 200 {
						t.Errorf("round %d %s: status %d", round, p, r.Status)
					}
				})
			}
			wg.Wait()
			a := want
			switch round {
			case 0:
				a["b"], a["c"] = float64(1), float64(1)
			case 1:
				d := a["d"].(map[string]any)
				d["f"], d["g"] = float64(1), float64(1)
			case 2:
				e := a["d"].(map[string]any)["e"].(map[string]any)
				e["h"], e["i"] = float64(1), float64(1)
			case 3:
				delete(a, "b")
				delete(a["d"].(map[string]any)["e"].(map[string]any), "z")
			}
			r := g.get("/")
			if got, exp := fmt.Sprint(r.Session), fmt.Sprint(map[string]any{"a": want}); got != exp {
				t.Fatalf("round %d: a concurrent patch was lost:\n got %s\nwant %s", round, got, exp)
			}
		}
	})
}

// TestRaceCASCostMemory counts the store calls of each kind of request
// with no conflict: one read, and one write when something changes.
func TestRaceCASCostMemory(t *testing.T) {
	up := upstream(t)
	g := startGateway(t, globalOptions(t), "\tsession {\n\t\tstore flaky\n\t\tsecret "+testSecret+"\n\t}\n", up)
	t.Cleanup(func() {
		flakyOps.Lock()
		flakyOps.on, flakyOps.ops = false, nil
		flakyOps.Unlock()
	})
	for _, step := range []struct {
		name, query string
		want        []string
	}{
		{"create", patchQuery(`{"a":{"b":{"c":1}}}`), []string{"create"}},
		{"read", "", []string{"find"}},
		{"patch", patchQuery(`{"n":1}`), []string{"find", "update"}},
		{"deep patch", patchQuery(`{"a":{"b":{"d":2}}}`), []string{"find", "update"}},
		{"update", "update=" + url.QueryEscape(`{"a":{"b":{"c":3}}}`), []string{"find", "update"}},
		{"unchanged patch", patchQuery(`{"a":{"b":{"c":3}}}`), []string{"find"}},
		{"regenerate", "control=regenerate", []string{"find", "create", "rotate"}},
		{"destroy", "control=destroy", []string{"find", "rotate"}},
	} {
		takeFlakyOps()
		if r := g.get("/?" + step.query); r.Status != 200 {
			t.Fatalf("%s: status %d", step.name, r.Status)
		}
		if got := takeFlakyOps(); !slices.Equal(got, step.want) {
			t.Errorf("%s: store calls %q, want %q", step.name, got, step.want)
		}
	}
}

// TestRaceCASCostMongoDB counts MongoDB commands of changing requests
// under compare-and-set, nested patches included: find and update.
func TestRaceCASCostMongoDB(t *testing.T) {
	_, db := mongotest.Database(t)
	up := upstream(t)
	counter, uri := countCommands(t, db)
	g := startGateway(t, globalOptions(t), mongoSessionBody(uri, db, "", ""), up)
	for _, step := range []struct {
		name, query string
		want        []string
	}{
		{"create", patchQuery(`{"a":{"b":{"c":1}}}`), []string{"insert"}},
		{"deep patch", patchQuery(`{"a":{"b":{"d":2}}}`), []string{"find", "update"}},
		{"top-level patch", patchQuery(`{"n":1}`), []string{"find", "update"}},
		{"update", "update=" + url.QueryEscape(`{"a":{"b":{"c":3}}}`), []string{"find", "update"}},
	} {
		counter.take()
		if r := g.get("/?" + step.query); r.Status != 200 {
			t.Fatalf("%s: status %d", step.name, r.Status)
		}
		if got := counter.take(); !slices.Equal(got, step.want) {
			t.Errorf("%s: commands %q, want %q", step.name, got, step.want)
		}
	}
	if r := g.get("/"); r.RawSession != `{"a":{"b":{"c":3}}}` {
		t.Fatalf("data %s", r.RawSession)
	}
}

// TestRaceLateRequestsAfterLogin: requests that loaded the session before
// a login regenerated it, and answer after, send no cookie (which would
// replace or expire the login's) and leave the new session alone.
func TestRaceLateRequestsAfterLogin(t *testing.T) {
	for _, st := range raceStores {
		for _, late := range []struct{ name, query, extra string }{
			{"read-only request with a due touch and a capped cookie", "", "\t\tcookie_max_age 10m\n"},
			{"unchanged write with a capped cookie", patchQuery(`{"n":1}`), "\t\tcookie_max_age 10m\n"},
			{"write", patchQuery(`{"late":1}`), ""},
			{"logout", "control=destroy", ""},
			{"update to null", "update=null", ""},
		} {
			t.Run(st.name+"/"+late.name, func(t *testing.T) {
				up := upstream(t)
				body := st.body(t)
				if late.extra != "" {
					body = strings.Replace(body, "\t\tsecret ", late.extra+"\t\tsecret ", 1)
				}
				g := startGateway(t, globalOptions(t), body, up)
				g.get("/?" + patchQuery(`{"n":1}`))
				skew(t, 2*time.Minute) // the touch is due

				gate := uniqueName(t)
				slow := g.goGet("/?wait=" + gate + "&" + late.query)
				<-gateFor(gate).arrived
				login := g.get("/?control=regenerate&" + patchQuery(`{"user":"bob"}`))
				after := g.sessionCookie("session")
				if login.Status != 200 || after == "" {
					t.Fatalf("login: status %d", login.Status)
				}
				close(gateFor(gate).open)
				rs := <-slow
				if sc := rs.Header.Values("Set-Cookie"); len(sc) != 0 {
					t.Errorf("the late request sent a cookie, undoing the login: %d Set-Cookie", len(sc))
				}
				g.setCookie("session", after)
				if r := g.get("/"); r.RawSession != `{"n":1,"user":"bob"}` {
					t.Fatalf("the login's session after the late request: %s", r.RawSession)
				}
			})
		}
	}
}

// TestRaceLoginMeetsAnotherWrite: a regenerate and another write (a
// patch, or a second regenerate: a double-clicked login) load the same
// session and answer together. Neither fails, the browser ends with one
// working session holding the login's data, and the old cookie is dead.
func TestRaceLoginMeetsAnotherWrite(t *testing.T) {
	onEachStore(t, func(t *testing.T, g *gateway) {
		for round, other := range []string{
			patchQuery(`{"cart":1}`),
			"control=regenerate&" + patchQuery(`{"user":"bob"}`),
			patchQuery(`{"cart":2}`),
			"control=regenerate&" + patchQuery(`{"user":"bob"}`),
		} {
			g.get("/?" + patchQuery(`{"n":1}`))
			old := g.sessionCookie("session")
			meet := uniqueName(t)
			var wg sync.WaitGroup
			replies := make([]reply, 2)
			for i, q := range []string{"control=regenerate&" + patchQuery(`{"user":"bob"}`), other} {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, g.base+"/?block="+meet+"&"+q, nil)
					replies[i] = g.do(req)
				})
			}
			wg.Wait()
			var live []string
			for i, r := range replies {
				if r.Status != 200 {
					t.Fatalf("round %d request %d: status %d", round, i, r.Status)
				}
				for _, c := range sessionSetCookies(r) {
					if c.MaxAge < 0 || c.Value == "" {
						t.Fatalf("round %d request %d expired the cookie", round, i)
					}
					live = append(live, c.Value)
				}
			}
			if len(live) != 1 {
				t.Fatalf("round %d: %d new session cookies, want exactly the login's", round, len(live))
			}
			g.setCookie("session", live[0])
			r := g.get("/")
			if r.Session["user"] != "bob" || r.Session["n"] != float64(1) || r.Meta.New {
				t.Fatalf("round %d: the login's session reads %s", round, r.RawSession)
			}
			v := g.visitor()
			v.setCookie("session", old)
			if r := v.get("/"); r.RawSession != "{}" {
				t.Fatalf("round %d: the old cookie still reads %s", round, r.RawSession)
			}
			g.get("/?control=destroy")
		}
	})
}
