package memstore_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
)

// TestMemoryPerSession holds the figure the docs give for the memory
// store (docs/caddyfile.md, max_sessions): about 0.8 KB per small session
// and about 9 KB at the default size cap. It measures the live heap a
// full store of each kind holds: key, record, data, use list, key map and
// subject index, each session a logged-in user's, with its own subject,
// User-Agent and address.
//
// It is not parallel, so no other test of the package allocates while it
// measures (parallel tests wait until the sequential ones are done).
func TestMemoryPerSession(t *testing.T) {
	small := `{"count":3,"user":{"id":7,"name":"alice"}}`
	atCap := `{"k":"` + strings.Repeat("x", 8000-len("X-Session: ")-len(`{"k":""}`)) + `"}`
	for _, c := range []struct {
		name  string
		data  string
		n     int
		limit float64 // bytes per session the docs' figure allows
	}{
		{"small session of a logged-in user", small, 20_000, 850},
		{"session at the default size cap", atCap, 2_000, 9400},
	} {
		perSession := measure(t, c.n, c.data)
		t.Logf("%s (%d bytes of data): %.0f bytes per session", c.name, len(c.data), perSession)
		if perSession > c.limit {
			t.Errorf("%s: %.0f bytes per session, over the %.0f the docs allow; measure again and correct docs/caddyfile.md", c.name, perSession, c.limit)
		}
	}
}

// userAgent is a browser's User-Agent as a record keeps it.
const userAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// measure fills a store with n sessions holding data and returns the heap
// they take, per session.
func measure(t *testing.T, n int, data string) float64 {
	t.Helper()
	now := time.Now()
	before := liveHeap()
	s := memstore.New(memstore.Options{MaxSessions: n, SweepInterval: -1})
	for i := range n {
		rec := &store.Record{
			Data: []byte(data), Subject: fmt.Sprint("user-", i), Login: true,
			// Each request's header strings are its own, and the record
			// keeps them.
			UserAgent: string([]byte(userAgent)), Addr: string([]byte("203.0.113.0/24")),
			Created: now, Updated: now, Expires: now.Add(time.Hour),
		}
		if err := s.Create(t.Context(), cookie.Key(cookie.NewToken()), rec); err != nil {
			t.Fatal(err)
		}
	}
	after := liveHeap()
	if s.Len() != n {
		t.Fatalf("the store holds %d sessions, want %d", s.Len(), n)
	}
	runtime.KeepAlive(s)
	return float64(int64(after)-int64(before)) / float64(n)
}

// liveHeap is the heap in use after garbage collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
