//go:build e2e

package adopt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/adopt/adopttest"
	"github.com/sessiongate/caddy-session/internal/mongotest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// The legacy apps sign with appKeys; the gateway is configured with a
// newer key first, so every test also shows that every key verifies.
var (
	appKeys     = []string{"legacy-key-1"}
	gatewayKeys = []string{"legacy-key-2", "legacy-key-1"}
)

// variant is one legacy set-up: a fixture app and the matching source.
type variant struct {
	name   string
	app    adopttest.App
	cfg    Config
	object bool // connect-mongo stores the session as an object
}

var variants = []variant{
	{name: "koa-mongoose", app: adopttest.KoaMongoose, cfg: Config{Kind: KindKoa, Collection: "sessions"}},
	{name: "koa-cookie", app: adopttest.KoaCookie, cfg: Config{Kind: KindKoa}},
	{name: "express", app: adopttest.Express, cfg: Config{Kind: KindExpress}},
	{name: "express-object", app: adopttest.Express, cfg: Config{Kind: KindExpress}, object: true},
}

// legacyApp is a running fixture app, its database and a Source for it.
type legacyApp struct {
	variant
	base     string
	src      *Source
	coll     *mongo.Collection // nil for cookie-only koa
	commands *atomic.Int64     // commands the Source's client sent
}

func startLegacy(t *testing.T, v variant) *legacyApp {
	t.Helper()
	return startLegacyWith(t, v, adopttest.Options{})
}

// startLegacyWith starts v's app with o (Keys, store and ObjectSession
// are filled in) and a Source for it.
func startLegacyWith(t *testing.T, v variant, o adopttest.Options) *legacyApp {
	t.Helper()
	uri, db := mongotest.Database(t)
	l := &legacyApp{variant: v, commands: new(atomic.Int64)}
	o.Keys, o.MongoURI, o.Database, o.ObjectSession = appKeys, uri, db, v.object
	l.base = adopttest.Start(t, v.app, o)
	// The Source gets its own client with a command monitor, so tests can
	// count its round trips.
	monitor := &event.CommandMonitor{Started: func(_ context.Context, _ *event.CommandStartedEvent) { l.commands.Add(1) }}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	cfg := v.cfg
	cfg.Keys = gatewayKeys
	var database *mongo.Database
	if cfg.NeedsDatabase() {
		database = client.Database(db)
		l.coll = mongotest.Client(t).Database(db).Collection("sessions")
	}
	l.src, err = New(cfg, bytesOf(gatewayKeys), database, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func bytesOf(keys []string) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = []byte(k)
	}
	return out
}

// login logs in on the legacy app and returns the cookies it set, as a
// browser keeps them (name and value). The Set-Cookie headers are read
// directly: net/http's cookie jar drops names that are not RFC 6265
// tokens, such as koa's old default "koa:sess".
func (l *legacyApp) login(t *testing.T, query string) []*http.Cookie {
	t.Helper()
	res, err := http.Get(l.base + "/login?" + query)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("legacy login: %s", res.Status)
	}
	var cookies []*http.Cookie
	for _, sc := range res.Header["Set-Cookie"] {
		pair, _, _ := strings.Cut(sc, ";")
		name, value, _ := strings.Cut(pair, "=")
		cookies = append(cookies, &http.Cookie{Name: name, Value: value})
	}
	if len(cookies) == 0 {
		t.Fatal("the legacy app set no cookie")
	}
	return cookies
}

// whoami returns the session as the legacy app sees it, canonical.
func (l *legacyApp) whoami(t *testing.T, cookies []*http.Cookie) json.RawMessage {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, l.base+"/whoami", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	data, err := ProtocolCheck(0)(b)
	if err != nil {
		t.Fatalf("legacy whoami: %v", err)
	}
	return data
}

// gatewayRequest is a request to the gateway carrying cookies, plus a
// cookie of the site's own that must survive.
func gatewayRequest(cookies []*http.Cookie) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://gateway.test/page", nil)
	r.Header.Add("Cookie", "theme=dark")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func newKey() string { return cookie.Key(cookie.NewToken()) }

