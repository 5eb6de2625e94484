package caddymodule

// The read cache of the MongoDB store (store mongodb { cache }), through
// real Caddy: two sites of this process share one cache, a second Caddy
// process has its own, and all of them share one database on FerretDB,
// which has no change streams (ttl mode). Stream mode is tested against
// the scripted wire server in store/mongostore (watch_test.go).

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// cacheTTL is the cache's staleness bound in these tests: long enough that
// no step outlives it on a loaded machine; the steps that need it passed
// move this process's clock (skew) instead of waiting.
const cacheTTL = 10 * time.Second

// cacheMetric sums the values of the metric name (with all label pairs of
// want) in this process's running config; a histogram counts its samples.
func cacheMetric(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	ctx := caddy.ActiveContext()
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(want); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == want[i] && l.GetValue() == want[i+1])
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestMongoCache walks the cache's guarantees: hits cost no find; the
// instance's own writes are seen at once, through every site that shares
// the cache; another instance's writes are seen within the ttl; a stale
// cached version costs a conflict, never a lost write; and a session
// destroyed elsewhere is never revived by a write through a stale entry.
func TestMongoCache(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	store := fmt.Sprintf("\t\tstore mongodb {\n\t\t\turi %s\n\t\t\tdatabase %s\n\t\t\tcache %s {\n\t\t\t\tsize 1000\n\t\t\t}\n\t\t}\n", uri, db, cacheTTL)
	site := func(port int) string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n\tsession {\n%s\t\tsecret %s\n\t}\n\treverse_proxy %s\n}\n",
			port, store, testSecret, strings.TrimPrefix(up.URL, "http://"))
	}
	a1 := startGateway(t, globalOptions(t), fmt.Sprintf("\tsession {\n%s\t\tsecret %s\n\t}\n", store, testSecret), up)
	// A second site on the same Caddy: same store settings, so the same
	// cache. Reloading with both sites keeps a1's pool and cache.
	portA2, portB := freePort(t), freePort(t)
	portA1 := strings.TrimPrefix(a1.base, "http://127.0.0.1:")
	var p1 int
	fmt.Sscan(portA1, &p1)
	if err := loadCaddyfile(t, globalOptions(t)+site(p1)+site(portA2)); err != nil {
		t.Fatal(err)
	}
	a2 := &gateway{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", portA2), client: a1.client, jar: a1.jar}
	baseB := fmt.Sprintf("http://127.0.0.1:%d", portB)
	startCaddyProcess(t, globalOptions(t)+site(portB), baseB)
	b := &gateway{t: t, base: baseB, client: a1.client, jar: a1.jar}
	finds := func() float64 { return cacheMetric(t, "caddy_session_store_duration_seconds", "op", "find") }
	hits := func() float64 { return cacheMetric(t, "caddy_session_cache_hits_total") }

	a1.step(t, "hits cost no find", func(t *testing.T, g *gateway) {
		g.get("/?patch=" + url.QueryEscape(`{"user":"ann","n":1}`))
		g.get("/") // fills the cache (the write dropped the entry)
		f0, h0 := finds(), hits()
		for range 5 {
			if r := g.get("/"); r.Session["n"] != float64(1) {
				t.Fatalf("session = %v", r.Session)
			}
		}
		if f, h := finds()-f0, hits()-h0; f != 0 || h != 5 {
			t.Fatalf("5 reads of a cached session: %v finds, %v hits; want 0 and 5", f, h)
		}
	})
	a1.step(t, "own writes are seen at once through every site sharing the cache", func(t *testing.T, g *gateway) {
		a2.get("/") // a2's reads hit the same cache
		g.get("/?patch=" + url.QueryEscape(`{"n":2}`))
		if r := a2.get("/"); r.Session["n"] != float64(2) {
			t.Fatalf("a2 after a1's write sees %v", r.Session)
		}
	})
	a1.step(t, "another instance's write is seen within the ttl", func(t *testing.T, g *gateway) {
		g.get("/") // cached: n 2
		b.get("/?patch=" + url.QueryEscape(`{"n":3}`))
		if r := g.get("/"); r.Session["n"] != float64(2) {
			t.Fatalf("within the ttl the cached copy (n 2) is served; got %v", r.Session)
		}
		skew(t, cacheTTL)
		if r := g.get("/"); r.Session["n"] != float64(3) {
			t.Fatalf("past the ttl a1 still sees %v", r.Session)
		}
	})
	a1.step(t, "a stale cached version costs a conflict, never a lost write", func(t *testing.T, g *gateway) {
		g.get("/")                                     // cached: n 3
		b.get("/?patch=" + url.QueryEscape(`{"b":1}`)) // b writes behind a1's cache
		g.get("/?patch=" + url.QueryEscape(`{"a":1}`)) // from the stale version: conflict, re-read, re-apply
		doc := sessionDoc(t, db, g)
		if fmt.Sprint(doc) != "map[a:1 b:1 n:3 user:ann]" {
			t.Fatalf("stored data after both writes = %v", doc)
		}
	})
	a1.step(t, "a session destroyed elsewhere is not revived through a stale entry", func(t *testing.T, g *gateway) {
		cookie := g.sessionCookie("session")
		g.get("/") // cached on a1
		b.get("/?control=destroy")
		g.setCookie("session", cookie)
		g.get("/?patch=" + url.QueryEscape(`{"revived":true}`)) // a stale hit, then a refused write
		skew(t, cacheTTL)
		g.setCookie("session", cookie)
		if r := g.get("/"); r.RawSession != "{}" || !r.Meta.New {
			t.Fatalf("the destroyed session came back: %+v", r)
		}
		if n := sessionDocs(t, db); n != 0 {
			t.Fatalf("%d live session documents after the destroy, want 0", n)
		}
	})
}

// sessionDoc reads the stored data of g's session straight from MongoDB.
func sessionDoc(t *testing.T, db string, g *gateway) map[string]any {
	t.Helper()
	var doc struct {
		Data map[string]any `bson:"data"`
	}
	filter := bson.D{{Key: "rot", Value: bson.D{{Key: "$exists", Value: false}}}}
	if err := mongotest.Client(t).Database(db).Collection("sessions").FindOne(t.Context(), filter).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for k, v := range doc.Data {
		out[k] = fmt.Sprint(v)
	}
	return out
}
