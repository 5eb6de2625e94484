package memorystore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
	"github.com/sessiongate/caddy-session/store/storetest"
)

// uniqueMemoryName keeps each test on its own pooled store, because the
// pool is shared by every test in this package.
func uniqueMemoryName(t *testing.T) string {
	return t.Name() + "-" + rand.Text()
}

// provisionMemory provisions a MemoryStore the way Caddy would.
func provisionMemory(t *testing.T, name string) *MemoryStore {
	t.Helper()
	return provisionMemoryStore(t, &MemoryStore{Name: name})
}

// provisionMemoryStore provisions m the way Caddy would.
func provisionMemoryStore(t *testing.T, m *MemoryStore) *MemoryStore {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := m.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return m
}

// TestMemoryStoreConformance runs the suite through the module, subject
// index tests included (memory.go's interface guard keeps it a
// store.SubjectIndex).
func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		m := provisionMemory(t, uniqueMemoryName(t))
		t.Cleanup(func() {
			if err := m.Cleanup(); err != nil {
				t.Errorf("Cleanup: %v", err)
			}
		})
		return m
	})
}

func TestMemoryStoreSharedAcrossReload(t *testing.T) {
	name := uniqueMemoryName(t)
	ctx := t.Context()
	now := time.Now()
	rec := &store.Record{
		Data:    json.RawMessage(`{"user":"ann"}`),
		Created: now,
		Updated: now,
		Expires: now.Add(time.Hour),
	}

	// Two configs (or an old and a new one during a reload) with the same
	// name see the same sessions.
	oldCfg := provisionMemory(t, name)
	newCfg := provisionMemory(t, name)
	if err := oldCfg.Create(ctx, "k", rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := newCfg.Find(ctx, "k", now); err != nil {
		t.Fatalf("Find through the second module: %v", err)
	}

	// A different name is a different store.
	other := provisionMemory(t, uniqueMemoryName(t))
	if _, err := other.Find(ctx, "k", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find in another name's store: %v, want ErrNotFound", err)
	}
	if err := other.Cleanup(); err != nil {
		t.Fatal(err)
	}

	// The old config goes away: the sessions stay. A second Cleanup of
	// the same module must not drop the new config's reference.
	if err := oldCfg.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := oldCfg.Cleanup(); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if refs, ok := memoryPool.References(name); !ok || refs != 1 {
		t.Fatalf("pool references = %d (present %v), want 1", refs, ok)
	}
	got, err := newCfg.Find(ctx, "k", now)
	if err != nil {
		t.Fatalf("Find after the first Cleanup: %v", err)
	}
	if string(got.Data) != `{"user":"ann"}` {
		t.Fatalf("data = %s, want {\"user\":\"ann\"}", got.Data)
	}

	// Once nobody uses the name, the store is gone; a new one starts empty.
	if err := newCfg.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, ok := memoryPool.References(name); ok {
		t.Fatal("store still pooled after its last Cleanup")
	}
	fresh := provisionMemory(t, name)
	t.Cleanup(func() { fresh.Cleanup() })
	if _, err := fresh.Find(ctx, "k", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find in a new store: %v, want ErrNotFound", err)
	}
}

func TestMemoryStoreDefaultName(t *testing.T) {
	a := provisionMemory(t, "")
	b := provisionMemory(t, defaultMemoryStoreName)
	t.Cleanup(func() { a.Cleanup(); b.Cleanup() })
	if a.Store != b.Store {
		t.Fatal(`an unnamed memory store does not share the "default" store`)
	}
}

func TestMemoryStoreCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		json        string // the same config in JSON, when it has one
		wantName    string
		wantMax     int
		wantErr     bool // refused by the parser
		wantInvalid bool // parsed, refused by Validate
	}{
		{name: "bare", input: `memory`, json: `{}`},
		{name: "named", input: `memory foo`, json: `{"name":"foo"}`, wantName: "foo"},
		{name: "quoted name", input: `memory "with space"`, wantName: "with space"},
		{name: "two names", input: `memory a b`, wantErr: true},
		{name: "empty name", input: `memory ""`, wantErr: true},
		{name: "unknown option", input: "memory {\n\tsize 10\n}", wantErr: true},
		{name: "empty block", input: "memory foo {\n}", wantName: "foo"},
		{name: "max_sessions", input: "memory {\n\tmax_sessions 500\n}", json: `{"max_sessions":500}`, wantMax: 500},
		{name: "max_sessions zero is the default", input: "memory foo {\n\tmax_sessions 0\n}", json: `{"name":"foo","max_sessions":0}`, wantName: "foo"},
		{name: "negative max_sessions", input: "memory {\n\tmax_sessions -1\n}", json: `{"max_sessions":-1}`, wantMax: -1, wantInvalid: true},
		{name: "max_sessions without value", input: "memory {\n\tmax_sessions\n}", wantErr: true},
		{name: "max_sessions with two values", input: "memory {\n\tmax_sessions 1 2\n}", wantErr: true},
		{name: "max_sessions not a number", input: "memory {\n\tmax_sessions lots\n}", wantErr: true},
		{name: "max_sessions in exponent form", input: "memory {\n\tmax_sessions 1e3\n}", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := parseMemoryCaddyfile(tc.input)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %q without error, got %+v", tc.input, m)
				}
				t.Logf("error (expected): %v", err)
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalModule: %v", err)
			}
			checkMemoryConfig(t, "Caddyfile", m, tc.wantName, tc.wantMax, tc.wantInvalid)
			if tc.json == "" {
				return
			}
			var fromJSON MemoryStore
			if err := json.Unmarshal([]byte(tc.json), &fromJSON); err != nil {
				t.Fatalf("JSON %s: %v", tc.json, err)
			}
			checkMemoryConfig(t, "JSON", &fromJSON, tc.wantName, tc.wantMax, tc.wantInvalid)
		})
	}
}