func (l *legacyApp) adopt(t *testing.T, cookies []*http.Cookie, now time.Time) (*Legacy, *http.Request, string) {
	t.Helper()
	r := gatewayRequest(cookies)
	key := newKey()
	leg, err := l.src.Adopt(context.Background(), r, now, key)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	return leg, r, key
}

// claim returns the claim stored in the legacy document of the session
// whose cookies are given, or "" when there is no document.
func (l *legacyApp) document(t *testing.T, cookies []*http.Cookie) bson.Raw {
	t.Helper()
	id := l.legacyID(t, cookies)
	raw, err := l.coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Raw()
	if err == mongo.ErrNoDocuments {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// legacyID reads the store id out of the legacy cookie, as the library
// would (the test trusts it: the signature was checked by Adopt).
func (l *legacyApp) legacyID(t *testing.T, cookies []*http.Cookie) string {
	t.Helper()
	for _, c := range cookies {
		if c.Name != l.src.name {
			continue
		}
		if l.cfg.Kind == KindKoa {
			return c.Value
		}
		v, _ := url.PathUnescape(c.Value)
		v = strings.TrimPrefix(v, "s:")
		return v[:strings.LastIndexByte(v, '.')]
	}
	t.Fatal("no legacy cookie")
	return ""
}

func checkExpire(t *testing.T, l *legacyApp, got []string) {
	t.Helper()
	want := []string{l.src.name}
	if l.cfg.Kind == KindKoa {
		want = append(want, l.src.name+".sig")
	}
	if len(got) != len(want) {
		t.Fatalf("expire cookies %q, want %v", got, want)
	}
	for i, c := range got {
		if c != want[i]+"=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly" &&
			c != want[i]+"=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure" {
			t.Errorf("expire cookie %q", c)
		}
	}
}

func checkStripped(t *testing.T, l *legacyApp, r *http.Request) {
	t.Helper()
	if got := strings.Join(r.Header["Cookie"], "; "); got != "theme=dark" {
		t.Errorf("Cookie header after Adopt: %q, want only the site's own cookie", got)
	}
}

func TestAdopt(t *testing.T) {
	t.Parallel()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			l := startLegacy(t, v)
			t.Run("walk", func(t *testing.T) { testWalk(t, l) })
			t.Run("refused", func(t *testing.T) { testRefused(t, l) })
			t.Run("burst", func(t *testing.T) { testBurst(t, l) })
			t.Run("release", func(t *testing.T) { testRelease(t, l) })
			t.Run("tossing", func(t *testing.T) { testTossing(t, l) })
			t.Run("discard", func(t *testing.T) { testDiscard(t, l) })
		})
	}
}

