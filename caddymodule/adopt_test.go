//go:build e2e

package caddymodule

// End-to-end walks of issue 11 through a real Caddy: the legacy Node apps
// (koa + koa-session + koa-session-mongoose, koa-session cookie-only,
// express + express-session + connect-mongo; the real libraries, started
// by internal/adopt/adopttest) log a visitor in; then Caddy with
// `session { store mongodb {...}; adopt ... }` in front of the test
// upstream (the app, now reading headers) adopts that session, once.
//
// Cookies are carried by hand, as the adopt package's tests do: net/http's
// cookie jar drops koa's "koa:sess", which is not an RFC 6265 token.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/caddy-session/internal/adopt"
	"github.com/sessiongate/caddy-session/internal/adopt/adopttest"
	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/internal/wiretest"
)

// The legacy apps sign with legacyKey. The gateway lists a newer key
// first and takes legacyKey from the environment, so every walk also shows
// that every key verifies and that keys take {env.X} placeholders.
const (
	legacyKey      = "legacy-key-1"
	newerLegacyKey = "legacy-key-2"
	legacyKeyEnv   = "CADDY_SESSION_TEST_LEGACY_KEY"
	// adoptGrace is the adopt blocks' grace time; the tests move the
	// handler's clock past it instead of waiting.
	adoptGrace = 10 * time.Second
)

// adoptVariant is one legacy set-up: a fixture app and its adopt block.
type adoptVariant struct {
	name   string
	app    adopttest.App
	kind   string // the adopt block's kind and X-Session-Meta's "adopted"
	cookie string // the legacy session cookie's name
	store  bool   // the legacy sessions are in a MongoDB collection
}

var adoptVariants = []adoptVariant{
	// The seed's apps use koa-session's old default name, koa:sess.
	{name: "koa-mongoose", app: adopttest.KoaMongoose, kind: "koa", cookie: "koa:sess", store: true},
	{name: "koa-cookie", app: adopttest.KoaCookie, kind: "koa", cookie: "koa.sess"},
	{name: "express", app: adopttest.Express, kind: "express", cookie: "connect.sid", store: true},
}

// legacyNames are the cookies the legacy library sets: koa's session
// cookie and its .sig cookie, or express's one cookie.
func (v adoptVariant) legacyNames() []string {
	if v.kind == "koa" {
		return []string{v.cookie, v.cookie + ".sig"}
	}
	return []string{v.cookie}
}

// adoptBlock is the variant's adopt block as a site would write it.
func (v adoptVariant) adoptBlock(legacyDB string) string {
	keys := "keys"
	if v.kind == "express" {
		keys = "secret"
	}
	b := fmt.Sprintf("\t\tadopt %s {\n\t\t\t%s %s {env.%s}\n", v.kind, keys, newerLegacyKey, legacyKeyEnv)
	if v.cookie != "koa.sess" { // koa.sess is koa's default: left out on purpose
		b += "\t\t\tcookie " + v.cookie + "\n"
	}
	if v.store {
		b += "\t\t\tcollection sessions\n\t\t\tdatabase " + legacyDB + "\n"
	} else {
		b += "\t\t\tpath /\n"
	}
	return b + fmt.Sprintf("\t\t\tgrace %s\n\t\t}\n", adoptGrace)
}

// adoptRig is a legacy app, its database, and a Caddy with the MongoDB
// store and the variant's adopt block in front of the test upstream.
type adoptRig struct {
	adoptVariant
	t        *testing.T
	legacy   string // the legacy app's base URL
	legacyDB string
	gwDB     string // the gateway store's database
	base     string // Caddy's base URL
	logPath  string
	client   *http.Client // no jar: cookies are carried by browser
}

// startAdoptRig starts v's legacy app and the gateway. storeExtra goes into
// the gateway's store block.
func startAdoptRig(t *testing.T, v adoptVariant, storeExtra string) *adoptRig {
	t.Helper()
	return startAdoptRigVia(t, v, storeExtra, nil)
}

