package caddymodule

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/store"
)

// liveStore is a store in use by a provisioned session handler, as the
// admin API and the caddy_session_active gauge see it.
type liveStore struct {
	name string       // the store's name: metrics label and ?store= value
	id   string       // identity: two handlers with equal ids share the sessions
	idx  subjectIndex // the subject index (instrumented unless in-process), nil when it has none
	size func() int   // how many sessions it holds; nil when not cheap
	seq  uint64       // registration order: the newest of equal ids is used
}

// liveStores holds the stores of every provisioned session handler. A
// reload provisions the new config's handlers (registering) before it
// cleans up the old ones (unregistering), so during a reload a store can
// be registered twice; lookups deduplicate by identity.
var liveStores struct {
	sync.Mutex
	seq uint64
	m   map[*liveStore]struct{}
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
	st := mod
	if !d.inProcess {
		st = instrument(mod, idx, d.name)
	}
	ls := &liveStore{name: d.name, id: d.id}
	ls.idx, _ = st.(subjectIndex)
	if sz, ok := mod.(storeSizer); ok {
		ls.size = sz.Len
	}

	liveStores.Lock()
	defer liveStores.Unlock()
	if liveStores.m == nil {
		liveStores.m = make(map[*liveStore]struct{})
	}
	liveStores.seq++
	ls.seq = liveStores.seq
	liveStores.m[ls] = struct{}{}
	var once sync.Once
	return st, func() {
		once.Do(func() {
			liveStores.Lock()
			delete(liveStores.m, ls)
			liveStores.Unlock()
		})
	}
}

// liveStoreList returns the live stores, one per identity (the newest
// registration), sorted by name; only those named name unless it is "".
func liveStoreList(name string) []*liveStore {
	liveStores.Lock()
	newest := make(map[string]*liveStore, len(liveStores.m))
	for ls := range liveStores.m {
		if name != "" && ls.name != name {
			continue
		}
		if cur, ok := newest[ls.id]; !ok || ls.seq > cur.seq {
			newest[ls.id] = ls
		}
	}
	liveStores.Unlock()
	list := make([]*liveStore, 0, len(newest))
	for _, ls := range newest {
		list = append(list, ls)
	}
	slices.SortFunc(list, func(a, b *liveStore) int {
		return strings.Compare(a.name+"\x00"+a.id, b.name+"\x00"+b.id)
	})
	return list
}