// testWalk: log in on the legacy app, adopt, see the claim, join within
// the grace time, refuse after it, sweep.
func testWalk(t *testing.T, l *legacyApp) {
	cookies := l.login(t, "user=alice")
	want := l.whoami(t, cookies)
	if !bytes.Contains(want, []byte(`"user":"alice"`)) {
		t.Fatalf("legacy app session: %s", want)
	}
	now := time.Now()
	leg, r, key := l.adopt(t, cookies, now)
	if leg.Outcome != OutcomeAdopted || leg.Key != key || leg.Reason != "" {
		t.Fatalf("outcome %v key given %v reason %q", leg.Outcome, leg.Key == key, leg.Reason)
	}
	if !bytes.Equal(leg.Data, want) {
		t.Errorf("adopted data\n%s\nwant what the legacy app sees\n%s", leg.Data, want)
	}
	if leg.Expires.IsZero() || !leg.Expires.After(now) {
		t.Errorf("legacy expiry %v", leg.Expires)
	}
	checkExpire(t, l, leg.Expire)
	checkStripped(t, l, r)

	if l.coll != nil {
		doc := l.document(t, cookies)
		owner, at, err := parseClaim(doc.Lookup(claimField))
		if err != nil || owner != key || !at.Equal(now.Truncate(time.Millisecond)) {
			t.Errorf("claim in the legacy document: %v %v %v", owner == key, at, err)
		}
	}

	// A concurrent request (the page's XHR) within the grace time.
	joined, r2, _ := l.adopt(t, cookies, now.Add(time.Second))
	if joined.Outcome != OutcomeJoined || joined.Key != key || !bytes.Equal(joined.Data, want) {
		t.Fatalf("within grace: outcome %v, claimant's key %v, data %s", joined.Outcome, joined.Key == key, joined.Data)
	}
	if len(joined.Expire) != 0 {
		t.Error("a joined request must not expire the legacy cookies")
	}
	checkStripped(t, l, r2)

	after := now.Add(DefaultGrace + time.Second)
	if l.coll == nil {
		// Cookie-only: the claim lives in this process for the grace
		// time; after it a copy of the cookie is adopted again.
		if late, _, _ := l.adopt(t, cookies, after); late.Outcome != OutcomeAdopted {
			t.Errorf("cookie-only after grace: %v %q", late.Outcome, late.Reason)
		}
		return
	}
	if n, err := l.src.Sweep(context.Background(), now.Add(time.Second)); err != nil || n != 0 || l.document(t, cookies) == nil {
		t.Fatalf("a sweep within the grace time deleted %d (%v)", n, err)
	}
	late, _, _ := l.adopt(t, cookies, after)
	if late.Outcome != OutcomeRefused || late.Reason != "already adopted" {
		t.Fatalf("after grace: %v %q", late.Outcome, late.Reason)
	}
	checkExpire(t, l, late.Expire)
	n, err := l.src.Sweep(context.Background(), after)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if l.document(t, cookies) != nil {
		t.Fatal("the adopted legacy document outlived the sweep")
	}
	gone, _, _ := l.adopt(t, cookies, after)
	if gone.Outcome != OutcomeRefused || gone.Reason != "unknown session" {
		t.Fatalf("after sweep: %v %q", gone.Outcome, gone.Reason)
	}
}

// tamper returns cookies with one character of the session cookie's value
// changed (inside the id or payload, not the signature).
func tamper(l *legacyApp, cookies []*http.Cookie) []*http.Cookie {
	out := make([]*http.Cookie, 0, len(cookies))
	for _, c := range cookies {
		c := *c
		if c.Name == l.src.name {
			b := []byte(c.Value)
			i := 8
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			c.Value = string(b)
		}
		out = append(out, &c)
	}
	return out
}

