package adopt

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
)

// hash returns koa's keygrip hash for c.Algorithm.
func (c *Config) hash() (func() hash.Hash, error) {
	if c.Kind != KindKoa {
		if c.Algorithm != "" {
			return nil, fmt.Errorf("adopt %s: algorithm is for koa's keygrip only", c.Kind)
		}
		return sha256.New, nil
	}
	switch c.Algorithm {
	case "", "sha1":
		return sha1.New, nil
	case "sha256":
		return sha256.New, nil
	case "sha512":
		return sha512.New, nil
	}
	return nil, fmt.Errorf("adopt koa: unknown algorithm %q: want sha1, sha256 or sha512", c.Algorithm)
}

// keygrip verifies signatures as the keygrip package does: the digest is
// HMAC(key, data) in base64 with "/" "+" "=" turned into "_" "-" "" (that
// is, base64url without padding), compared as a string. Every key is
// tried, in constant time.
type keygrip struct {
	hash func() hash.Hash
	keys [][]byte
}

func (k *keygrip) verify(data, digest string) bool {
	ok := 0
	var enc []byte
	for _, key := range k.keys {
		m := hmac.New(k.hash, key)
		m.Write([]byte(data))
		enc = base64.RawURLEncoding.AppendEncode(enc[:0], m.Sum(nil))
		ok |= subtle.ConstantTimeCompare(enc, []byte(digest))
	}
	return ok == 1
}

// koaValue takes the koa cookies out of h and returns the value of the
// session cookie whose "<name>.sig" cookie verifies over "<name>=<value>",
// as the cookies module does for a signed get. Several cookies of the name
// (cookie tossing) are tried, the first maxCookies of each name in the
// order the browser sent them; two different values that both verify are
// ambiguous.
func (s *Source) koaValue(h http.Header) (value, reason string) {
	values := cookie.TakeAll(h, s.name)
	sigs := cookie.TakeAll(h, s.name+".sig")
	switch {
	case len(values) == 0 && len(sigs) == 0:
		return "", ""
	case len(values) == 0:
		return "", "signature cookie without its session cookie"
	case len(sigs) == 0:
		return "", "no signature cookie"
	}
	values, over := firstCookies(values)
	sigs, overSigs := firstCookies(sigs)
	found := 0
	for _, v := range values {
		v = unquote(v)
		for _, sig := range sigs {
			if !s.koa.verify(s.name+"="+v, unquote(sig)) {
				continue
			}
			if found == 0 || v != value {
				found++
				value = v
			}
			break
		}
	}
	return verdict(value, found, over || overSigs)
}

// adoptKoaStore adopts a koa-session whose cookie holds the external key
// of a document {_id: <key>, data: {..., _expire, _maxAge}, updatedAt}.
func (s *Source) adoptKoaStore(ctx context.Context, h http.Header, now time.Time, key string) (*Legacy, error) {
	id, reason := s.koaValue(h)
	if id == "" {
		return refusedOrNone(reason), nil
	}
	return s.adoptDocument(ctx, id, now, key)
}

// adoptKoaCookie adopts a cookie-only koa-session: the cookie value is
// base64 of the session's JSON, as koa-session's default encode writes it.
func (s *Source) adoptKoaCookie(h http.Header, now time.Time, key string) *Legacy {
	value, reason := s.koaValue(h)
	if value == "" {
		return refusedOrNone(reason)
	}
	raw, err := decodeBase64(value)
	if err != nil {
		return refused("malformed cookie: not base64")
	}
	data, expires, reason := s.koaData(raw, now)
	if reason != "" {
		return refused(reason)
	}
	owner, claimed := s.claims.claim(value, key, now, s.grace)
	leg := &Legacy{Data: data, Expires: expires, Key: owner}
	if !claimed {
		leg.Outcome = OutcomeJoined
		return leg
	}
	leg.Outcome = OutcomeAdopted
	leg.release = func(context.Context) error { s.claims.release(value, key); return nil }
	return leg
}

// koaData checks a koa session object (JSON) for expiry, drops the
// bookkeeping fields and runs the rest through the Check.
func (s *Source) koaData(raw []byte, now time.Time) (data []byte, expires time.Time, reason string) {
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, time.Time{}, "malformed session: " + err.Error()
	}
	if ms, ok := jsonNumber(obj["_expire"]); ok {
		expires = time.UnixMilli(int64(ms))
		if ms < float64(now.UnixMilli()) {
			return nil, expires, "expired"
		}
	}
	data, reason = s.checked(obj, koaBookkeeping)
	return data, expires, reason
}

// koaBookkeeping reports the top-level keys koa-session adds to what it
// stores (_expire, _maxAge, _session). koa-session's Session.toJSON skips
// every key that starts with "_", so no app data is ever stored under
// one: all of them go.
func koaBookkeeping(k string) bool { return strings.HasPrefix(k, "_") }

// decodeBase64 decodes as Node's Buffer.from(s, "base64") does for the
// values koa-session writes: standard or URL alphabet, padding optional.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func refusedOrNone(reason string) *Legacy {
	switch reason {
	case "":
		return &Legacy{Outcome: OutcomeNone}
	case reasonTooMany, reasonAmbiguous:
		// The real legacy cookie may be among them: a planted cookie must
		// not get it expired.
		return &Legacy{Outcome: OutcomeRefused, Reason: reason, keep: true}
	}
	return refused(reason)
}
