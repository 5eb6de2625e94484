// Package memorystore is the Caddy module http.session.stores.memory: the
// session handler's default store, sessions in the memory of this Caddy
// process (package memstore), pooled by name across config reloads.
package memorystore

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/caddymodule/internal/cfarg"
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
	evictions *evictionLog
	loggedOut *evictionLog // evictions of logged-in sessions
}

// Destruct stops the store's sweeper; the pool drops the sessions with it.
func (p *pooledMemstore) Destruct() error {
	return p.Close()
}

// evictionLogInterval is the least time between two eviction log lines of
// one store.
const evictionLogInterval = time.Minute

// evictionLog logs the evictions of one pooled store at warn level: the
// first at once, then at most one line per evictionLogInterval carrying
// the count since the last line (evictions after the last line are
// counted in the next one). It never logs session data or keys.
type evictionLog struct {
	msg    string // the log line's message
	name   string
	store  *memstore.Store
	logger atomic.Pointer[zap.Logger] // the newest config's logger
	now    func() time.Time

	mu      sync.Mutex
	last    time.Time // when the last line was written; zero before the first
	pending int       // evictions not yet logged
}

// evicted is the store's OnEvict hook.
func (l *evictionLog) evicted(n int) {
	l.mu.Lock()
	l.pending += n
	now := l.now()
	first := l.last.IsZero()
	if !first && now.Sub(l.last) < evictionLogInterval {
		l.mu.Unlock()
		return
	}
	count := l.pending
	l.pending, l.last = 0, now
	l.mu.Unlock()
	l.logger.Load().Warn(l.msg,
		zap.String("store", l.name),
		zap.Int("evicted", count),
		zap.Bool("first", first),
		zap.Int("max_sessions", l.store.MaxSessions()))
}