func without(cookies []*http.Cookie, name string) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range cookies {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

func testRefused(t *testing.T, l *legacyApp) {
	now := time.Now()
	cookies := l.login(t, "user=carol")
	var db *mongo.Database
	if l.src.coll != nil {
		db = l.src.coll.Database()
	}
	other, err := New(Config{Kind: l.cfg.Kind, Collection: l.cfg.Collection, Keys: []string{"x"}}, bytesOf([]string{"not-the-key"}), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name    string
		src     *Source
		cookies func(t *testing.T) []*http.Cookie
		now     time.Time
		reason  string // prefix
		free    bool   // no store round trip allowed
	}
	cases := []tc{
		{name: "tampered value", cookies: func(*testing.T) []*http.Cookie { return tamper(l, cookies) }, reason: "bad signature", free: true},
		{name: "unknown key", src: other, cookies: func(*testing.T) []*http.Cookie { return cookies }, reason: "bad signature", free: true},
		{name: "garbage", cookies: func(*testing.T) []*http.Cookie {
			c := []*http.Cookie{{Name: l.src.name, Value: "s%3Aabc.def"}}
			if l.cfg.Kind == KindKoa {
				c = append(c, &http.Cookie{Name: l.src.name + ".sig", Value: "xyz"})
			}
			return c
		}, reason: "bad signature", free: true},
		{name: "expired", cookies: func(*testing.T) []*http.Cookie { return cookies }, now: now.Add(15 * 24 * time.Hour), reason: "expired"},
		{name: "over the cap", cookies: func(t *testing.T) []*http.Cookie { return l.login(t, "pad=9000") }, reason: "data refused: session is 9"},
	}
	if l.app == adopttest.KoaCookie || (l.app == adopttest.Express && !l.object) {
		// A key with a dot only survives a store that keeps the session
		// as JSON text; MongoDB drivers refuse to write it in a document.
		cases = append(cases, tc{name: "dotted key", cookies: func(t *testing.T) []*http.Cookie { return l.login(t, "dotted=1") }, reason: "data refused: key at depth 0 (3 bytes) contains ."})
	}
	if l.cfg.Kind == KindKoa {
		cases = append(cases,
			tc{name: "no signature cookie", cookies: func(*testing.T) []*http.Cookie { return without(cookies, l.src.name+".sig") }, reason: "no signature cookie", free: true},
			tc{name: "signature only", cookies: func(*testing.T) []*http.Cookie { return without(cookies, l.src.name) }, reason: "signature cookie without", free: true},
		)
	} else {
		cases = append(cases, tc{name: "unsigned", cookies: func(t *testing.T) []*http.Cookie {
			return []*http.Cookie{{Name: l.src.name, Value: l.legacyID(t, cookies)}}
		}, reason: "bad signature", free: true})
	}
	if l.coll != nil {
		cases = append(cases, tc{name: "unknown session", cookies: func(t *testing.T) []*http.Cookie {
			c := l.login(t, "user=dave")
			if _, err := l.coll.DeleteOne(context.Background(), bson.D{{Key: "_id", Value: l.legacyID(t, c)}}); err != nil {
				t.Fatal(err)
			}
			return c
		}, reason: "unknown session"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.src
			if src == nil {
				src = l.src
			}
			at := c.now
			if at.IsZero() {
				at = now
			}
			r := gatewayRequest(c.cookies(t))
			before := l.commands.Load()
			leg, err := src.Adopt(context.Background(), r, at, newKey())
			if err != nil {
				t.Fatalf("refusals are not errors: %v", err)
			}
			if leg.Outcome != OutcomeRefused || !strings.HasPrefix(leg.Reason, c.reason) || leg.Data != nil {
				t.Fatalf("outcome %v reason %q, want refused %q", leg.Outcome, leg.Reason, c.reason)
			}
			if c.free && l.commands.Load() != before {
				t.Errorf("a forged cookie cost %d store round trips", l.commands.Load()-before)
			}
			checkExpire(t, l, leg.Expire)
			checkStripped(t, l, r)
		})
	}
	t.Run("no key", func(t *testing.T) {
		if _, err := l.src.Adopt(context.Background(), gatewayRequest(cookies), now, ""); err == nil {
			t.Fatal("Adopt without a gateway store key")
		}
	})
	t.Run("no legacy cookie", func(t *testing.T) {
		r := gatewayRequest([]*http.Cookie{{Name: l.src.name + "x", Value: "1"}})
		if !l.src.Present(r.Header) {
			t.Fatal("Present is a substring test: a similar name counts")
		}
		leg, err := l.src.Adopt(context.Background(), r, now, newKey())
		if err != nil || leg.Outcome != OutcomeNone || leg.Reason != "" || leg.Expire != nil {
			t.Fatalf("got %v %q %v %v", leg.Outcome, leg.Reason, leg.Expire, err)
		}
		if l.src.Present(http.Header{"Cookie": {"theme=dark"}}) {
			t.Fatal("Present without the cookie name")
		}
	})
}

// testBurst: ten concurrent requests with one legacy cookie: one claims,
// nine join with the claimant's key, all ten get the data.
func testBurst(t *testing.T, l *legacyApp) {
	cookies := l.login(t, "user=erin")
	want := l.whoami(t, cookies)
	now := time.Now()
	const n = 10
	results := make([]*Legacy, n)
	keys := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		keys[i] = newKey()
		wg.Go(func() {
			leg, err := l.src.Adopt(context.Background(), gatewayRequest(cookies), now, keys[i])
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = leg
		})
	}
	wg.Wait()
	winner := ""
	for i, leg := range results {
		if leg == nil {
			t.FailNow()
		}
		if leg.Outcome == OutcomeAdopted {
			if winner != "" {
				t.Fatal("adopted twice")
			}
			winner = keys[i]
		}
	}
	if winner == "" {
		t.Fatal("nobody adopted")
	}
	for i, leg := range results {
		if !bytes.Equal(leg.Data, want) {
			t.Errorf("request %d (%v) data %s", i, leg.Outcome, leg.Data)
		}
		if leg.Key != winner || (keys[i] != winner && leg.Outcome != OutcomeJoined) {
			t.Errorf("request %d: %v, claimant's key %v", i, leg.Outcome, leg.Key == winner)
		}
	}
	if l.coll != nil {
		owner, _, err := parseClaim(l.document(t, cookies).Lookup(claimField))
		if err != nil || owner != winner {
			t.Errorf("claim in the document is not the winner's: %v", err)
		}
	}
}

