package faults_test

// The rig: a real Caddy in this process, with the session handler and
// the MongoDB store, whose MongoDB URI points at a toxiproxy in front of
// the FerretDB test server, and a real upstream (faults.Upstream).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/sessiongate/caddy-session" // the session handler and both store modules
	"github.com/sessiongate/caddy-session/internal/faults"
	"github.com/sessiongate/caddy-session/internal/mongotest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// testSecret is a 32-byte signing key for tests.
const testSecret = "0123456789abcdef0123456789abcdef"

// storeTimeout is the MongoDB store's per-operation timeout in every
// scenario: short, so faults show within the CI budget.
const storeTimeout = time.Second

// clients is the load's size: CI-sized, on a 2-core machine.
const clients = 32

type rig struct {
	t       *testing.T
	proxy   *faults.Proxy
	db      string
	port    int
	base    string
	up      *httptest.Server
	logPath string
	tempDir string
}

// newRig starts the proxy, the upstream and Caddy.
func newRig(t *testing.T, onHeader func(*http.Request)) *rig {
	t.Helper()
	uri, db := mongotest.Database(t)
	host := strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/")
	if strings.ContainsAny(host, "/?@,") {
		t.Fatalf("faults: the test server URI is not a plain mongodb://host:port/ (MONGODB_URI with options is not supported here)")
	}
	r := &rig{t: t, proxy: faults.Start(t, host), db: db, tempDir: t.TempDir()}
	r.up = httptest.NewServer(faults.Upstream(onHeader))
	t.Cleanup(r.up.Close)
	r.port = freePort(t)
	r.base = fmt.Sprintf("http://127.0.0.1:%d", r.port)
	r.logPath = filepath.Join(r.tempDir, "caddy.log")
	if err := r.load(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = caddy.Stop()
		if t.Failed() {
			r.dumpLog()
		}
	})
	return r
}

// caddyfile is the rig's config; more goes into the session block and
// site into the site block, so a reload can change the config.
func (r *rig) caddyfile(more, site string) string {
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output file %s
		format json
	}
	servers {
		protocols h1 h2 h2c
	}
}
http://127.0.0.1:%d {
	session {
		store mongodb {
			uri mongodb://%s/
			database %s
			timeout %s
		}
		secret %s
%s	}
%s	reverse_proxy %s
}
`, r.tempDir, r.logPath, r.port, r.proxy.Addr(), r.db, storeTimeout, testSecret, more, site, strings.TrimPrefix(r.up.URL, "http://"))
}

// load (re)loads the rig's Caddyfile with the given change.
func (r *rig) load(change string) error {
	more, site := "", ""
	if change != "" {
		more = "\t\tidle_timeout " + change + "\n"
		site = "\theader X-Config " + change + "\n"
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(r.caddyfile(more, site)), nil)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

// dumpLog shows Caddy's error-level log messages, counted, when a test
// fails.
func (r *rig) dumpLog() {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		var e struct {
			Level, Msg, Error, Op string
			Status                int
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Level != "error" {
			continue
		}
		// Connection names differ per line; keep the message's shape.
		e.Error = connName.ReplaceAllString(e.Error, "…")
		counts[fmt.Sprintf("%s op=%s status=%d: %.300s", e.Msg, e.Op, e.Status, e.Error)]++
	}
	for m, n := range counts {
		r.t.Logf("caddy log, %d×: %s", n, m)
	}
}

var connName = regexp.MustCompile(`connection\([^)]*\)|\d+\.\d+\.\d+\.\d+:\d+`)

// logCount counts lines of Caddy's log holding s.
func (r *rig) logCount(s string) int {
	b, _ := os.ReadFile(r.logPath)
	return strings.Count(string(b), s)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// phase is one step of a scenario: wait, then act.
type phase struct {
	after time.Duration // since the previous phase
	name  string
	act   func()
}

// scenario runs the load and the phases, and returns the load's result
// with the time each phase ran.
func (r *rig) scenario(load *faults.Load, tail time.Duration, phases ...phase) (*faults.Result, map[string]time.Time) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *faults.Result)
	go func() { done <- load.Run(ctx) }()
	at := map[string]time.Time{"start": time.Now()}
	for _, p := range phases {
		time.Sleep(p.after)
		at[p.name] = time.Now()
		p.act()
		r.t.Logf("%s at %v", p.name, at[p.name].Sub(at["start"]).Round(time.Millisecond))
	}
	time.Sleep(tail)
	cancel()
	res := <-done
	at["end"] = time.Now()
	return res, at
}

// newLoad is the scenarios' load against the rig.
func (r *rig) newLoad() *faults.Load {
	return &faults.Load{Base: r.base, Clients: clients, DestroyAfter: 5}
}

// verify reads every session back once the faults are over and checks
// that no acknowledged write was lost and no destroyed session lives.
func (r *rig) verify(res *faults.Result) faults.Totals {
	r.t.Helper()
	tot := faults.Total(res.Verify(time.Now().Add(20 * time.Second)))
	r.t.Logf("verdict: %v", tot)
	if tot.Unreadable > 0 {
		r.t.Errorf("sessions unreadable after the fault: %v", tot.Errors)
	}
	if tot.MaxLost > 0 || tot.LostSessions > 0 {
		r.t.Errorf("acknowledged writes lost: %d on %d of %d clients (%d still missing at the end; %d reads saw a counter below the acknowledged one); %d reads found the session gone",
			tot.MaxLost, tot.LostClients, tot.Clients, tot.Lost, tot.Stale, tot.LostSessions)
	}
	if tot.Phantom > 0 {
		r.t.Errorf("%d clients read a counter they never wrote", tot.Phantom)
	}
	if tot.Revived > 0 {
		r.t.Errorf("%d destroyed sessions are alive again", tot.Revived)
	}
	return tot
}

// noBadAnswers checks that every answer in s is 2xx or a 503 with
// Retry-After.
func noBadAnswers(t *testing.T, what string, s faults.Summary) {
	t.Helper()
	if s.Other > 0 {
		t.Errorf("%s: %d answers neither 2xx nor 503: %v", what, s.Other, s.Statuses)
	}
	if s.NoRetryAfter > 0 {
		t.Errorf("%s: %d 503s without Retry-After", what, s.NoRetryAfter)
	}
	if s.NoAnswer > 0 {
		t.Errorf("%s: %d requests got no answer: %q", what, s.NoAnswer, s.Errors)
	}
}

// oneClient is a single browser for deterministic scenarios.
type oneClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (r *rig) client() *oneClient {
	jar, _ := cookiejar.New(nil)
	return &oneClient{t: r.t, base: r.base, hc: &http.Client{Jar: jar, Timeout: 15 * time.Second}}
}

// write patches the counter to n and returns the status.
func (c *oneClient) write(n int) int {
	resp, err := c.hc.Post(fmt.Sprintf("%s/?n=%d", c.base, n), "", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// read returns the session's counter.
func (c *oneClient) read() int {
	resp, err := c.hc.Get(c.base + "/")
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	n, _, ok := faults.ParseAnswer(b)
	if resp.StatusCode != 200 || !ok {
		c.t.Fatalf("read: %d %q", resp.StatusCode, b)
	}
	return int(n)
}