// startAdoptRigVia is startAdoptRig with the gateway talking to MongoDB
// through proxy, when not nil, so the test sees its commands.
func startAdoptRigVia(t *testing.T, v adoptVariant, storeExtra string, proxy *wiretest.Proxy) *adoptRig {
	t.Helper()
	t.Setenv(legacyKeyEnv, legacyKey)
	uri, legacyDB := mongotest.Database(t)
	_, gwDB := mongotest.Database(t)
	o := adopttest.Options{Keys: []string{legacyKey}}
	if v.cookie != "koa.sess" {
		o.Cookie = v.cookie
	}
	if v.store {
		o.MongoURI, o.Database = uri, legacyDB
	}
	rig := &adoptRig{adoptVariant: v, t: t, legacyDB: legacyDB, gwDB: gwDB,
		logPath: filepath.Join(t.TempDir(), "caddy.log"),
		client:  &http.Client{Timeout: 10 * time.Second}}
	rig.legacy = adopttest.Start(t, v.app, o)
	opts := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}\n}\n",
		t.TempDir(), rig.logPath)
	gwURI := uri
	if proxy != nil {
		gwURI = proxy.URI()
	}
	body := mongoSessionBody(gwURI, gwDB, storeExtra, v.adoptBlock(legacyDB))
	rig.base = startGateway(t, opts, body, upstream(t)).base
	return rig
}

// browser holds cookies by name, in the order they were set, as a browser
// sends them back to one host.
type browser struct {
	names  []string
	values map[string]string
}

func newBrowser() *browser { return &browser{values: map[string]string{}} }

// take applies a response's Set-Cookie headers: Max-Age=0 deletes.
func (b *browser) take(h http.Header) {
	for _, sc := range h["Set-Cookie"] {
		pair, attrs, _ := strings.Cut(sc, ";")
		name, value, _ := strings.Cut(pair, "=")
		if strings.Contains(strings.ToLower(attrs), "max-age=0") {
			b.del(name)
			continue
		}
		if _, ok := b.values[name]; !ok {
			b.names = append(b.names, name)
		}
		b.values[name] = value
	}
}

func (b *browser) del(name string) {
	delete(b.values, name)
	for i, n := range b.names {
		if n == name {
			b.names = append(b.names[:i], b.names[i+1:]...)
			break
		}
	}
}

// header is the Cookie header value.
func (b *browser) header() string {
	parts := make([]string, 0, len(b.names))
	for _, n := range b.names {
		parts = append(parts, n+"="+b.values[n])
	}
	return strings.Join(parts, "; ")
}

// copyOf returns a browser holding only the named cookies of b.
func (b *browser) copyOf(names ...string) *browser {
	c := newBrowser()
	for _, n := range names {
		if v, ok := b.values[n]; ok {
			c.names, c.values[n] = append(c.names, n), v
		}
	}
	return c
}

// legacyGet sends a request to the legacy app with b's cookies and keeps
// the cookies it sets.
func (rig *adoptRig) legacyGet(b *browser, path string) []byte {
	rig.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rig.legacy+path, nil)
	if c := b.header(); c != "" {
		req.Header.Set("Cookie", c)
	}
	res, err := rig.client.Do(req)
	if err != nil {
		rig.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		rig.t.Fatalf("legacy %s: %s", path, res.Status)
	}
	b.take(res.Header)
	return body
}

// login logs user in on the legacy app and returns the session data as
// the legacy app itself shows it, in the canonical encoding.
func (rig *adoptRig) login(b *browser, user string) []byte {
	rig.t.Helper()
	rig.legacyGet(b, "/login?user="+user)
	for _, n := range rig.legacyNames() {
		if b.values[n] == "" {
			rig.t.Fatalf("the legacy app set no %s cookie", n)
		}
	}
	data, err := adopt.ProtocolCheck(0)(rig.legacyGet(b, "/whoami"))
	if err != nil {
		rig.t.Fatalf("legacy whoami: %v", err)
	}
	if !bytes.Contains(data, []byte(`"user":"`+user+`"`)) {
		rig.t.Fatalf("legacy session of %s: %s", user, data)
	}
	return data
}

// adoptReply is one gateway response and what the upstream reported.
type adoptReply struct {
	status     int
	setCookies []string
	session    string         // the X-Session the upstream got
	meta       map[string]any // the X-Session-Meta it got
	cookie     string         // the Cookie header it got
	body       string
}

// send makes one request to the gateway with b's cookies (and a cookie of
// the site's own, which must reach the upstream), without touching b.
// It returns an error instead of failing, for concurrent use.
func (rig *adoptRig) send(b *browser, path string) (adoptReply, error) {
	return rig.sendCookies(b.header(), path)
}