// testRelease: a claim released (the gateway failed to create the
// session) leaves the legacy session adoptable, with its expiry back.
func testRelease(t *testing.T, l *legacyApp) {
	cookies := l.login(t, "user=frank")
	var before bson.RawValue
	if l.coll != nil {
		before = l.document(t, cookies).Lookup(strings.Split(l.src.expiryField(), ".")...)
	}
	now := time.Now()
	leg, _, _ := l.adopt(t, cookies, now)
	if leg.Outcome != OutcomeAdopted {
		t.Fatalf("%v %q", leg.Outcome, leg.Reason)
	}
	if err := leg.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.coll != nil {
		doc := l.document(t, cookies)
		if _, err := doc.LookupErr(claimField); err == nil {
			t.Fatal("claim left after Release")
		}
		if after := doc.Lookup(strings.Split(l.src.expiryField(), ".")...); !after.Equal(before) {
			t.Errorf("legacy expiry not restored: %v, was %v", after, before)
		}
	}
	again, _, key := l.adopt(t, cookies, now.Add(time.Second))
	if again.Outcome != OutcomeAdopted || again.Key != key {
		t.Fatalf("after release: %v %q", again.Outcome, again.Reason)
	}
	if err := (&Legacy{}).Release(context.Background()); err != nil {
		t.Fatal("Release of a refused result must be a no-op")
	}
}

// testTossing: a planted legacy cookie next to the real one does not stop
// the adoption; two real sessions are ambiguous.
func testTossing(t *testing.T, l *legacyApp) {
	real := l.login(t, "user=grace")
	planted := []*http.Cookie{{Name: l.src.name, Value: "s%3Aplanted.AAAA"}}
	if l.cfg.Kind == KindKoa {
		planted = append(planted, &http.Cookie{Name: l.src.name + ".sig", Value: "AAAA"})
	}
	now := time.Now()
	leg, _, _ := l.adopt(t, append(planted, real...), now)
	if leg.Outcome != OutcomeAdopted || !bytes.Contains(leg.Data, []byte(`"grace"`)) {
		t.Fatalf("planted cookie first: %v %q", leg.Outcome, leg.Reason)
	}
	other := l.login(t, "user=heidi")
	both, _, _ := l.adopt(t, append(l.login(t, "user=ivan"), other...), now)
	if both.Outcome != OutcomeRefused || !strings.HasPrefix(both.Reason, "ambiguous") {
		t.Fatalf("two real sessions: %v %q", both.Outcome, both.Reason)
	}
	if len(both.Expire) != 0 {
		t.Errorf("an ambiguous refusal expires the legacy cookies: %q", both.Expire)
	}

	// Issue 17 item 5: a flood of junk legacy cookies. The browser sends
	// the older, real cookie first: the first maxCookies are tried, so
	// the junk behind it does not block the adoption.
	var junk []*http.Cookie
	for i := range maxCookies {
		junk = append(junk, &http.Cookie{Name: l.src.name, Value: fmt.Sprintf("s%%3Ajunk%d.AAAA", i)})
		if l.cfg.Kind == KindKoa {
			junk = append(junk, &http.Cookie{Name: l.src.name + ".sig", Value: "AAAA"})
		}
	}
	flood, _, _ := l.adopt(t, append(l.login(t, "user=mallory"), junk...), now)
	if flood.Outcome != OutcomeAdopted || !bytes.Contains(flood.Data, []byte(`"mallory"`)) {
		t.Fatalf("real cookie first, %d junk after it: %v %q", maxCookies, flood.Outcome, flood.Reason)
	}
	// Junk first: the real cookie is past the cap. Refused, and the real
	// cookie is not expired.
	blocked, _, _ := l.adopt(t, append(junk, l.login(t, "user=niaj")...), now)
	if blocked.Outcome != OutcomeRefused || blocked.Reason != "too many legacy cookies" {
		t.Fatalf("%d junk cookies first: %v %q", maxCookies, blocked.Outcome, blocked.Reason)
	}
	if len(blocked.Expire) != 0 {
		t.Errorf("a too-many refusal expires the legacy cookies: %q", blocked.Expire)
	}
}

