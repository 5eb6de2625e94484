package caddymodule

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/store"
)

// storeInUse is a store in use by a provisioned session handler, as the
// admin API and the caddy_session_active gauge see it.
type storeInUse struct {
	name   string       // the store's name: metrics label and ?store= value
	id     string       // identity: two handlers with equal ids share the sessions
	idx    subjectIndex // the subject index (instrumented unless in-process), nil when it has none
	reseal resealer     // the store module's reseal, nil when it does not seal
	size   func() int   // how many sessions it holds; nil when not cheap
	// evictions counts the store's evictions (anonymous, logged-in); nil
	// for a store that never evicts.
	evictions func() (anonymous, loggedIn uint64)
	seq       uint64 // registration order: the newest of equal ids is used
}

// inUse holds the stores of every provisioned session handler. A
// reload provisions the new config's handlers (registering) before it
// cleans up the old ones (unregistering), so during a reload a store can
// be registered twice; lookups deduplicate by identity.
var inUse struct {
	sync.Mutex
	seq uint64
	m   map[*storeInUse]struct{}
}

// storeDescriber is implemented by store modules that name themselves
// for metrics and the admin API (both store modules do).
type storeDescriber interface {
	// DescribeStore returns the store's name (the metrics label and the
	// admin API's ?store= value) and its identity: two modules with
	// equal ids share their sessions. inProcess marks a store whose calls
	// are map operations in this process (the memory store): its calls
	// are not timed or counted, since under load the timing cost six
	// times the lookup it timed, and every observation would land in the
	// first bucket.
	DescribeStore() (name, id string, inProcess bool)
}

// storeSizer is implemented by store modules that count their sessions
// cheaply (the memory store), for caddy_session_active.
type storeSizer interface {
	Len() int
}

// storeEvictor is implemented by store modules that evict sessions when
// full (the memory store), for caddy_session_evictions_total.
type storeEvictor interface {
	Evictions() (anonymous, loggedIn uint64)
}

// storeDescription names a store; see storeDescriber.
type storeDescription struct {
	name, id  string
	inProcess bool
}

// describe names the store module mod.
func describe(mod store.Store) storeDescription {
	if d, ok := mod.(storeDescriber); ok {
		name, id, inProcess := d.DescribeStore()
		return storeDescription{name: name, id: id, inProcess: inProcess}
	}
	name := fmt.Sprintf("%T", mod)
	if m, ok := mod.(caddy.Module); ok {
		name = m.CaddyModule().ID.Name()
	}
	return storeDescription{name: name, id: fmt.Sprintf("%s@%p", name, mod)}
}

// registerStore instruments the store module mod for metrics (unless it
// is in-process) and registers it for the admin API and the
// active-sessions gauge. It returns the store the handler must use from
// now on, and the function that unregisters it, for the handler's
// Cleanup.
func registerStore(mod store.Store) (store.Store, func()) {
	d := describe(mod)
	idx, _ := mod.(subjectIndex)
	used := mod
	if !d.inProcess {
		used = instrument(mod, idx, d.name)
	}
	ls := &storeInUse{name: d.name, id: d.id}
	ls.idx, _ = used.(subjectIndex)
	if r, ok := mod.(resealer); ok && r.Sealing() {
		ls.reseal = r
	}
	if sz, ok := mod.(storeSizer); ok {
		ls.size = sz.Len
	}
	if ev, ok := mod.(storeEvictor); ok {
		ls.evictions = ev.Evictions
	}

	inUse.Lock()
	defer inUse.Unlock()
	if inUse.m == nil {
		inUse.m = make(map[*storeInUse]struct{})
	}
	inUse.seq++
	ls.seq = inUse.seq
	inUse.m[ls] = struct{}{}
	var once sync.Once
	return used, func() {
		once.Do(func() {
			inUse.Lock()
			delete(inUse.m, ls)
			inUse.Unlock()
		})
	}
}

// storesInUse returns the stores in use, one per identity (the newest
// registration), sorted by name; only those named name unless it is "".
func storesInUse(name string) []*storeInUse {
	inUse.Lock()
	newest := make(map[string]*storeInUse, len(inUse.m))
	for ls := range inUse.m {
		if name != "" && ls.name != name {
			continue
		}
		if cur, ok := newest[ls.id]; !ok || ls.seq > cur.seq {
			newest[ls.id] = ls
		}
	}
	inUse.Unlock()
	list := make([]*storeInUse, 0, len(newest))
	for _, ls := range newest {
		list = append(list, ls)
	}
	slices.SortFunc(list, func(a, b *storeInUse) int {
		return strings.Compare(a.name+"\x00"+a.id, b.name+"\x00"+b.id)
	})
	return list
}
