package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// defaultMemoryStoreName is the pool name used when a memory store has
// none, so every unnamed memory store in a config shares one map.
const defaultMemoryStoreName = "default"

// memoryPool holds the in-process stores by name. It lives outside any
// one config so sessions survive a config reload: the new config's
// modules are provisioned (taking a reference) before the old config's
// are cleaned up (dropping one), so the store never reaches zero
// references and is never closed during a reload.
var memoryPool = caddy.NewUsagePool()

// pooledMemstore lets a *memstore.Store live in a caddy.UsagePool, which
// calls Destruct when the last module using the store is cleaned up.
type pooledMemstore struct {
	*memstore.Store
}

// Destruct stops the store's sweeper; the pool drops the sessions with it.
func (p pooledMemstore) Destruct() error {
	return p.Close()
}

// MemoryStore keeps sessions in the memory of this Caddy process. The
// sessions are lost when the process exits and are not shared with other
// Caddy instances; use the MongoDB store for that.
//
// Stores with the same name share their sessions, across handlers and
// across config reloads, for as long as at least one config uses the name.
//
// Caddyfile syntax, inside a session handler block:
//
//	store memory [<name>]
type MemoryStore struct {
	// Name selects the shared store; the default is "default". Give two
	// sites different names to keep their sessions apart.
	Name string `json:"name,omitempty"`

	// Store is the pooled store; its methods are the module's store.Store
	// methods.
	store.Store `json:"-"`

	poolKey string // set only while this module holds a pool reference
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision takes a reference to the named store, creating it if this is
// its first user.
func (m *MemoryStore) Provision(ctx caddy.Context) error {
	name := m.Name
	if name == "" {
		name = defaultMemoryStoreName
	}
	val, loaded, err := memoryPool.LoadOrNew(name, func() (caddy.Destructor, error) {
		return pooledMemstore{memstore.New()}, nil
	})
	if err != nil {
		return err
	}
	m.Store = val.(pooledMemstore).Store
	m.poolKey = name
	ctx.Logger().Debug("memory session store ready",
		zap.String("name", name), zap.Bool("shared", loaded))
	return nil
}

// Cleanup drops this module's reference to the named store; the last
// reference closes it.
func (m *MemoryStore) Cleanup() error {
	if m.poolKey == "" {
		// Never provisioned, or already cleaned up: deleting again
		// would drop a reference another module holds.
		return nil
	}
	key := m.poolKey
	m.poolKey = ""
	_, err := memoryPool.Delete(key)
	return err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. The
// dispenser starts at the module name:
//
//	memory [<name>]
func (m *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the module name, "memory"
	if d.NextArg() {
		m.Name = d.Val()
		if m.Name == "" {
			return d.Err("memory store name must not be empty")
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("memory store takes no block, found '%s'", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
	_ store.Store           = (*MemoryStore)(nil)
	_ caddy.Destructor      = pooledMemstore{}
)
