package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sessiongate/caddy-session/store"
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
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	m := &MemoryStore{Name: name}
	if err := m.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return m
}

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
		Data:    map[string]json.RawMessage{"user": json.RawMessage(`"ann"`)},
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
	if string(got.Data["user"]) != `"ann"` {
		t.Fatalf("data = %s, want \"ann\"", got.Data["user"])
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
		input    string
		wantName string
		wantErr  bool
	}{
		{input: `memory`, wantName: ""},
		{input: `memory foo`, wantName: "foo"},
		{input: `memory "with space"`, wantName: "with space"},
		{input: `memory a b`, wantErr: true},
		{input: `memory ""`, wantErr: true},
		{input: "memory {\n\tsize 10\n}", wantErr: true},
		{input: "memory foo {\n}", wantErr: false, wantName: "foo"},
	} {
		t.Run(tc.input, func(t *testing.T) {
			// Parse the way the session handler does: positioned on the
			// token "memory", hand the rest to the module.
			d := caddyfile.NewTestDispenser(tc.input)
			if !d.Next() {
				t.Fatal("no tokens")
			}
			unm, err := caddyfile.UnmarshalModule(d, "http.session.stores.memory")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %q without error, got %+v", tc.input, unm)
				}
				t.Logf("error (expected): %v", err)
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalModule: %v", err)
			}
			m, ok := unm.(*MemoryStore)
			if !ok {
				t.Fatalf("got %T, want *MemoryStore", unm)
			}
			if m.Name != tc.wantName {
				t.Fatalf("Name = %q, want %q", m.Name, tc.wantName)
			}
		})
	}
}
