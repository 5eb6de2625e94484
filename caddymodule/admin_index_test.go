package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/caddymodule/memorystore"
	"github.com/sessiongate/caddy-session/store/memstore"
)

// subjectSession is a session handler with a subject, on its own memory
// store.
func subjectSession(storeName string) string {
	return fmt.Sprintf("\tsession {\n\t\tsecret %s\n\t\tsubject user\n\t\tstore memory %s\n\t}\n", testSecret, storeName)
}

func TestAdminWalk(t *testing.T) {
	adminWalk(t, subjectSession("adminwalk"), "adminwalk")
}

func TestCommandListRevoke(t *testing.T) {
	commandWalk(t, subjectSession("commandwalk"))
}

// TestMetricsInstrumentedIndex checks that the decorator passes the
// memory store's subject index through.
func TestMetricsInstrumentedIndex(t *testing.T) {
	mem := memstore.New()
	t.Cleanup(func() { _ = mem.Close() })
	if _, ok := instrument(mem, mem, "unit-index").(subjectIndex); !ok {
		t.Fatal("the instrumented memory store lost its subject index")
	}
	// The memory store module holds the memstore: its index is found.
	m := &memorystore.MemoryStore{Name: "unit-index"}
	if err := m.Provision(caddyCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Cleanup() })
	st, unregister := registerStore(m)
	t.Cleanup(unregister)
	if _, ok := st.(subjectIndex); !ok {
		t.Fatal("the memory store module's subject index was not found")
	}
}

// TestAdminStoreDown: a store that cannot be reached answers 503.
func TestAdminStoreDown(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	body := fmt.Sprintf("\tsession {\n\t\tsecret %s\n\t\tsubject user\n\t\tstore mongodb mongodb://127.0.0.1:%d {\n\t\t\tdatabase opstest\n\t\t\tcollection admin\n\t\t\ttimeout 300ms\n\t\t}\n\t}\n",
		testSecret, freePort(t))
	startGateway(t, options, body, up)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/session/subjects/alice"},
		{http.MethodDelete, "/session/subjects/alice"},
		{http.MethodDelete, "/session/sessions/0123456789ab"},
	} {
		status, body := adminDo(t, admin, c.method, c.path)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "opstest.admin") {
			t.Errorf("%s %s with the store down: %d %s, want 503 naming the store", c.method, c.path, status, body)
		}
	}
}
