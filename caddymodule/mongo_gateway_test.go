package caddymodule

// Integration tests through real Caddy with the MongoDB store (issue 3):
// the protocol walk, two Caddy processes sharing one database, a config
// reload, MongoDB stopped mid-run, and round trips counted with the
// driver's command monitor. MongoDB is FerretDB from internal/mongotest
// unless MONGODB_URI is set.

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/internal/wiretest"
)

// Environment of the re-executed test binary that plays a second Caddy.
const (
	envTestCaddy     = "CADDY_SESSION_TEST_CADDY"
	envTestCaddyfile = "CADDY_SESSION_TEST_CADDYFILE"
)

// maybeRunTestCaddy turns this test binary into `caddy run` when
// TestMain finds envTestCaddy set; it never returns then.
func maybeRunTestCaddy() {
	if os.Getenv(envTestCaddy) != "1" {
		return
	}
	os.Args = []string{"caddy", "run", "--config", os.Getenv(envTestCaddyfile), "--adapter", "caddyfile"}
	caddycmd.Main()
	os.Exit(0)
}

// mongoSessionBody is a session directive with the MongoDB store. extra
// goes into the store block (timeout, ...), more into the session block.
func mongoSessionBody(uri, db, extra, more string) string {
	return fmt.Sprintf("\tsession {\n\t\tstore mongodb {\n\t\t\turi %s\n\t\t\tdatabase %s\n%s\t\t}\n\t\tsecret %s\n%s\t}\n",
		uri, db, extra, testSecret, more)
}

// siteCaddyfile is what startGateway writes, for a given port, so a test
// can reload or re-create the same site.
func siteCaddyfile(options string, port int, body string, up *httptest.Server) string {
	return fmt.Sprintf("%s\nhttp://127.0.0.1:%d {\n%s\n\treverse_proxy %s\n}\n", options, port, body, strings.TrimPrefix(up.URL, "http://"))
}

// visitor is another browser on the same gateway: its own cookie jar.
func (g *gateway) visitor() *gateway {
	jar, _ := cookiejar.New(nil)
	c := *g.client
	c.Jar = jar
	return &gateway{t: g.t, base: g.base, jar: jar, client: &c}
}