// testDiscard: a live gateway session wins; the legacy cookies go.
func testDiscard(t *testing.T, l *legacyApp) {
	r := gatewayRequest(l.login(t, "user=judy"))
	if !l.src.Present(r.Header) {
		t.Fatal("Present missed the legacy cookie")
	}
	before := l.commands.Load()
	expire := l.src.Discard(r.Header, true)
	checkExpire(t, l, expire)
	for _, c := range expire {
		if !strings.HasSuffix(c, "; Secure") {
			t.Error("over TLS the expiring cookie is Secure")
		}
	}
	checkStripped(t, l, r)
	if l.src.Present(r.Header) || l.commands.Load() != before {
		t.Fatal("Discard left the cookie or went to the store")
	}
}

// TestAdoptOptions: non-default cookie names (koa's old "koa:sess" is not
// an RFC 6265 token), keygrip with sha256, koa's browser-session maxAge,
// express's cookie maxAge as the legacy expiry.
func TestAdoptOptions(t *testing.T) {
	t.Parallel()
	t.Run("koa", func(t *testing.T) {
		t.Parallel()
		v := variant{name: "koa", app: adopttest.KoaCookie, cfg: Config{Kind: KindKoa, Cookie: "koa:sess", Algorithm: "sha256"}}
		l := startLegacyWith(t, v, adopttest.Options{Cookie: "koa:sess", Algorithm: "sha256", MaxAge: "session"})
		cookies := l.login(t, "user=kim")
		want := l.whoami(t, cookies)
		leg, r, _ := l.adopt(t, cookies, time.Now().Add(365*24*time.Hour))
		if leg.Outcome != OutcomeAdopted || !bytes.Equal(leg.Data, want) {
			t.Fatalf("%v %q: %s, want %s", leg.Outcome, leg.Reason, leg.Data, want)
		}
		if !leg.Expires.IsZero() {
			t.Errorf("a browser-session koa cookie has no expiry, got %v", leg.Expires)
		}
		if leg.Expire[0] != "koa:sess=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly" {
			t.Errorf("expire %q", leg.Expire)
		}
		checkStripped(t, l, r)
		sha1Src, err := New(Config{Kind: KindKoa, Cookie: "koa:sess", Keys: []string{"k"}}, bytesOf(appKeys), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if leg, _ := sha1Src.Adopt(context.Background(), gatewayRequest(cookies), time.Now(), newKey()); leg.Reason != "bad signature" {
			t.Errorf("a sha1 source verified a sha256 signature: %v %q", leg.Outcome, leg.Reason)
		}
	})
	t.Run("express", func(t *testing.T) {
		t.Parallel()
		v := variant{name: "express", app: adopttest.Express, cfg: Config{Kind: KindExpress, Cookie: "app.sid", Path: "/"}}
		l := startLegacyWith(t, v, adopttest.Options{Cookie: "app.sid", MaxAge: "60000"})
		cookies := l.login(t, "user=lee")
		now := time.Now()
		leg, _, _ := l.adopt(t, cookies, now.Add(2*time.Minute))
		if leg.Outcome != OutcomeRefused || leg.Reason != "expired" {
			t.Fatalf("past the cookie's maxAge: %v %q", leg.Outcome, leg.Reason)
		}
		leg, _, _ = l.adopt(t, cookies, now)
		if leg.Outcome != OutcomeAdopted {
			t.Fatalf("%v %q", leg.Outcome, leg.Reason)
		}
		if d := leg.Expires.Sub(now); d < 50*time.Second || d > 70*time.Second {
			t.Errorf("legacy expiry %v from now, want about the cookie's 60s maxAge", d)
		}
	})
}