// MemoryStore keeps sessions in the memory of this Caddy process. The
// sessions are lost when the process exits and are not shared with other
// Caddy instances; use the MongoDB store for that.
//
// Stores with the same name share their sessions, across handlers and
// across config reloads, for as long as at least one config uses the name.
//
// The store is bounded (max_sessions): when it is full, a new session
// evicts the least recently used anonymous one (no subject, not created by
// a login), logged-in ones only when no anonymous one is left, and never a
// login's tombstone before its two minutes are over (package memstore).
// A warning is logged (the first eviction, then at most one line a minute
// with the count), another for logged-in sessions evicted.
//
// Caddyfile syntax, inside a session handler block:
//
//	store memory [<name>] {
//	    max_sessions <n>
//	}
type MemoryStore struct {
	// Name selects the shared store; the default is "default". Give two
	// sites different names to keep their sessions apart.
	Name string `json:"name,omitempty"`

	// MaxSessions bounds how many sessions the store holds (live ones,
	// expired ones not yet swept, and short-lived markers of regenerated
	// sessions). When it is full, creating a session evicts the least
	// recently used one. Zero or absent means 100000; it must not be
	// negative. A small session costs about 0.8 KB, one at the default
	// size cap about 9 KB (memstore.TestMemoryPerSession).
	//
	// The bound belongs to the shared store, not to the module: stores
	// sharing a name share one bound, and the module provisioned last
	// sets it. A config reload therefore applies a changed max_sessions
	// to the running store (keeping its sessions, evicting at once if it
	// shrank); two handlers of one config that name the same store with
	// different values end with the value of the one provisioned last.
	// Each change is logged at warn level with both values.
	MaxSessions int `json:"max_sessions,omitempty"`

	// Store is the pooled store; its methods (store.Store and
	// store.SubjectIndex, Len for a gauge) are the module's methods.
	*memstore.Store `json:"-"`

	poolKey   string       // set only while this module holds a pool reference
	evictions *evictionLog // the pooled store's eviction log
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision takes a reference to the named store, creating it if this is
// its first user, and applies this module's bound to it.
func (m *MemoryStore) Provision(ctx caddy.Context) error {
	// Caddy validates after provisioning: a bad bound touches no store.
	if err := m.Validate(); err != nil {
		return err
	}
	name := m.storeName()
	logger := ctx.Logger()
	val, loaded, err := memoryPool.LoadOrNew(name, func() (caddy.Destructor, error) {
		return newPooledMemstore(name, m.MaxSessions), nil
	})
	if err != nil {
		return err
	}
	p := val.(*pooledMemstore)
	p.evictions.logger.Store(logger)
	p.loggedOut.logger.Store(logger)
	m.Store, m.evictions = p.Store, p.evictions
	m.poolKey = name
	if want := maxSessionsOr(m.MaxSessions); loaded && want != p.MaxSessions() {
		logger.Warn("memory session store shared with another config: max_sessions changed",
			zap.String("name", name), zap.Int("from", p.MaxSessions()), zap.Int("to", want))
		p.SetMaxSessions(want)
	}
	logger.Debug("memory session store ready",
		zap.String("name", name), zap.Bool("shared", loaded), zap.Int("max_sessions", p.MaxSessions()))
	return nil
}

// newPooledMemstore builds the pooled store named name, holding at most
// maxSessions sessions (zero: the default), that logs its evictions.
func newPooledMemstore(name string, maxSessions int) *pooledMemstore {
	ev := &evictionLog{name: name, now: time.Now, msg: "memory session store full: evicted least recently used sessions (anonymous ones first)"}
	ev.logger.Store(zap.NewNop())
	out := &evictionLog{name: name, now: time.Now, msg: "memory session store full of logged-in sessions: evicted logged-in users; raise max_sessions"}
	out.logger.Store(zap.NewNop())
	st := memstore.New(memstore.Options{MaxSessions: maxSessions, OnEvict: ev.evicted, OnEvictLoggedIn: out.evicted})
	ev.store, out.store = st, st
	return &pooledMemstore{Store: st, evictions: ev, loggedOut: out}
}

// maxSessionsOr returns n, or the default bound when n is zero.
func maxSessionsOr(n int) int {
	if n == 0 {
		return memstore.DefaultMaxSessions
	}
	return n
}

// Validate checks the configuration.
func (m *MemoryStore) Validate() error {
	if m.MaxSessions < 0 {
		return fmt.Errorf("memory store: max_sessions must be positive, got %d", m.MaxSessions)
	}
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

// UnmarshalCaddyfile sets up the store from Caddyfile tokens; Validate
// checks the values. The dispenser starts at the module name:
//
//	memory [<name>] {
//	    max_sessions <n>
//	}
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
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_sessions":
			v, err := cfarg.One(d)
			if err != nil {
				return err
			}
			if m.MaxSessions, err = strconv.Atoi(v); err != nil {
				return d.Errf("max_sessions: %q is not a whole number", v)
			}
		case "encryption_key", "subject_key", "require_sealed":
			return d.Errf("%s: the memory store keeps sessions inside the Caddy process, where sealing them would protect nothing; it is an option of store mongodb", d.Val())
		default:
			return d.Errf("unknown memory store option '%s'", d.Val())
		}
	}
	return nil
}

// DescribeStore names the store for metrics and the admin API: memory
// stores of one name share one map. Its calls are map operations in this
// process, so the handler does not time them (inProcess).
func (m *MemoryStore) DescribeStore() (name, id string, inProcess bool) {
	name = m.storeName()
	return name, "memory:" + name, true
}

// storeName is the pool name of the store.
func (m *MemoryStore) storeName() string {
	if m.Name == "" {
		return defaultMemoryStoreName
	}
	return m.Name
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.Validator       = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
	_ store.Store           = (*MemoryStore)(nil)
	_ store.SubjectIndex    = (*MemoryStore)(nil)
	_ caddy.Destructor      = (*pooledMemstore)(nil)
)
