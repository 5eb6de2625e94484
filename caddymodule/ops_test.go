package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
)

// Helpers shared by the metrics, admin API and command tests.

// opsOptions are global options like globalOptions, with the admin
// endpoint on (on a free port) so tests can read /metrics and call the
// session admin API.
func opsOptions(t testing.TB) (options, admin string) {
	port := freePort(t)
	admin = fmt.Sprintf("localhost:%d", port)
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	storage file_system %s
}
`, admin, t.TempDir()), admin
}

// adminDo sends a request to the admin endpoint and returns the status
// and body.
func adminDo(t testing.TB, admin, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // a reload replaces the admin server: no connection reuse
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrape reads Caddy's /metrics from the admin endpoint into a map from
// series (name plus labels sorted by name, e.g.
// `caddy_session_writes_total{op="create"}`) to value.
func scrape(t testing.TB, admin string) map[string]float64 {
	t.Helper()
	status, body := adminDo(t, admin, http.MethodGet, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[normalizeSeries(line[:i])] = v
	}
	return out
}

// normalizeSeries sorts the labels of a series name.
func normalizeSeries(s string) string {
	name, labels, ok := strings.Cut(s, "{")
	if !ok {
		return s
	}
	parts := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// series names a series with labels given as name, value pairs.
func series(name string, labels ...string) string {
	var parts []string
	for i := 0; i+1 < len(labels); i += 2 {
		parts = append(parts, labels[i]+`="`+labels[i+1]+`"`)
	}
	return normalizeSeries(name + "{" + strings.Join(parts, ",") + "}")
}

// plainTestStore is a real memory store seen only through store.Store,
// so it has no subject index under any version of the store contract
// (http.session.stores.plain).
type plainTestStore struct {
	store.Store
	mem *memstore.Store
}

func init() { caddy.RegisterModule(new(plainTestStore)) }

func (*plainTestStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.session.stores.plain", New: func() caddy.Module { return new(plainTestStore) }}
}

func (s *plainTestStore) Provision(caddy.Context) error {
	s.mem = memstore.New()
	s.Store = s.mem
	return nil
}

func (s *plainTestStore) Cleanup() error { return s.mem.Close() }

// UnmarshalCaddyfile accepts `store plain`.
func (*plainTestStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

// plainSession uses a store without a subject index.
const plainSession = "\tsession {\n\t\tsecret " + testSecret + "\n\t\tstore plain\n\t}\n"

// rawStore is the store module under a handler's instrumented store, for
// tests that look at the module itself.
func rawStore(st store.Store) store.Store {
	if u, ok := st.(interface{ Unwrap() store.Store }); ok {
		return u.Unwrap()
	}
	return st
}
