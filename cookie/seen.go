package cookie

import (
	"crypto/subtle"
	"hash/maphash"
	"sync/atomic"
)

// seenSlots bounds the verified-value cache of a Signer: at most this many
// entries of about 200 bytes each (the value, its key, the entry).
const seenSlots = 2048

// seen remembers, for cookie values that verified, the store key of their
// token, so a returning visitor costs neither the HMAC check nor the
// SHA-256 of Key: under load, those were a quarter of the gateway's own
// CPU time (docs/benchmarks.md).
//
// It is safe against timing attacks by construction. The slot of a value
// comes from a hash with a random per-process seed, so a client cannot aim
// at an entry; the value is then compared with the slot's entry in
// constant time, and only the exact value that verified before matches.
// Nothing a client sends can learn more than "this value verified", which
// it already knows when it holds the value.
//
// The answer for a value never changes while the secrets stay the same,
// and a Signer's secrets never change (a config reload makes a new one),
// so entries need no expiry: a colliding value simply replaces one.
// Sessions are still looked up in the store on every request; ending one
// there ends it, whatever is cached here.
type seen struct {
	seed  maphash.Seed
	slots [seenSlots]atomic.Pointer[seenEntry]
}

// seenEntry holds the value in the entry itself: one allocation, and
// one or two cache lines read per request.
type seenEntry struct {
	name  string         // cookie name: the signature covers it
	key   string         // Key of its token
	value [ValueLen]byte // the whole cookie value that verified
}

func newSeen() *seen { return &seen{seed: maphash.MakeSeed()} }

func (c *seen) slot(value string) *atomic.Pointer[seenEntry] {
	return &c.slots[maphash.String(c.seed, value)%seenSlots]
}

// find returns the key remembered for value in the cookie called name.
func (c *seen) find(name, value string) (key string, ok bool) {
	e := c.slot(value).Load()
	if e == nil || e.name != name || subtle.ConstantTimeCompare(e.value[:], []byte(value)) != 1 {
		return "", false
	}
	return e.key, true
}

// add remembers key for a value that verified (of length ValueLen). The
// value is copied: it is usually a slice of a whole Cookie header, which
// must not be kept alive.
func (c *seen) add(name, value, key string) {
	e := &seenEntry{name: name, key: key}
	copy(e.value[:], value)
	c.slot(value).Store(e)
}

// VerifyKey is Verify that also returns Key(token). Values that verified
// before are answered from a bounded cache without hashing (see seen).
func (s *Signer) VerifyKey(name, value string) (token, key string, ok bool) {
	if len(value) != ValueLen {
		return "", "", false
	}
	if key, ok := s.seen.find(name, value); ok {
		return value[:tokenLen], key, true
	}
	token, ok = s.Verify(name, value)
	if !ok {
		return "", "", false
	}
	key = Key(token)
	s.seen.add(name, value, key)
	return token, key, true
}