// sendCookies is send with a Cookie header written by hand (names may
// repeat, as in cookie tossing).
func (rig *adoptRig) sendCookies(cookies, path string) (adoptReply, error) {
	req, _ := http.NewRequest(http.MethodGet, rig.base+path, nil)
	req.Header.Set("Cookie", strings.TrimSuffix("theme=dark; "+cookies, "; "))
	res, err := rig.client.Do(req)
	if err != nil {
		return adoptReply{}, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r := adoptReply{status: res.StatusCode, setCookies: res.Header["Set-Cookie"], body: string(body)}
	for name := range res.Header {
		if strings.HasPrefix(strings.ToLower(name), "x-session") {
			return r, fmt.Errorf("session header %s reached the client", name)
		}
	}
	var rep struct {
		Session string   `json:"session"`
		Meta    string   `json:"meta"`
		Cookie  []string `json:"cookie"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return r, fmt.Errorf("status %d, body %q: %v", r.status, body, err)
	}
	r.session, r.cookie = rep.Session, strings.Join(rep.Cookie, "; ")
	if err := json.Unmarshal([]byte(rep.Meta), &r.meta); err != nil {
		return r, fmt.Errorf("X-Session-Meta %q: %v", rep.Meta, err)
	}
	return r, nil
}

// get is send that fails the test on error or a status other than 200,
// and keeps the cookies the response sets in b.
func (rig *adoptRig) get(b *browser, path string) adoptReply {
	rig.t.Helper()
	r, err := rig.send(b, path)
	if err != nil {
		rig.t.Fatal(err)
	}
	if r.status != http.StatusOK {
		rig.t.Fatalf("GET %s: status %d: %s", path, r.status, r.body)
	}
	if r.cookie != "theme=dark" {
		rig.t.Errorf("the upstream got Cookie %q, want only the site's own cookie", r.cookie)
	}
	b.take(http.Header{"Set-Cookie": r.setCookies})
	return r
}

// gatewayCookies returns the Set-Cookie values that set (not expire) the
// gateway cookie.
func gatewayCookies(setCookies []string) []string {
	var out []string
	for _, sc := range setCookies {
		if strings.HasPrefix(sc, DefaultCookieName+"=") && !strings.Contains(sc, "Max-Age=0") {
			out = append(out, sc)
		}
	}
	return out
}

// checkLegacyExpired asserts that setCookies expire exactly the legacy
// cookies, with their name and path, and that any other Set-Cookie is the
// gateway's.
func (rig *adoptRig) checkLegacyExpired(what string, setCookies []string) {
	rig.t.Helper()
	var got []string
	for _, sc := range setCookies {
		if !strings.HasPrefix(sc, DefaultCookieName+"=") {
			got = append(got, sc)
		}
	}
	names := rig.legacyNames()
	if len(got) != len(names) {
		rig.t.Fatalf("%s: legacy Set-Cookie %q, want %v expired", what, got, names)
	}
	for i, n := range names {
		if want := n + "=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly"; got[i] != want {
			rig.t.Errorf("%s: Set-Cookie %q, want %q", what, got[i], want)
		}
	}
}

// legacyID is the legacy store's _id of b's legacy session, read out of
// the cookie as the library reads it.
func (rig *adoptRig) legacyID(b *browser) string {
	rig.t.Helper()
	v := b.values[rig.cookie]
	if rig.kind == "koa" {
		return v
	}
	v, _ = url.PathUnescape(v)
	v = strings.TrimPrefix(v, "s:")
	return v[:strings.LastIndexByte(v, '.')]
}

// legacyDoc returns the legacy document with _id id, nil if there is none.
func (rig *adoptRig) legacyDoc(id string) bson.Raw {
	rig.t.Helper()
	raw, err := mongotest.Client(rig.t).Database(rig.legacyDB).Collection("sessions").FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Raw()
	if err == mongo.ErrNoDocuments {
		return nil
	}
	if err != nil {
		rig.t.Fatal(err)
	}
	return raw
}

// sweep runs one adoption sweep on the running handlers, as their ticker
// does every minute.
func sweep() {
	for _, h := range runningHandlers() {
		h.sweepAdoptedOnce()
	}
}

// logEntries returns the gateway's log lines with message msg.
func (rig *adoptRig) logEntries(msg string) []map[string]any {
	rig.t.Helper()
	text, err := os.ReadFile(rig.logPath)
	if err != nil {
		rig.t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		var e map[string]any
		if json.Unmarshal(line, &e) == nil && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// checkLogClean asserts that the log holds none of secrets (cookie values,
// keys, session data).
func (rig *adoptRig) checkLogClean(secrets ...string) {
	rig.t.Helper()
	text, err := os.ReadFile(rig.logPath)
	if err != nil {
		rig.t.Fatal(err)
	}
	for _, s := range append(secrets, legacyKey, newerLegacyKey) {
		if s != "" && bytes.Contains(text, []byte(s)) {
			rig.t.Errorf("the log holds a secret, cookie value or session data (%d bytes)", len(s))
		}
	}
}

// cookieValues are b's cookie values, for checkLogClean.
func (b *browser) cookieValues() []string {
	var out []string
	for _, n := range b.names {
		out = append(out, b.values[n])
	}
	return out
}

// TestAdoptWalk: log in on the legacy app; through the gateway, the next
// request is adopted (the upstream sees the old data, Meta says so, the
// legacy cookies are expired, the gateway cookie is set, the legacy
// document is claimed), a concurrent copy of the legacy cookies joins, the
// request after uses the gateway session, and after the grace time the
// sweep deletes the legacy document.
func TestAdoptWalk(t *testing.T) {
	for _, v := range adoptVariants {
		t.Run(v.name, func(t *testing.T) {
			rig := startAdoptRig(t, v, "")
			adopts := adoptWrites()
			b := newBrowser()
			want := rig.login(b, "alice")
			legacyData := want                     // what the legacy cookie holds, whatever the gateway writes later
			legacy := b.copyOf(v.legacyNames()...) // the cookies an XHR already in flight carries
			id := ""
			if v.store {
				id = rig.legacyID(b)
				if rig.legacyDoc(id) == nil {
					t.Fatal("the legacy app stored no document")
				}
			}

			// The request that adopts; its upstream writes at once, as an
			// app's first answer after the switch may.
			r := rig.get(b, "/?patch="+url.QueryEscape(`{"seen":1}`))
			rig.checkAdopted(r, want)
			want = withSeen(t, want)
			handle := r.meta["id"].(string)
			rig.checkLegacyExpired("adopting response", r.setCookies)
			if sc := gatewayCookies(r.setCookies); len(sc) != 1 {
				t.Fatalf("adopting response sets the gateway cookie %d times: %q", len(sc), r.setCookies)
			}
			if got := b.header(); !strings.HasPrefix(got, DefaultCookieName+"=") || strings.Contains(got, ";") {
				t.Fatalf("after adoption the browser holds %d cookies, want only the gateway's", len(b.names))
			}
			if n := sessionDocs(t, rig.gwDB); n != 1 {
				t.Fatalf("%d gateway sessions after adoption, want 1", n)
			}
			if v.store {
				rig.checkClaim(id, handle)
			}
			if e := rig.logEntries("adopted a legacy session"); len(e) != 1 || e[0]["source"] != v.kind || e[0]["session"] != handle {
				t.Fatalf("adoption log lines: %v", e)
			}

			// A request that left with the legacy cookies before the
			// adopting response arrived joins: the adopted session, no
			// cookie of either kind, read-only (its patch is dropped).
			j := rig.get(legacy.copyOf(v.legacyNames()...), "/?patch="+url.QueryEscape(`{"joiner":1}`))
			if j.session != string(want) || j.meta["adopted"] != v.kind || j.meta["id"] != handle || len(j.setCookies) != 0 {
				t.Fatalf("joined request: session %s meta %v Set-Cookie %q", j.session, j.meta, j.setCookies)
			}

			// The next request uses the gateway session: nothing adopted,
			// and the joiner's patch was dropped.
			r = rig.get(b, "/")
			if r.session != string(want) || r.meta["new"] != false || r.meta["id"] != handle || r.meta["adopted"] != nil {
				t.Fatalf("request after adoption: session %s meta %v", r.session, r.meta)
			}
			if len(r.setCookies) != 0 {
				t.Fatalf("request after adoption sets cookies: %q", r.setCookies)
			}
			// It is a gateway session like any other: writes stick.
			rig.get(b, "/?patch="+url.QueryEscape(`{"cart":[1]}`))
			if r = rig.get(b, "/"); !strings.Contains(r.session, `"cart":[1]`) || !strings.Contains(r.session, `"user":"alice"`) {
				t.Fatalf("adopted session after a patch: %s", r.session)
			}
			if n := sessionDocs(t, rig.gwDB); n != 1 {
				t.Fatalf("%d gateway sessions, want 1", n)
			}

			// A sweep within the grace time deletes nothing.
			sweep()
			if v.store && rig.legacyDoc(id) == nil {
				t.Fatal("the sweep deleted the legacy document within the grace time")
			}
			skew(t, adoptGrace+time.Second)
			if v.store {
				// After the grace time the legacy cookies are refused...
				late := rig.get(legacy.copyOf(v.legacyNames()...), "/")
				rig.checkRefused("after the grace time", late, "already adopted")
				// ...and the sweep deletes the document.
				sweep()
				if rig.legacyDoc(id) != nil {
					t.Fatal("the adopted legacy document outlived the sweep")
				}
				gone := rig.get(legacy.copyOf(v.legacyNames()...), "/")
				rig.checkRefused("after the sweep", gone, "unknown session")
			} else {
				// A cookie-only koa session has no document to claim: the
				// claim lived in this process for the grace time only, so
				// a copy of the cookie is adopted again, as a second
				// gateway session (protocol.md, caddyfile.md grace,
				// migrating.md). Only ending the koa keys stops it.
				again := rig.get(legacy.copyOf(v.legacyNames()...), "/")
				rig.checkAdopted(again, legacyData)
				if again.meta["id"] == handle || len(gatewayCookies(again.setCookies)) != 1 {
					t.Fatalf("re-adoption after the grace time: id %v (first %s), gateway cookies %q; want a new session and its cookie",
						again.meta["id"], handle, again.setCookies)
				}
				if e := rig.logEntries("adopted a legacy session"); len(e) != 2 {
					t.Fatalf("%d adoption log lines, want 2", len(e))
				}
			}
			wantDocs := int64(1)
			if !v.store {
				wantDocs = 2 // the re-adopted cookie-only session
			}
			// Each adoption is counted, the joiner is not.
			if n := adoptWrites() - adopts; n != float64(wantDocs) {
				t.Errorf(`caddy_session_writes_total{op="adopt"} went up by %v, want %d`, n, wantDocs)
			}
			if n := sessionDocs(t, rig.gwDB); n != wantDocs {
				t.Fatalf("%d gateway sessions at the end, want %d", n, wantDocs)
			}
			rig.checkLogClean(append(legacy.cookieValues(), b.cookieValues()...)...)
			if strings.Contains(readFile(t, rig.logPath), "alice") {
				t.Error("the log holds session data")
			}
		})
	}
}

// withSeen is data with "seen":1 added, canonical.
func withSeen(t *testing.T, data []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["seen"] = 1
	b, _ := json.Marshal(m)
	out, err := adopt.ProtocolCheck(0)(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkAdopted asserts that r is the adopting request: the upstream got
// the legacy data, without the libraries' bookkeeping fields, and Meta
// says where it came from.
func (rig *adoptRig) checkAdopted(r adoptReply, want []byte) {
	rig.t.Helper()
	if r.session != string(want) {
		rig.t.Fatalf("adopted X-Session\n%s\nwant what the legacy app showed\n%s", r.session, want)
	}
	for _, field := range []string{`"_expire"`, `"_maxAge"`, `"_session"`, `"cookie"`} {
		if strings.Contains(r.session, field) {
			rig.t.Errorf("adopted data holds the library's %s", field)
		}
	}
	if r.meta["adopted"] != rig.kind || r.meta["new"] != false {
		rig.t.Fatalf("adopting request's X-Session-Meta %v, want adopted %q", r.meta, rig.kind)
	}
	if h, _ := r.meta["id"].(string); len(h) != 12 {
		rig.t.Fatalf("X-Session-Meta id %v", r.meta["id"])
	}
}

// checkClaim asserts that the legacy document id is claimed for the
// gateway session handle and that its legacy expiry moved to the end of
// the grace time.
func (rig *adoptRig) checkClaim(id, handle string) {
	rig.t.Helper()
	doc := rig.legacyDoc(id)
	if doc == nil {
		rig.t.Fatal("the legacy document is gone right after adoption")
	}
	key, ok := doc.Lookup("adopted", "key").StringValueOK()
	if !ok || !strings.HasPrefix(key, handle) {
		rig.t.Fatalf("the legacy document is not claimed for the new session (claim found: %v)", ok)
	}
	at, ok := doc.Lookup("adopted", "at").DateTimeOK()
	if !ok {
		rig.t.Fatal("the claim has no time")
	}
	var expiry int64
	if rig.kind == "koa" {
		f, _ := doc.Lookup("data", "_expire").DoubleOK()
		expiry = int64(f)
	} else {
		expiry, _ = doc.Lookup("expires").DateTimeOK()
	}
	if expiry != at+adoptGrace.Milliseconds() {
		rig.t.Errorf("legacy expiry %d, want the end of the grace time %d", expiry, at+adoptGrace.Milliseconds())
	}
}

// checkRefused asserts that r was served with no session, set no gateway
// cookie, expired the legacy cookies, and that the last refusal logged
// says reason (or starts with it, when it ends with "…").
func (rig *adoptRig) checkRefused(what string, r adoptReply, reason string) {
	rig.t.Helper()
	if r.session != "{}" || r.meta["new"] != true || r.meta["adopted"] != nil {
		rig.t.Fatalf("%s: session %s meta %v, want no session", what, r.session, r.meta)
	}
	if sc := gatewayCookies(r.setCookies); len(sc) != 0 {
		rig.t.Fatalf("%s: the gateway cookie was set", what)
	}
	rig.checkLegacyExpired(what, r.setCookies)
	e := rig.logEntries("legacy session not adopted")
	if len(e) == 0 {
		rig.t.Fatalf("%s: no log line", what)
	}
	last := e[len(e)-1]
	got, _ := last["reason"].(string)
	prefix, isPrefix := strings.CutSuffix(reason, "…") // "…": the reason starts so
	if last["level"] != "info" || last["source"] != rig.kind || got != reason && !(isPrefix && strings.HasPrefix(got, prefix)) {
		rig.t.Fatalf("%s: log line %v, want an info line with reason %q", what, last, reason)
	}
}

// storeCommands counts the commands a client sends to some databases,
// handshakes, index builds and the store's expiry sweep aside.
type storeCommands struct {
	dbs atomic.Pointer[map[string]bool] // set once the databases are known
	n   atomic.Int64
}

// observe is the proxy's observer.
func (c *storeCommands) observe(cmd wiretest.Command) {
	if dbs := c.dbs.Load(); dbs == nil || !(*dbs)[cmd.Database] {
		return
	}
	switch cmd.Name {
	case "find", "update", "insert", "findAndModify", "aggregate", "count":
	case "delete":
		if _, err := firstDocument(cmd, "deletes").LookupErr("q", "expires"); err == nil {
			return // the gateway store's expiry sweep
		}
	default:
		return
	}
	c.n.Add(1)
}

// TestAdoptRefused: forged, unknown and expired legacy cookies give no
// session, status 200, one info line with the reason and no value, no
// gateway cookie; a forged cookie and a request without legacy cookies
// cost no store round trip.
func TestAdoptRefused(t *testing.T) {
	for _, v := range adoptVariants {
		t.Run(v.name, func(t *testing.T) {
			counter := &storeCommands{}
			proxy := wiretest.NewProxy(t, mongotest.URI(t))
			proxy.Observe(counter.observe)
			rig := startAdoptRigVia(t, v, "", proxy)
			counter.dbs.Store(&map[string]bool{rig.legacyDB: true, rig.gwDB: true})

			b := newBrowser()
			rig.login(b, "alice")
			step := func(name string, c *browser, reason string, wantCommands bool) {
				t.Helper()
				counter.n.Store(0)
				r := rig.get(c, "/")
				n := counter.n.Load()
				if wantCommands != (n > 0) {
					t.Errorf("%s: %d store commands, want some: %v", name, n, wantCommands)
				}
				if reason == "" {
					if r.session != "{}" || len(r.setCookies) != 0 {
						t.Fatalf("%s: session %s Set-Cookie %q", name, r.session, r.setCookies)
					}
					return
				}
				rig.checkRefused(name, r, reason)
			}

			step("no legacy cookie", newBrowser(), "", false)
			step("tampered", tampered(b, v.cookie), "bad signature", false)
			step("garbage", garbage(v), "bad signature", false)
			if v.store {
				// Logged out on the legacy app: the document is gone.
				gone := newBrowser()
				rig.login(gone, "carol")
				saved := gone.copyOf(v.legacyNames()...)
				rig.legacyGet(gone, "/logout")
				if rig.legacyDoc(rig.legacyID(saved)) != nil {
					t.Fatal("the legacy logout left the document")
				}
				step("unknown", saved, "unknown session", true)
			}
			// Data the protocol refuses: over the header line cap.
			big := newBrowser()
			rig.legacyGet(big, "/login?user=dave&pad=9000")
			step("over the cap", big, "data refused: session is …", v.store)
			// The clock passes the legacy expiry: koa-session's maxAge
			// (one day) and connect-mongo's ttl (14 days, the fixture's
			// cookie being a browser-session cookie).
			skew(t, 15*24*time.Hour)
			step("expired", b, "expired", v.store)

			if n := sessionDocs(t, rig.gwDB); n != 0 {
				t.Fatalf("%d gateway sessions after refusals, want 0", n)
			}
			if e := rig.logEntries("adopted a legacy session"); len(e) != 0 {
				t.Fatalf("refused cookies were adopted: %v", e)
			}
			rig.checkLogClean(b.cookieValues()...)
		})
	}
}

// tampered returns b's legacy cookies with one character of the session
// cookie's value changed (not its signature).
func tampered(b *browser, name string) *browser {
	c := b.copyOf(b.names...)
	v := []byte(c.values[name])
	if v[5] == 'A' {
		v[5] = 'B'
	} else {
		v[5] = 'A'
	}
	c.values[name] = string(v)
	return c
}

// garbage returns a browser with made-up legacy cookies.
func garbage(v adoptVariant) *browser {
	c := newBrowser()
	if v.kind == "koa" {
		c.take(http.Header{"Set-Cookie": {v.cookie + "=eyJ1c2VyIjoibWFsbG9yeSJ9", v.cookie + ".sig=AAAAAAAAAAAAAAAAAAAAAAAAAAA"}})
	} else {
		c.take(http.Header{"Set-Cookie": {v.cookie + "=s%3Aforged-session-id.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}})
	}
	return c
}

// TestAdoptGatewaySessionWins: a request with a live gateway session and a
// valid legacy cookie (another user's) is served the gateway session, and
// the legacy cookie is expired; nothing is adopted, so that legacy
// session stays adoptable.
func TestAdoptGatewaySessionWins(t *testing.T) {
	for _, v := range adoptVariants {
		t.Run(v.name, func(t *testing.T) {
			rig := startAdoptRig(t, v, "")
			b := newBrowser()
			alice := rig.login(b, "alice")
			handle := rig.get(b, "/").meta["id"]

			// The same browser logs in as bob on the legacy app (an old
			// tab): it now holds both kinds of cookie.
			bob := rig.login(b, "bob")
			bobs := b.copyOf(v.legacyNames()...)
			if len(b.names) != 1+len(v.legacyNames()) {
				t.Fatalf("the browser holds %d cookies, want the gateway's and the legacy ones", len(b.names))
			}
			r := rig.get(b, "/")
			if r.session != string(alice) || r.meta["id"] != handle || r.meta["adopted"] != nil {
				t.Fatalf("with both cookies: session %s meta %v, want the gateway session", r.session, r.meta)
			}
			rig.checkLegacyExpired("gateway session wins", r.setCookies)
			if len(b.names) != 1 || b.values[DefaultCookieName] == "" {
				t.Fatalf("the browser holds %d cookies, want only the gateway's", len(b.names))
			}
			if n := sessionDocs(t, rig.gwDB); n != 1 {
				t.Fatalf("%d gateway sessions, want 1", n)
			}
			if e := rig.logEntries("adopted a legacy session"); len(e) != 1 {
				t.Fatalf("%d adoptions logged, want 1", len(e))
			}
			if v.store {
				if doc := rig.legacyDoc(rig.legacyID(bobs)); doc == nil || doc.Lookup("adopted").Type != 0 {
					t.Fatal("bob's legacy document was claimed or deleted")
				}
			}
			// Nothing was adopted: bob's legacy cookies alone still are.
			r = rig.get(bobs, "/")
			rig.checkAdopted(r, bob)
			if r.meta["id"] == handle {
				t.Fatal("bob was adopted into alice's session")
			}
		})
	}
}

// TestAdoptBurst: 10 concurrent requests with one legacy cookie give
// exactly one gateway session: one response sets the gateway cookie (and
// expires the legacy ones), and all 10 upstream requests see the data.
func TestAdoptBurst(t *testing.T) {
	const burst = 10
	for _, v := range adoptVariants {
		t.Run(v.name, func(t *testing.T) {
			rig := startAdoptRig(t, v, "")
			b := newBrowser()
			want := rig.login(b, "alice")
			replies := make([]adoptReply, burst)
			errs := make([]error, burst)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range burst {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					replies[i], errs[i] = rig.send(b, "/")
				}()
			}
			close(start)
			wg.Wait()
			setters, handles := 0, map[any]int{}
			for i, r := range replies {
				if errs[i] != nil || r.status != http.StatusOK {
					t.Fatalf("request %d: status %d, %v", i, r.status, errs[i])
				}
				if r.session != string(want) || r.meta["adopted"] != v.kind || r.cookie != "theme=dark" {
					t.Errorf("request %d: session %s meta %v Cookie %q", i, r.session, r.meta, r.cookie)
				}
				handles[r.meta["id"]]++
				switch len(gatewayCookies(r.setCookies)) {
				case 0:
					if len(r.setCookies) != 0 {
						t.Errorf("request %d joined but sets %q", i, r.setCookies)
					}
				case 1:
					setters++
					rig.checkLegacyExpired(fmt.Sprintf("request %d", i), r.setCookies)
				default:
					t.Errorf("request %d sets the gateway cookie twice", i)
				}
			}
			if setters != 1 {
				t.Fatalf("%d responses set the gateway cookie, want exactly 1", setters)
			}
			if len(handles) != 1 {
				t.Fatalf("the burst saw %d sessions, want 1: %v", len(handles), handles)
			}
			if n := sessionDocs(t, rig.gwDB); n != 1 {
				t.Fatalf("%d gateway sessions after the burst, want 1", n)
			}
			if e := rig.logEntries("adopted a legacy session"); len(e) != 1 {
				t.Fatalf("%d adoptions logged, want 1", len(e))
			}
		})
	}
}

// TestAdoptCrossOrigin: an unsafe cross-origin request carrying a valid
// legacy cookie is not adopted (the gateway's cross-origin protection
// covers legacy cookies too): it goes on without a session, as a request
// without cookies would (so a form_post login callback still works), no
// cookie is set or expired, the legacy session is not claimed, and the
// next same-origin request adopts it.
func TestAdoptCrossOrigin(t *testing.T) {
	for _, v := range adoptVariants {
		t.Run(v.name, func(t *testing.T) {
			rig := startAdoptRig(t, v, "")
			b := newBrowser()
			want := rig.login(b, "alice")
			req, _ := http.NewRequest(http.MethodPost, rig.base+"/transfer", strings.NewReader("amount=1"))
			req.Header.Set("Cookie", b.header())
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			res, err := rig.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var rep struct{ Session string }
			_ = json.Unmarshal(body, &rep)
			if res.StatusCode != http.StatusOK || rep.Session != "{}" {
				t.Fatalf("cross-origin POST: status %d, upstream session of %d bytes; want 200 without a session", res.StatusCode, len(rep.Session))
			}
			if sc := res.Header["Set-Cookie"]; len(sc) != 0 {
				t.Fatalf("a cross-origin POST set cookies: %q", sc)
			}
			if n := sessionDocs(t, rig.gwDB); n != 0 {
				t.Fatalf("%d gateway sessions after a cross-origin POST, want 0", n)
			}
			if v.store {
				if doc := rig.legacyDoc(rig.legacyID(b)); doc == nil || doc.Lookup("adopted").Type != 0 {
					t.Fatal("a cross-origin POST claimed the legacy document")
				}
			}
			if e := rig.logEntries("legacy session not adopted"); len(e) != 1 || e[0]["reason"] != "cross-origin request" {
				t.Fatalf("log lines for the cross-origin POST: %v", e)
			}
			r := rig.get(b, "/")
			rig.checkAdopted(r, want)
		})
	}
}

// TestAdoptJunkCookies is issue 17 item 5 through Caddy: a flood of junk
// legacy cookies (8 values planted next to the real one) no longer blocks
// adoption when the browser sends the real, older cookie first, and a
// refusal for too many or ambiguous legacy cookies never expires the
// victim's real legacy cookie.
func TestAdoptJunkCookies(t *testing.T) {
	for _, v := range adoptVariants {
		t.Run(v.name, func(t *testing.T) {
			rig := startAdoptRig(t, v, "")
			var junk []string
			for i := range 8 {
				if v.kind == "koa" {
					junk = append(junk, fmt.Sprintf("%s=eyJqdW5rIjoke%d", v.cookie, i), v.cookie+".sig=AAAAAAAAAAAAAAAAAAAAAAAAAAA")
				} else {
					junk = append(junk, fmt.Sprintf("%s=s%%3Ajunk%d.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", v.cookie, i))
				}
			}
			junkHeader := strings.Join(junk, "; ")

			// Junk first: the real cookie is past the cap. Refused, and
			// nothing of the legacy cookies is expired.
			victim := newBrowser()
			rig.login(victim, "victim")
			r, err := rig.sendCookies(junkHeader+"; "+victim.header(), "/")
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusOK || r.session != "{}" {
				t.Fatalf("junk first: status %d, session %s; want no session", r.status, r.session)
			}
			for _, sc := range r.setCookies {
				if strings.Contains(sc, "Max-Age=0") {
					t.Errorf("a too-many refusal expires a cookie: %q", sc)
				}
			}
			if e := rig.logEntries("legacy session not adopted"); len(e) == 0 || e[len(e)-1]["reason"] != "too many legacy cookies" {
				t.Fatalf("junk first: log %v, want a too-many refusal", e)
			}

			// The real cookie first (as a browser sends the older of two
			// cookies with the same path): adopted despite 8 junk after it.
			owner := newBrowser()
			want := rig.login(owner, "alice")
			r, err = rig.sendCookies(owner.header()+"; "+junkHeader, "/")
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusOK || r.meta["adopted"] != v.kind {
				t.Fatalf("real cookie first: status %d, meta %v; want adopted", r.status, r.meta)
			}
			rig.checkAdopted(r, want)
		})
	}
}

// adoptWrites is caddy_session_writes_total{op="adopt"} as it stands.
func adoptWrites() float64 {
	var m dto.Metric
	if c := collectors.hot.writes[writeAdopt]; c != nil {
		_ = c.Write(&m)
	}
	return m.GetCounter().GetValue()
}
