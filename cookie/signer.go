package cookie

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// MinSecretLen is the shortest secret accepted for signing: 32 bytes, the
// output size of SHA-256, so the key is never the weak point of the MAC.
const MinSecretLen = 32

// sigLen is the length of an encoded signature, like tokenLen.
const sigLen = (sha256.Size*8 + 5) / 6

// b64 decodes tokens and signatures strictly: the unused low bits of the
// last character must be zero, so exactly one string spells each byte
// sequence. Lenient decoding would let four cookie values verify for one
// token (a 43-character encoding of 32 bytes has two spare bits), which
// breaks "one token, one cookie value" for anyone comparing values.
var b64 = base64.RawURLEncoding.Strict()

// ValueLen is the exact length of a well-formed cookie value. Anything
// else is rejected before any hashing.
const ValueLen = tokenLen + 1 + sigLen

// Signer signs cookie values with the first of its keys and accepts values
// signed by any of them, so keys can be rotated: put the new key first and
// keep the old ones until the cookies they signed have expired.
type Signer struct {
	keys []*macPool
	seen *seen
}

// macPool reuses keyed HMAC states: hmac.New allocates and hashes the key,
// work that Reset lets every request after the first skip. Each state
// carries its own scratch buffers, because slices handed to a hash.Hash
// escape to the heap and would cost allocations on every request.
type macPool struct {
	key  []byte
	pool sync.Pool
}

type macState struct {
	h   hash.Hash
	msg []byte
	sum []byte
}

func (p *macPool) get() *macState {
	if st, ok := p.pool.Get().(*macState); ok {
		return st
	}
	return &macState{h: hmac.New(sha256.New, p.key), sum: make([]byte, 0, sha256.Size)}
}

func (p *macPool) put(st *macState) {
	st.h.Reset()
	p.pool.Put(st)
}

// NewSigner returns a Signer for the given secrets, newest first. It
// refuses an empty list and any secret shorter than MinSecretLen bytes.
func NewSigner(secrets ...[]byte) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no secret given")
	}
	s := &Signer{seen: newSeen()}
	for i, k := range secrets {
		if len(k) < MinSecretLen {
			return nil, fmt.Errorf("secret %d is %d bytes; at least %d are required", i+1, len(k), MinSecretLen)
		}
		s.keys = append(s.keys, &macPool{key: append([]byte(nil), k...)})
	}
	return s, nil
}

// mac appends to dst the signature of token for the cookie called name.
// The name is part of the message so a value cannot be moved from one
// cookie to another that shares the secret.
func (p *macPool) mac(dst []byte, name, token string) []byte {
	st := p.get()
	st.msg = append(append(append(st.msg[:0], name...), '='), token...)
	st.h.Write(st.msg)
	st.sum = st.h.Sum(st.sum[:0])
	dst = append(dst, st.sum...)
	p.put(st)
	return dst
}

// Sign returns the cookie value for token in the cookie called name:
// "<token>.<signature>", signed with the first secret.
func (s *Signer) Sign(name, token string) string {
	var buf [sha256.Size]byte
	sum := s.keys[0].mac(buf[:0], name, token)
	out := make([]byte, 0, len(token)+1+sigLen)
	out = append(out, token...)
	out = append(out, '.')
	out = base64.RawURLEncoding.AppendEncode(out, sum)
	return string(out)
}

// Verify checks a cookie value from the cookie called name and returns
// its token. It returns false for any value that is malformed or not
// signed by one of the secrets. Decoding is strict (see b64), so the only
// value that verifies for a token is the one Sign returns for it under one
// of the secrets. Signatures are compared in constant time.
func (s *Signer) Verify(name, value string) (token string, ok bool) {
	if len(value) != ValueLen || value[tokenLen] != '.' {
		return "", false
	}
	token = value[:tokenLen]
	var raw [TokenBytes]byte
	if n, err := b64.Decode(raw[:], []byte(token)); err != nil || n != TokenBytes {
		return "", false
	}
	var got [sha256.Size + 2]byte // decoder scratch needs a little slack
	n, err := b64.Decode(got[:], []byte(value[tokenLen+1:]))
	if err != nil || n != sha256.Size {
		return "", false
	}
	// Check every key even after a match so timing does not reveal which
	// key signed the value.
	var want [sha256.Size]byte
	valid := 0
	for _, k := range s.keys {
		valid |= subtle.ConstantTimeCompare(k.mac(want[:0], name, token), got[:n])
	}
	if valid != 1 {
		return "", false
	}
	return token, true
}
