package adopt

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
)

// expressSID takes the express-session cookies out of h and returns the
// session id of the one that verifies (the first maxCookies are tried, in
// the order the browser sent them). The value is URL-decoded (the
// cookie package decodes values that contain "%"), must start with "s:",
// and the rest is "<sid>.<signature>" where the signature is HMAC-SHA256
// of sid under one of the secrets in standard base64 without "=" padding
// (cookie-signature), compared as a string. Every secret is tried, in
// constant time. Unsigned values are ignored, as express-session ignores
// them.
func (s *Source) expressSID(h http.Header) (sid, reason string) {
	values := cookie.TakeAll(h, s.name)
	if len(values) == 0 {
		return "", ""
	}
	values, over := firstCookies(values)
	found := 0
	for _, v := range values {
		id, ok := s.expressVerify(unquote(v))
		if ok && (found == 0 || id != sid) {
			found++
			sid = id
		}
	}
	return verdict(sid, found, over)
}

func (s *Source) expressVerify(v string) (sid string, ok bool) {
	if strings.Contains(v, "%") {
		if d, err := url.PathUnescape(v); err == nil {
			v = d
		}
	}
	body, signed := strings.CutPrefix(v, "s:")
	i := strings.LastIndexByte(body, '.')
	if !signed || i <= 0 {
		return "", false
	}
	sid, mac := body[:i], []byte(body[i+1:])
	valid := 0
	var enc []byte
	for _, key := range s.keys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(sid))
		enc = base64.RawStdEncoding.AppendEncode(enc[:0], m.Sum(nil))
		valid |= subtle.ConstantTimeCompare(enc, mac)
	}
	return sid, valid == 1
}

// adoptExpress adopts an express-session stored by connect-mongo:
// {_id: <sid>, session: <JSON string or object>, expires: Date}.
func (s *Source) adoptExpress(ctx context.Context, h http.Header, now time.Time, key string) (*Legacy, error) {
	sid, reason := s.expressSID(h)
	if sid == "" {
		return refusedOrNone(reason), nil
	}
	return s.adoptDocument(ctx, sid, now, key)
}

// expressBookkeeping reports the keys express-session adds to the session
// object: "cookie" (the cookie's options and expiry).
func expressBookkeeping(k string) bool { return k == "cookie" }
