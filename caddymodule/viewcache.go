package caddymodule

import (
	"hash/maphash"
	"sync/atomic"
)

// viewSlots bounds a handler's viewCache: 4096 entries.
const viewSlots = 1 << 12

// viewCache remembers, per handler, what the handler last sent the
// upstream for one session version and audience: the X-Session value
// (under read, its projection: see state.view), its sdh and the signed
// assertion. One cache serves both (Handler.views). It is bounded (one entry per slot, a
// newer entry replaces an older one) and lock-free; a lookup compares the
// key, the version and the audience, and hashes nothing for a session
// (store keys are hex SHA-256: their first characters pick the slot).
type viewCache struct {
	seed  maphash.Seed
	slots [viewSlots]atomic.Pointer[viewEntry]
}

// viewEntry is what one handler sent for one session version.
type viewEntry struct {
	key     string // store key; "" for requests without a session
	version int64  // the record's version; 0 without a session
	aud     string // the audience signed for
	value   string // the X-Session value sent
	sdh     string // assertion.DataHash(value)
	token   string // the signed assertion
	refresh int64  // Unix nanoseconds after which the assertion is signed anew
}

func newViewCache() *viewCache { return &viewCache{seed: maphash.MakeSeed()} }

// index picks the slot of a session by the first three hex digits of
// its store key, and of a request without a session by its audience: the
// fixed one, or scheme://host (hashed in parts, so nothing is built).
func (c *viewCache) index(key, fixed, scheme, host string) int {
	if len(key) >= 3 {
		return hexNibble(key[0])<<8 | hexNibble(key[1])<<4 | hexNibble(key[2])
	}
	if fixed != "" {
		return int(maphash.String(c.seed, fixed) % viewSlots)
	}
	h := maphash.String(c.seed, host)
	if scheme == "https" {
		h = ^h
	}
	return int(h % viewSlots)
}

func hexNibble(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c) & 0xf
}

// get returns the entry in slot i if it is key's at version for the
// audience: fixed, or (when fixed is "") scheme://host.
func (c *viewCache) get(i int, key string, version int64, fixed, scheme, host string) *viewEntry {
	e := c.slots[i].Load()
	if e == nil || e.key != key || e.version != version {
		return nil
	}
	if fixed != "" {
		if e.aud != fixed {
			return nil
		}
	} else if !isOrigin(e.aud, scheme, host) {
		return nil
	}
	return e
}

func (c *viewCache) put(i int, e *viewEntry) { c.slots[i].Store(e) }

// session returns the entry of a session (key is its store key) at
// version, whatever its audience: the X-Session value sent under read.
// An entry put by view has no assertion; the assertion's get then misses
// on the audience, signs, and puts an entry with both.
func (c *viewCache) session(key string, version int64) *viewEntry {
	e := c.slots[c.index(key, "", "", "")].Load()
	if e == nil || e.key != key || e.version != version {
		return nil
	}
	return e
}

// isOrigin reports whether aud is scheme://host, without building it.
func isOrigin(aud, scheme, host string) bool {
	return len(aud) == len(scheme)+3+len(host) &&
		aud[:len(scheme)] == scheme && aud[len(scheme):len(scheme)+3] == "://" && aud[len(scheme)+3:] == host
}
