// Package cookie makes and checks session cookies: random tokens, the store
// keys derived from them, HMAC signatures with key rotation, and the cookie
// attributes a session cookie is sent with.
//
// A cookie value is "<token>.<signature>". The token is 256 random bits in
// base64url; the signature is HMAC-SHA256 over the cookie name and the
// token. Stores never see the token: they key sessions by Key(token), the
// SHA-256 of the token, so a copy of the database holds no usable cookie.
package cookie

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// TokenBytes is how many random bytes a token carries (256 bits).
const TokenBytes = 32

// tokenLen is the length of an encoded token: base64url without padding
// (six bits a character, rounded up). TestEncodedLengths checks it against
// the encoder.
const tokenLen = (TokenBytes*8 + 5) / 6

// NewToken returns a new session token: TokenBytes bytes from crypto/rand,
// base64url-encoded without padding.
func NewToken() string {
	var b [TokenBytes]byte
	// crypto/rand.Read never returns an error on supported platforms; it
	// crashes the program instead of handing out a weak token.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Key returns the store key of a token: the hex SHA-256 of the token. It
// is what a store indexes sessions by, never the token itself.
func Key(token string) string {
	sum := sha256.Sum256([]byte(token))
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	// One allocation fewer than hex.EncodeToString; the budget is in
	// caddymodule's allocBudgets.
	return string(buf[:])
}

// Handle returns a short, non-secret name for the session under key, fit
// for logs and placeholders: the first 12 hex characters of the key. It
// cannot be turned back into the token or the full key.
func Handle(key string) string {
	if len(key) < HandleLen {
		return key
	}
	return key[:HandleLen]
}

// HandleLen is the length of a handle.
const HandleLen = 12

// IsHandle reports whether s is a handle: 12 lower-case hex digits (the
// admin API and the stores' DeleteByHandle refuse anything else).
func IsHandle(s string) bool {
	if len(s) != HandleLen {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