// parseMemoryCaddyfile parses the way the session handler does:
// positioned on the token "memory", it hands the rest to the module.
func parseMemoryCaddyfile(input string) (*MemoryStore, error) {
	d := caddyfile.NewTestDispenser(input)
	if !d.Next() {
		return nil, errors.New("no tokens")
	}
	unm, err := caddyfile.UnmarshalModule(d, "http.session.stores.memory")
	if err != nil {
		return nil, err
	}
	m, ok := unm.(*MemoryStore)
	if !ok {
		return nil, fmt.Errorf("got %T, want *MemoryStore", unm)
	}
	return m, nil
}

// checkMemoryConfig checks a parsed config's fields and what Validate
// says of it.
func checkMemoryConfig(t *testing.T, from string, m *MemoryStore, name string, maxSessions int, invalid bool) {
	t.Helper()
	if m.Name != name || m.MaxSessions != maxSessions {
		t.Fatalf("%s: Name %q, MaxSessions %d; want %q, %d", from, m.Name, m.MaxSessions, name, maxSessions)
	}
	if err := m.Validate(); (err != nil) != invalid {
		t.Fatalf("%s: Validate = %v, want an error: %v", from, err, invalid)
	}
}

// TestMemoryStoreEvictionLog fills a small store and checks the warn
// lines: the first eviction at once, then at most one line a minute with
// the count since the last line, and never a key or data.
func TestMemoryStoreEvictionLog(t *testing.T) {
	m := provisionMemoryStore(t, &MemoryStore{Name: uniqueMemoryName(t), MaxSessions: 3})
	t.Cleanup(func() { m.Cleanup() })
	core, logs := observer.New(zapcore.DebugLevel)
	m.evictions.logger.Store(zap.New(core))
	now := time.Now()
	m.evictions.now = func() time.Time { return now }

	create := func(n int) {
		t.Helper()
		for range n {
			rec := &store.Record{Data: json.RawMessage(`{"secret":"s3cr3t"}`), Expires: now.Add(time.Hour)}
			if err := m.Create(t.Context(), rand.Text(), rec); err != nil {
				t.Fatalf("Create: %v", err)
			}
		}
	}
	create(3)
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d log lines before the store was full", n)
	}
	create(1)
	create(5)
	now = now.Add(evictionLogInterval - time.Second)
	create(1)
	now = now.Add(time.Second)
	create(1)
	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("got %d log lines, want 2: %+v", len(entries), entries)
	}
	for i, want := range []map[string]any{
		{"store": m.Name, "evicted": int64(1), "first": true, "max_sessions": int64(3)},
		{"store": m.Name, "evicted": int64(7), "first": false, "max_sessions": int64(3)},
	} {
		e := entries[i]
		if e.Level != zapcore.WarnLevel {
			t.Fatalf("line %d at level %v, want warn", i, e.Level)
		}
		if got := e.ContextMap(); !maps.Equal(got, want) {
			t.Fatalf("line %d fields %v, want exactly %v", i, got, want)
		}
	}
	if n := m.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

// TestMemoryStoreMaxSessionsFollowsReload checks that a second config
// sharing the store (a reload) applies its bound to the running store,
// keeping the most recently used sessions.
func TestMemoryStoreMaxSessionsFollowsReload(t *testing.T) {
	name := uniqueMemoryName(t)
	oldCfg := provisionMemoryStore(t, &MemoryStore{Name: name, MaxSessions: 4})
	t.Cleanup(func() { oldCfg.Cleanup() })
	now := time.Now()
	keys := []string{"k0", "k1", "k2", "k3"}
	for _, key := range keys {
		rec := &store.Record{Data: json.RawMessage(`{}`), Expires: now.Add(time.Hour)}
		if err := oldCfg.Create(t.Context(), key, rec); err != nil {
			t.Fatal(err)
		}
	}

	newCfg := provisionMemoryStore(t, &MemoryStore{Name: name, MaxSessions: 2})
	t.Cleanup(func() { newCfg.Cleanup() })
	if oldCfg.Store != newCfg.Store || newCfg.Store.MaxSessions() != 2 || newCfg.Len() != 2 {
		t.Fatalf("shared %v, MaxSessions %d, Len %d; want true, 2, 2",
			oldCfg.Store == newCfg.Store, newCfg.Store.MaxSessions(), newCfg.Len())
	}
	for i, key := range keys {
		_, err := newCfg.Find(t.Context(), key, now)
		if survives := i >= 2; survives != (err == nil) {
			t.Fatalf("%s: Find error %v, want survival %v", key, err, survives)
		}
	}

	// A config without max_sessions means the default, not "keep".
	third := provisionMemoryStore(t, &MemoryStore{Name: name})
	t.Cleanup(func() { third.Cleanup() })
	if n := third.Store.MaxSessions(); n != memstore.DefaultMaxSessions {
		t.Fatalf("MaxSessions = %d, want the default %d", n, memstore.DefaultMaxSessions)
	}
}

// TestMemoryStoreBadBoundOpensNothing: Caddy provisions before it
// validates, so Provision refuses a negative bound before it touches the
// pool: no store is created or resized.
func TestMemoryStoreBadBoundOpensNothing(t *testing.T) {
	name := uniqueMemoryName(t)
	m := &MemoryStore{Name: name, MaxSessions: -1}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := m.Provision(ctx); err == nil {
		_ = m.Cleanup()
		t.Fatal("a negative max_sessions was provisioned")
	}
	if _, ok := memoryPool.References(name); ok {
		t.Fatal("the refused config created a pooled store")
	}
}
