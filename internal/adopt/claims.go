package adopt

import (
	"crypto/sha256"
	"sync"
	"time"
)

// claimTable holds the claims of cookie-only koa sessions, which have no
// document to claim: the SHA-256 of the cookie value (never the value)
// maps to the claimant's store key and the claim time, for the grace time.
type claimTable struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]claimEntry
}

type claimEntry struct {
	key string
	at  time.Time
}

func newClaimTable() *claimTable {
	return &claimTable{m: make(map[[sha256.Size]byte]claimEntry)}
}

// claim claims value for key unless a claim younger than grace exists. It
// returns the owner's key and whether this call made the claim.
func (t *claimTable) claim(value, key string, now time.Time, grace time.Duration) (owner string, claimed bool) {
	id := sha256.Sum256([]byte(value))
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now.Add(-grace))
	if c, ok := t.m[id]; ok {
		return c.key, false
	}
	t.m[id] = claimEntry{key: key, at: now}
	return key, true
}

// release removes key's claim on value.
func (t *claimTable) release(value, key string) {
	id := sha256.Sum256([]byte(value))
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.m[id]; ok && c.key == key {
		delete(t.m, id)
	}
}

// prune forgets the claims made before cutoff and returns how many.
func (t *claimTable) prune(cutoff time.Time) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pruneLocked(cutoff)
}

func (t *claimTable) pruneLocked(cutoff time.Time) int64 {
	var n int64
	for id, c := range t.m {
		if !c.at.After(cutoff) {
			delete(t.m, id)
			n++
		}
	}
	return n
}

// pendingList holds the legacy documents this instance claimed, for Sweep
// to delete by _id once their grace time is over.
type pendingList struct {
	mu    sync.Mutex
	items map[string]time.Time // _id -> claim time
}

func (p *pendingList) add(id string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.items == nil {
		p.items = make(map[string]time.Time)
	}
	p.items[id] = at
}

func (p *pendingList) remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.items, id)
}

// due returns the ids claimed at or before cutoff, at most maxSweep.
func (p *pendingList) due(cutoff time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, at := range p.items {
		if !at.After(cutoff) {
			ids = append(ids, id)
			if len(ids) == maxSweep {
				break
			}
		}
	}
	return ids
}

// done forgets ids once they are deleted.
func (p *pendingList) done(ids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		delete(p.items, id)
	}
}

// maxSweep bounds one sweep's delete; the next sweep takes the rest.
const maxSweep = 1000