// sessionDocs counts the session documents in db.
// sessionDocs counts the session documents, tombstones left by a
// regenerate aside.
func sessionDocs(t *testing.T, db string) int64 {
	t.Helper()
	n, err := mongotest.Client(t).Database(db).Collection("sessions").CountDocuments(t.Context(), bson.D{{Key: "rot", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMongoGatewayProtocolWalk(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	g := startGateway(t, globalOptions(t), mongoSessionBody(uri, db, "", ""), up)
	var before, after string

	g.step(t, "new visitor without data gets no cookie and no document", func(t *testing.T, g *gateway) {
		if r := g.get("/"); r.Status != 200 || r.RawSession != "{}" || !r.Meta.New || r.Header.Get("Set-Cookie") != "" {
			t.Fatalf("new visitor: %+v", r)
		}
		if n := sessionDocs(t, db); n != 0 {
			t.Fatalf("%d documents before any write", n)
		}
	})

	g.step(t, "create via patch stores the data as a sub-document", func(t *testing.T, g *gateway) {
		r := g.get("/?patch=" + url.QueryEscape(`{"user":{"name":"Zoë"},"n":1}`))
		if r.Status != 200 || !strings.Contains(r.Header.Get("Set-Cookie"), "session=") {
			t.Fatalf("create: status %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
		}
		if n := sessionDocs(t, db); n != 1 {
			t.Fatalf("%d documents after create, want 1", n)
		}
		doc, err := mongotest.Client(t).Database(db).Collection("sessions").FindOne(t.Context(), bson.D{}).Raw()
		if err != nil {
			t.Fatal(err)
		}
		if doc.Lookup("data").Type != bson.TypeEmbeddedDocument || doc.Lookup("data", "user", "name").StringValue() != "Zoë" {
			t.Fatalf("stored document %v: data is not a sub-document holding the session", doc)
		}
	})

	g.step(t, "read back", func(t *testing.T, g *gateway) {
		r := g.get("/")
		if r.Meta.New || len(r.Meta.ID) != 12 || r.RawSession != `{"n":1,"user":{"name":"Zo\u00eb"}}` {
			t.Fatalf("read back: meta %+v session %s", r.Meta, r.RawSession)
		}
		if r.Header.Get("Set-Cookie") != "" {
			t.Fatal("an unchanged session must not re-send the cookie")
		}
	})

	g.step(t, "patch and update", func(t *testing.T, g *gateway) { walkPatchAndUpdate(t, g) })

	g.step(t, "regenerate leaves one session and a tombstone", func(t *testing.T, g *gateway) {
		before = g.sessionCookie("session")
		g.get("/?control=regenerate")
		after = g.sessionCookie("session")
		if after == before || after == "" {
			t.Fatal("regenerate must set a new cookie")
		}
		if r := g.get("/"); fmt.Sprint(r.Session) != "map[cart:[1 2]]" {
			t.Fatalf("regenerate must keep the data: %v", r.Session)
		}
		if n := sessionDocs(t, db); n != 1 {
			t.Fatalf("%d sessions after regenerate, want 1 (the old one retired)", n)
		}
	})

	g.step(t, "the old cookie is dead and its writes are dropped without a cookie", func(t *testing.T, g *gateway) {
		g.setCookie("session", before)
		if r := g.get("/"); r.RawSession != "{}" || !r.Meta.New {
			t.Fatalf("old cookie still works after regenerate: %v", r.Session)
		}
		if r := g.get("/?patch=" + url.QueryEscape(`{"zombie":1}`)); r.Header.Get("Set-Cookie") != "" {
			t.Fatalf("a write through a rotated cookie sent a cookie: %q", r.Header.Get("Set-Cookie"))
		}
		g.setCookie("session", after)
	})

	g.step(t, "destroy: nothing left, nothing comes back", func(t *testing.T, g *gateway) {
		r := g.get("/?control=destroy")
		if sc := r.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
			t.Fatalf("destroy must expire the cookie: %q", sc)
		}
		for _, c := range []string{after, before} {
			g.setCookie("session", c)
			if r := g.get("/"); r.RawSession != "{}" {
				t.Fatal("a destroyed or regenerated-away session is readable")
			}
		}
		if n := sessionDocs(t, db); n != 0 {
			t.Fatalf("%d sessions after destroy, want 0", n)
		}
	})
}

func TestMongoGatewayConcurrentUpdatesOfDifferentKeysBothKept(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	g := startGateway(t, globalOptions(t), mongoSessionBody(uri, db, "", ""), up)
	g.get("/?patch=" + url.QueryEscape(`{"base":1}`))
	for round := range 5 {
		name := fmt.Sprintf("mongo-meet-%s-%d", db, round)
		var wg sync.WaitGroup
		for _, k := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("%s%d", k, round)
				req, _ := http.NewRequest(http.MethodGet, g.base+"/?block="+name+"&addkey="+key, nil)
				resp, err := g.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("round %d %s: status %d", round, k, resp.StatusCode)
				}
			}()
		}
		wg.Wait()
		r := g.get("/")
		for _, k := range []string{"a", "b"} {
			if r.Session[fmt.Sprintf("%s%d", k, round)] != true {
				t.Fatalf("round %d: lost update of %s: %v", round, k, r.Session)
			}
		}
		if r.Session["base"] != float64(1) {
			t.Fatalf("round %d: base lost: %v", round, r.Session)
		}
	}
}

// startCaddyProcess runs this test binary as a second Caddy (`caddy run`
// with the Caddyfile cf) and waits until it answers on base.
func startCaddyProcess(t *testing.T, cf, base string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		envTestCaddy+"=1",
		envTestCaddyfile+"="+path,
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the second Caddy: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("second Caddy's output:\n%s", out)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-done:
			out, _ := os.ReadFile(logFile.Name())
			t.Fatalf("second Caddy exited: %v\n%s", err, out)
		default:
		}
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("second Caddy does not answer on %s: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMongoGatewayTwoProcesses: a Caddy in this process (A) and a Caddy
// in a second process (B), both pointed at one database with the same
// secret, see each other's writes at once.
func TestMongoGatewayTwoProcesses(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	body := mongoSessionBody(uri, db, "", "")
	a := startGateway(t, globalOptions(t), body, up)
	portB := freePort(t)
	baseB := fmt.Sprintf("http://127.0.0.1:%d", portB)
	startCaddyProcess(t, siteCaddyfile(globalOptions(t), portB, body, up), baseB)
	// Cookies are not port-bound: one jar is one browser talking to both.
	b := &gateway{t: t, base: baseB, client: a.client, jar: a.jar}

	// Created on A, read on B.
	a.get("/?patch=" + url.QueryEscape(`{"user":"ann","n":1}`))
	cookie := a.sessionCookie("session")
	if cookie == "" {
		t.Fatal("A set no cookie")
	}
	r := b.get("/")
	if r.Status != 200 || r.Meta.New || fmt.Sprint(r.Session) != "map[n:1 user:ann]" {
		t.Fatalf("B does not see A's session: %+v", r)
	}
	// Written on B, read on A at once; and back again.
	for i := 2; i <= 6; i++ {
		writer, reader := b, a
		if i%2 == 1 {
			writer, reader = a, b
		}
		writer.get(fmt.Sprintf("/?patch=%s", url.QueryEscape(fmt.Sprintf(`{"n":%d}`, i))))
		if r := reader.get("/"); r.Session["n"] != float64(i) || r.Session["user"] != "ann" {
			t.Fatalf("step %d: reader sees %v", i, r.Session)
		}
	}
	// Regenerate on B kills the old cookie on A too.
	b.get("/?control=regenerate")
	fresh := b.sessionCookie("session")
	if fresh == cookie || fresh == "" {
		t.Fatal("regenerate on B set no new cookie")
	}
	if r := a.get("/"); r.Session["n"] != float64(6) {
		t.Fatalf("A does not see B's regenerated session: %v", r.Session)
	}
	a.setCookie("session", cookie)
	if r := a.get("/"); r.RawSession != "{}" {
		t.Fatalf("old cookie still works on A after regenerate on B: %v", r.Session)
	}
	// Destroy on A is seen on B.
	a.setCookie("session", fresh)
	a.get("/?control=destroy")
	b.setCookie("session", fresh)
	if r := b.get("/"); r.RawSession != "{}" {
		t.Fatalf("B still sees the session A destroyed: %v", r.Session)
	}
}

// TestMongoGatewayReloadKeepsSessionsAndPool: reloading a changed but
// compatible config keeps serving the existing sessions through the same
// pooled client: through a wire proxy, no new connection is opened (a
// new client would open its monitoring connection and a pool of its own).
func TestMongoGatewayReloadKeepsSessionsAndPool(t *testing.T) {
	_, db := mongotest.Database(t)
	proxy := wiretest.NewProxy(t, mongotest.URI(t))
	uri := proxy.URI()
	up := upstream(t)
	extra := ""
	opts := globalOptions(t)
	g := startGateway(t, opts, mongoSessionBody(uri, db, extra, ""), up)
	waitMongoReady(t)
	g.get("/?patch=" + url.QueryEscape(`{"user":"ann"}`))
	v := g.visitor()
	v.get("/?patch=" + url.QueryEscape(`{"user":"bob"}`))
	conns := proxy.Connections()

	port := strings.TrimPrefix(g.base, "http://127.0.0.1:")
	var p int
	fmt.Sscan(port, &p)
	for i, more := range []string{"\t\tidle_timeout 2h\n", "\t\tidle_timeout 3h\n\t\ttouch_interval 2m\n"} {
		cf := siteCaddyfile(opts, p, mongoSessionBody(uri, db, extra, more)+fmt.Sprintf("\theader X-Config v%d\n", i+2), up)
		if err := loadCaddyfile(t, cf); err != nil {
			t.Fatalf("reload %d: %v\n%s", i+1, err, cf)
		}
		waitMongoReady(t)
		// The old server closes its idle keep-alive connections when it
		// stops: a request sent on one as it closes gets EOF.
		g.client.CloseIdleConnections()
		v.client.CloseIdleConnections()
		r := g.get("/")
		if r.Header.Get("X-Config") != fmt.Sprintf("v%d", i+2) {
			t.Fatalf("reload %d not in effect: X-Config %q", i+1, r.Header.Get("X-Config"))
		}
		if r.Status != 200 || r.Meta.New || r.Session["user"] != "ann" || (i > 0 && r.Session["reload"] != float64(i)) {
			t.Fatalf("reload %d: session lost: %+v", i+1, r)
		}
		if r := v.get("/"); fmt.Sprint(r.Session) != "map[user:bob]" {
			t.Fatalf("reload %d: second session lost: %v", i+1, r.Session)
		}
		// Writes keep working after the reload.
		g.get("/?patch=" + url.QueryEscape(fmt.Sprintf(`{"reload":%d}`, i+1)))
		if r := g.get("/"); r.Session["reload"] != float64(i+1) {
			t.Fatalf("reload %d: write lost: %v", i+1, r.Session)
		}
		if n := proxy.Connections(); n != conns {
			t.Fatalf("reload %d opened %d new connections to MongoDB: another client pool", i+1, n-conns)
		}
	}
}

// TestMongoGatewayStoreDown: MongoDB stopped mid-run gives fast 503s with
// Retry-After to requests that need it, requests that do not still pass,
// and once it is back every old session is there, without a Caddy restart.
func TestMongoGatewayStoreDown(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	opts := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output file %s
		format json
	}
}
`, t.TempDir(), logPath)
	g := startGateway(t, opts, mongoSessionBody(uri, db, "\t\t\ttimeout 1s\n", ""), up)

	visitors := []*gateway{g, g.visitor(), g.visitor()}
	for i, v := range visitors {
		v.get("/?patch=" + url.QueryEscape(fmt.Sprintf(`{"i":%d}`, i)))
		if v.sessionCookie("session") == "" {
			t.Fatalf("visitor %d got no cookie", i)
		}
	}

	mongotest.Stop(t)

	for i, v := range visitors {
		for _, path := range []string{"/", "/?patch=" + url.QueryEscape(`{"half":true}`)} {
			start := time.Now()
			r := v.get(path)
			took := time.Since(start)
			t.Logf("visitor %d %s with MongoDB down: %d in %v", i, path, r.Status, took.Round(time.Millisecond))
			if r.Status != http.StatusServiceUnavailable {
				t.Fatalf("visitor %d %s with MongoDB down: status %d, want 503 (%s)", i, path, r.Status, r.Body)
			}
			// Both requests fail at the load, before the upstream: the
			// documented value, once (protocol.md).
			if got := r.Header.Values("Retry-After"); !slices.Equal(got, []string{"5"}) {
				t.Fatalf("visitor %d %s: 503 with Retry-After %q, want exactly 5", i, path, got)
			}
			if took > 5*time.Second {
				t.Fatalf("visitor %d %s: 503 after %v, want about the 1s timeout", i, path, took)
			}
			if r.Header.Get("Set-Cookie") != "" {
				t.Fatalf("visitor %d: a failed request touched the cookie", i)
			}
		}
	}
	// No cookie and no write: no store needed.
	if r := g.visitor().get("/"); r.Status != 200 || r.RawSession != "{}" {
		t.Fatalf("cookieless request with MongoDB down: status %d %s", r.Status, r.Body)
	}

	logText, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), "session store unavailable") {
		t.Fatalf("log does not say the store is unavailable:\n%s", logText)
	}
	for _, v := range visitors {
		if c := v.sessionCookie("session"); strings.Contains(string(logText), c[:20]) {
			t.Fatal("the log holds a session token")
		}
	}
	if strings.Contains(string(logText), uri) {
		t.Fatal("the log holds the MongoDB URI")
	}

	mongotest.Restart(t)

	// Every old session is back, unchanged (the refused writes were not
	// half-applied), without restarting Caddy. The driver may need a
	// moment to find the server again.
	for i, v := range visitors {
		deadline := time.Now().Add(20 * time.Second)
		for attempt := 1; ; attempt++ {
			r := v.get("/")
			if r.Status == 200 {
				if attempt > 1 {
					t.Logf("visitor %d: served after %d attempts once MongoDB was back", i, attempt)
				}
				if fmt.Sprint(r.Session) != fmt.Sprintf("map[i:%d]", i) || r.Meta.New {
					t.Fatalf("visitor %d after restart: %v", i, r.Session)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("visitor %d: still %d after MongoDB came back", i, r.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// And writes work again.
		v.get("/?patch=" + url.QueryEscape(`{"back":true}`))
		if r := v.get("/"); r.Session["back"] != true {
			t.Fatalf("visitor %d: write after restart lost: %v", i, r.Session)
		}
	}
}

// sessionCommands records the session-collection commands (find, update,
// insert, delete by _id) a client sends to one database; everything else
// (hello, ping, endSessions, createIndexes, expiry sweeps) is ignored.
type sessionCommands struct {
	db    string
	mu    sync.Mutex
	names []string
}

// observe is the proxy's observer.
func (c *sessionCommands) observe(cmd wiretest.Command) {
	if cmd.Database != c.db {
		return
	}
	switch cmd.Name {
	case "find", "update", "insert", "delete":
	default:
		return
	}
	if coll, _ := cmd.Body.Lookup(cmd.Name).StringValueOK(); coll != "sessions" {
		return
	}
	if cmd.Name == "delete" {
		// A sweep deletes by expiry; a session delete names its _id.
		if _, err := firstDocument(cmd, "deletes").LookupErr("q", "_id"); err != nil {
			return
		}
	}
	c.mu.Lock()
	c.names = append(c.names, cmd.Name)
	c.mu.Unlock()
}

// firstDocument is the first document of cmd's array field (an OP_MSG
// document sequence, or an array in the body); nil when there is none.
func firstDocument(cmd wiretest.Command, field string) bson.Raw {
	if docs := cmd.Documents[field]; len(docs) > 0 {
		return docs[0]
	}
	doc, _ := cmd.Body.Lookup(field, "0").DocumentOK()
	return doc
}

// countCommands starts a proxy to the test server whose session commands
// on db the returned counter records; give the config its URI.
func countCommands(t *testing.T, db string) (*sessionCommands, string) {
	counter := &sessionCommands{db: db}
	proxy := wiretest.NewProxy(t, mongotest.URI(t))
	proxy.Observe(counter.observe)
	return counter, proxy.URI()
}

func (c *sessionCommands) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.names
	c.names = nil
	return out
}

// TestMongoGatewayRoundTrips counts, through a wire proxy, what each kind
// of request through Caddy costs in MongoDB commands.
func TestMongoGatewayRoundTrips(t *testing.T) {
	_, db := mongotest.Database(t)
	up := upstream(t)
	counter, uri := countCommands(t, db)
	g := startGateway(t, globalOptions(t), mongoSessionBody(uri, db, "", "\t\tsubject user\n"), up)

	step := func(name string, req func() reply, want ...string) reply {
		t.Helper()
		counter.take()
		r := req()
		if r.Status != 200 {
			t.Fatalf("%s: status %d (%s)", name, r.Status, r.Body)
		}
		if got := counter.take(); !slices.Equal(got, want) {
			t.Errorf("%s: commands %q, want %q", name, got, want)
		}
		return r
	}
	get := func(path string) func() reply { return func() reply { return g.get(path) } }
	withCookie := func(value string) func() reply {
		return func() reply {
			req, _ := http.NewRequest(http.MethodGet, g.base+"/", nil)
			req.Header.Set("Cookie", "session="+value)
			return g.visitor().do(req) // no jar: only this cookie
		}
	}

	step("no cookie", get("/"))
	step("create", get("/?patch="+url.QueryEscape(`{"a":1}`)), "insert")
	good := g.sessionCookie("session")
	r := step("read-only with a valid cookie", get("/"), "find")
	if fmt.Sprint(r.Session) != "map[a:1]" {
		t.Fatalf("read: %v", r.Session)
	}
	step("another read-only request", get("/"), "find")
	step("changing request", get("/?patch="+url.QueryEscape(`{"b":2}`)), "find", "update")
	step("update", get("/?update="+url.QueryEscape(`{"c":3}`)), "find", "update")
	if r := step("read after the change", get("/"), "find"); fmt.Sprint(r.Session) != "map[c:3]" {
		t.Fatalf("after update: %v", r.Session)
	}
	step("an unchanged write", get("/?patch="+url.QueryEscape(`{"c":3}`)), "find")

	// Tamper with the signature's first character (the last one may only
	// carry padding bits): refused before the store.
	sig := strings.IndexByte(good, '.') + 1
	swap := byte('A')
	if good[sig] == 'A' {
		swap = 'B'
	}
	step("forged cookie", withCookie(strings.Repeat("A", 43)+"."+strings.Repeat("B", 43)))
	step("tampered signature", withCookie(good[:sig]+string(swap)+good[sig+1:]))
	step("token without signature", withCookie(good[:sig-1]))
	step("no cookie again", func() reply { return g.visitor().get("/") })
	step("log in (a subject)", get("/?patch="+url.QueryEscape(`{"user":"ann"}`)), "find", "update")
	step("revoke-others: one delete by subject", get("/?control=revoke-others"), "find", "delete")
	loggedOut := g.sessionCookie("session")
	step("destroy (a compare-and-set retirement)", get("/?control=destroy"), "find", "update")
	checkDestroyedTombstone(t, db, loggedOut)
	step("log in again", get("/?patch="+url.QueryEscape(`{"user":"ann"}`)), "insert")
	again := g.sessionCookie("session")
	step("revoke-all: the other sessions by subject, then this one's retirement", get("/?control=revoke-all"), "find", "delete", "update")
	checkDestroyedTombstone(t, db, again)
}

// checkDestroyedTombstone checks what a destroy leaves in MongoDB for the
// session of cookie value (storage.md, Tombstones): a tombstone with
// rot "destroyed", no data and no subject, already expired.
func checkDestroyedTombstone(t *testing.T, db, value string) {
	t.Helper()
	token, _, _ := strings.Cut(value, ".")
	var doc bson.M
	err := mongotest.Client(t).Database(db).Collection("sessions").FindOne(t.Context(), bson.D{{Key: "_id", Value: cookie.Key(token)}}).Decode(&doc)
	if err != nil {
		t.Fatalf("the destroyed session's document: %v", err)
	}
	exp, _ := doc["expires"].(bson.DateTime)
	if doc["rot"] != "destroyed" || doc["data"] != nil || doc["sub"] != nil || exp.Time().After(time.Now()) {
		t.Fatalf("the destroyed session's document: rot %v, data %v, sub %v, expires %v; want a tombstone \"destroyed\", expired",
			doc["rot"], doc["data"] != nil, doc["sub"] != nil, exp.Time())
	}
}
