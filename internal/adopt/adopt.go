// Package adopt takes over sessions of the Node libraries a site used
// before the gateway, so moving to the gateway logs nobody out: a request
// with no live gateway session but a valid koa-session or express-session
// cookie gets a gateway session with the same data, once.
//
// A Source is one legacy library as configured (one `adopt koa|express`
// block). The gateway asks it, per request:
//
//   - Present: is there a cookie of this source at all? Requests without
//     one pay one substring search per Cookie line, nothing else.
//   - Adopt: verify the legacy cookie exactly as the library does, load the
//     legacy session, check its expiry, drop the library's bookkeeping
//     fields, run the data through the protocol's rules (Check), and claim
//     it, so it is adopted exactly once. A forged cookie fails the
//     signature check before any store round trip.
//   - Discard: the request has a live gateway session, which always wins;
//     the legacy cookies are removed from the request and expired.
//
// # Exactly once
//
// The legacy document is claimed with a conditional update: the filter
// matches only a document that has no "adopted" field, and the update sets
// adopted: {key: <gateway store key>, at: <now>}. Of concurrent requests
// carrying the same legacy cookie, exactly one update matches: that
// request's outcome is OutcomeAdopted, and the gateway creates the session
// under the key it passed and sets the gateway cookie. The others see the
// claim (OutcomeJoined) for Grace after it: they get the claimant's store
// key (never a token: the document holds nothing a client could present)
// and the legacy data, so the gateway serves them the adopted session (or,
// if the claimant has not created it yet, the legacy data read-only) and
// sets no cookie. They are never served as logged out. After Grace a
// claimed document is refused ("already adopted") and Sweep deletes it.
// The claim also moves the legacy expiry (koa: data._expire; express:
// expires) to the end of Grace, so the legacy library and connect-mongo's
// TTL index retire the document by their own rules too.
//
// Cookie-only koa sessions have no document to claim. For them the claim
// is held in this process for Grace: exactly once per gateway instance
// within the grace time. A copy of such a cookie replayed after Grace is
// adopted again, as the legacy app would have accepted it until its
// _expire; that is what switching adoption off after the migration window
// ends.
//
// # Strict
//
// A bad signature, an unknown session, an expired session, data the
// protocol refuses, a malformed document: each is OutcomeRefused with a
// Reason for one info log line, never an error. Errors are store outages
// only. Reasons never hold a cookie value, a key, a session id or session
// data.
package adopt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/protocol"
)

// Kind names a legacy session library.
type Kind string

// The supported libraries.
const (
	// KindKoa is koa-session (cookie-only, or with a MongoDB store written
	// as koa-session-mongoose writes it).
	KindKoa Kind = "koa"
	// KindExpress is express-session with connect-mongo.
	KindExpress Kind = "express"
)

// DefaultGrace is the default Config.Grace.
const DefaultGrace = 30 * time.Second

// maxGrace bounds Config.Grace: the grace time only has to cover the
// requests a page fires while its first adopted response is in flight.
const maxGrace = 10 * time.Minute

// maxCookies bounds how many cookies of a legacy name are tried, so a
// request stuffed with them cannot buy many HMACs. The first maxCookies, in
// the order the browser sent them, are tried; the rest are ignored.
const maxCookies = 8

// Refusal reasons that leave the legacy cookies in the browser: a planted
// cookie must not get the victim's real one expired.
const (
	reasonTooMany   = "too many legacy cookies"
	reasonAmbiguous = "ambiguous: two legacy cookies verify"
)

// Config is one `adopt koa|express { ... }` block. It is embedded in the
// Caddy module's JSON config; Keys hold placeholders there ({env.X}), which
// the module resolves before calling New.
type Config struct {
	// Kind is "koa" or "express".
	Kind Kind `json:"kind"`

	// Keys are the legacy signing keys, newest first: koa's app.keys or
	// express-session's secret list. Every key verifies; none is ever
	// logged. Required.
	Keys []string `json:"keys,omitempty"`

	// Cookie is the legacy session cookie name. Default: "koa.sess"
	// (koa-session's default key) or "connect.sid" (express-session's).
	// koa also reads "<Cookie>.sig", the signature cookie.
	Cookie string `json:"cookie,omitempty"`

	// Algorithm is the HMAC hash of koa's keygrip: "sha1" (keygrip's
	// default), "sha256" or "sha512". koa only.
	Algorithm string `json:"algorithm,omitempty"`

	// Collection is the legacy store's collection. koa: empty means
	// cookie-only mode (the session is in the cookie); express: default
	// "sessions", connect-mongo's default.
	Collection string `json:"collection,omitempty"`

	// Database is the legacy store's database. Empty: the gateway
	// store's database.
	Database string `json:"database,omitempty"`

	// Path and Domain are the legacy cookie's Path and Domain attributes,
	// as the Node app set them, so that expiring it reaches the browser's
	// cookie. Default path "/", no domain (the libraries' defaults).
	Path   string `json:"path,omitempty"`
	Domain string `json:"domain,omitempty"`

	// Grace is how long after the claim a concurrent request with the
	// same legacy cookie still gets the adopted session. Default 30s,
	// at most 10m.
	Grace caddy.Duration `json:"grace,omitempty"`
}

// name returns the legacy cookie name with its default.
func (c *Config) name() string {
	switch {
	case c.Cookie != "":
		return c.Cookie
	case c.Kind == KindKoa:
		return "koa.sess"
	}
	return "connect.sid"
}

// CookieNames are the names of the legacy cookies the source reads,
// takes out of requests and expires: the cookie name with its default,
// and for koa its "<name>.sig" signature cookie.
func (c *Config) CookieNames() []string {
	if c.Kind == KindKoa {
		return []string{c.name(), c.name() + ".sig"}
	}
	return []string{c.name()}
}

// collection returns the legacy collection with its default; "" means
// koa's cookie-only mode.
func (c *Config) collection() string {
	if c.Collection == "" && c.Kind == KindExpress {
		return "sessions"
	}
	return c.Collection
}

func (c *Config) grace() time.Duration {
	if c.Grace == 0 {
		return DefaultGrace
	}
	return time.Duration(c.Grace)
}

// CollectionName is the legacy store's collection with its default; ""
// for koa's cookie-only mode.
func (c *Config) CollectionName() string { return c.collection() }

// NeedsDatabase reports whether the source reads a MongoDB collection, so
// New needs a database.
func (c *Config) NeedsDatabase() bool { return c.collection() != "" }

// Validate checks the configuration that does not depend on resolved
// placeholders.
func (c *Config) Validate() error {
	switch c.Kind {
	case KindKoa, KindExpress:
	default:
		return fmt.Errorf("adopt: unknown source %q: want koa or express", c.Kind)
	}
	if len(c.Keys) == 0 {
		return fmt.Errorf("adopt %s: no keys: give the legacy app's %s", c.Kind, map[Kind]string{KindKoa: "app.keys", KindExpress: "session secret(s)"}[c.Kind])
	}
	if !validName(c.name()) {
		return fmt.Errorf("adopt %s: cookie name %q has characters not allowed in a cookie name", c.Kind, c.name())
	}
	if _, err := c.hash(); err != nil {
		return err
	}
	if err := validNamespace("collection", c.Collection); err != nil {
		return fmt.Errorf("adopt %s: %w", c.Kind, err)
	}
	if err := validNamespace("database", c.Database); err != nil {
		return fmt.Errorf("adopt %s: %w", c.Kind, err)
	}
	if c.Database != "" && c.collection() == "" {
		return fmt.Errorf("adopt %s: database without collection: cookie-only sessions have no store", c.Kind)
	}
	if c.Path != "" && (!strings.HasPrefix(c.Path, "/") || !validAttr(c.Path)) {
		return fmt.Errorf("adopt %s: cookie path %q must start with / and hold no ; or control characters", c.Kind, c.Path)
	}
	if c.Domain != "" && (!validAttr(c.Domain) || strings.ContainsAny(c.Domain, " ,")) {
		return fmt.Errorf("adopt %s: cookie domain %q is not a domain", c.Kind, c.Domain)
	}
	if c.Grace < 0 || time.Duration(c.Grace) > maxGrace {
		return fmt.Errorf("adopt %s: grace %v out of range (0 to %v)", c.Kind, time.Duration(c.Grace), maxGrace)
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`;,="\`, c) >= 0 {
			return false
		}
	}
	return true
}

// validAttr reports whether s can be a cookie attribute value: no ";"
// and no control characters.
func validAttr(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c == ';' {
			return false
		}
	}
	return true
}

func validNamespace(what, s string) error {
	if strings.ContainsAny(s, "$\x00") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return fmt.Errorf("%s name %q is not a valid MongoDB name", what, s)
	}
	if what == "database" && strings.ContainsAny(s, `/\. "`) {
		return fmt.Errorf("database name %q is not a valid MongoDB name", s)
	}
	return nil
}

// Check turns legacy session data (a JSON object) into the gateway's
// canonical encoding, or refuses it. Its error message becomes the
// Reason, so it must not contain the data.
type Check func(data json.RawMessage) (json.RawMessage, error)

// ProtocolCheck returns the Check the gateway uses: the data must be what
// an upstream could have sent as X-Session-Update (keys without $, . or
// NUL at any depth, numbers in range, at most maxValue bytes encoded;
// zero or less means the protocol's default), and comes back canonical.
func ProtocolCheck(maxValue int) Check {
	return func(data json.RawMessage) (json.RawMessage, error) {
		out, err := protocol.Evaluate(nil, protocol.Input{Update: []string{string(data)}}, maxValue)
		if err == nil {
			var enc json.RawMessage
			if enc, _, err = out.Apply(nil); err == nil {
				return enc, nil
			}
		}
		// Say it in the adoption's words: the data is not an "update".
		msg := strings.TrimPrefix(err.Error(), protocol.ErrBadUpstream.Error()+": ")
		msg = strings.TrimPrefix(msg, "update: ")
		if rest, ok := strings.CutPrefix(msg, "update is "); ok {
			msg = "session is " + rest
		}
		return nil, errors.New(msg)
	}
}

// Outcome says what Adopt decided.
type Outcome uint8

// Outcomes of Adopt.
const (
	// OutcomeNone: the request carries no cookie of this source after
	// all (Present matched another cookie's name). Nothing to log,
	// nothing to expire.
	OutcomeNone Outcome = iota
	// OutcomeRefused: no session; Legacy.Reason says why.
	OutcomeRefused
	// OutcomeAdopted: this request claimed the legacy session. Create the
	// gateway session under the key given to Adopt with Legacy.Data, set
	// the gateway cookie, send Legacy.Expire.
	OutcomeAdopted
	// OutcomeJoined: another request claimed it within the grace time.
	// Serve the session stored under Legacy.Key if it is there, else
	// Legacy.Data read-only; set no cookie of either kind.
	OutcomeJoined
)

// String returns "none", "refused", "adopted" or "joined".
func (o Outcome) String() string {
	switch o {
	case OutcomeRefused:
		return "refused"
	case OutcomeAdopted:
		return "adopted"
	case OutcomeJoined:
		return "joined"
	}
	return "none"
}

// Legacy is the result of Adopt.
type Legacy struct {
	// Outcome is what to do; see its values.
	Outcome Outcome
	// Data is the adopted session data in the canonical encoding (Check's
	// output), without the library's bookkeeping fields. Set for
	// OutcomeAdopted and OutcomeJoined.
	Data json.RawMessage
	// Key is the gateway store key of the adopted session: the key given
	// to Adopt (OutcomeAdopted) or the claimant's (OutcomeJoined).
	Key string
	// Expires is when the legacy session would have expired, or zero if
	// the legacy library set no expiry. Informational: the gateway's own
	// lifetimes apply to the adopted session.
	Expires time.Time
	// Expire holds the Set-Cookie header values that make the browser
	// forget the legacy cookie(s): add them to the response whenever they
	// are there. Set for OutcomeAdopted and OutcomeRefused, except a
	// refusal for too many or ambiguous legacy cookies (a planted cookie
	// must not get the real one expired). Empty for OutcomeJoined, so a
	// response that carries no gateway cookie never leaves the browser
	// without a session. They are strings, not http.Cookie, because
	// legacy names such as koa's old "koa:sess" are not RFC 6265 tokens
	// and net/http silently drops such cookies.
	Expire []string
	// Reason says why the session was refused, for one info log line.
	Reason string

	// keep marks a refusal that must not expire the legacy cookies.
	keep    bool
	release func(ctx context.Context) error
}

// Release undoes this request's claim (OutcomeAdopted only), for when the
// gateway could not create the session: the legacy session stays
// adoptable by the next request. It is a no-op otherwise.
func (l *Legacy) Release(ctx context.Context) error {
	if l.release == nil {
		return nil
	}
	return l.release(ctx)
}

// Source adopts the sessions of one legacy library. It is safe for
// concurrent use.
type Source struct {
	cfg    Config
	name   string
	keys   [][]byte
	grace  time.Duration
	check  Check
	koa    *keygrip          // koa only
	coll   *mongo.Collection // nil in koa's cookie-only mode
	claims *claimTable       // koa's cookie-only mode
	// pending holds the documents this instance claimed, for Sweep.
	pending pendingList
}

// New returns the Source for cfg. keys are cfg.Keys with placeholders
// resolved, in the same order. db is the gateway store's MongoDB database
// (cfg.Database, if set, names another database on the same client); it
// may be nil only when !cfg.NeedsDatabase(). check may be nil: the default
// is ProtocolCheck(0).
func New(cfg Config, keys [][]byte, db *mongo.Database, check Check) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("adopt %s: no keys", cfg.Kind)
	}
	s := &Source{cfg: cfg, name: cfg.name(), grace: cfg.grace(), check: check}
	for i, k := range keys {
		if len(k) == 0 {
			return nil, fmt.Errorf("adopt %s: key %d is empty (unset environment variable?)", cfg.Kind, i+1)
		}
		s.keys = append(s.keys, append([]byte(nil), k...))
	}
	if s.check == nil {
		s.check = ProtocolCheck(0)
	}
	if cfg.Kind == KindKoa {
		h, _ := cfg.hash()
		s.koa = &keygrip{hash: h, keys: s.keys}
	}
	if coll := cfg.collection(); coll != "" {
		if db == nil {
			return nil, fmt.Errorf("adopt %s: collection %q needs the mongodb session store", cfg.Kind, coll)
		}
		if cfg.Database != "" {
			db = db.Client().Database(cfg.Database)
		}
		s.coll = db.Collection(coll)
	} else {
		s.claims = newClaimTable()
	}
	return s, nil
}

// Name returns the source's kind, "koa" or "express", as X-Session-Meta's
// "adopted" member and log lines name it.
func (s *Source) Name() string { return string(s.cfg.Kind) }

// Present reports whether h carries a cookie that may be this source's:
// a substring test on the Cookie lines, the only cost a request without
// legacy cookies pays (no allocation). It may say yes for a similar name;
// Adopt then answers OutcomeNone.
func (s *Source) Present(h http.Header) bool {
	for _, line := range h["Cookie"] {
		if strings.Contains(line, s.name) {
			return true
		}
	}
	return false
}

// Discard removes the source's cookies from h and returns the Set-Cookie
// header values that expire them in the browser. The gateway calls it when
// the request has a live gateway session: that session wins over a legacy
// cookie.
func (s *Source) Discard(h http.Header, tls bool) []string {
	cookie.TakeAll(h, s.name)
	if s.koa != nil {
		cookie.TakeAll(h, s.name+".sig")
	}
	return s.expired(tls)
}

// expired returns the Set-Cookie values that make the browser forget the
// legacy cookies: the legacy name, path and domain, an empty value,
// Max-Age=0 and an Expires in 1970 (as the Node libraries write it),
// HttpOnly, and Secure over TLS.
func (s *Source) expired(tls bool) []string {
	names := []string{s.name}
	if s.koa != nil {
		names = append(names, s.name+".sig")
	}
	path := s.cfg.Path
	if path == "" {
		path = "/"
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		v := n + "=; Path=" + path
		if s.cfg.Domain != "" {
			v += "; Domain=" + s.cfg.Domain
		}
		v += "; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly"
		// A prefixed cookie exists only over HTTPS, and browsers take a
		// Set-Cookie for it only with Secure, even behind a load balancer
		// that talks plain HTTP to Caddy.
		if tls || cookie.NeedsSecure(n) {
			v += "; Secure"
		}
		out = append(out, v)
	}
	return out
}

// Adopt looks for a legacy session in r and claims it for the gateway
// session that will be stored under key (cookie.Key of the new token).
// It removes the source's cookies from r.Header in every case, so the
// upstream never sees them. now is the gateway's clock. The error is
// non-nil only when the legacy store failed; the request should then fail
// as any store outage does.
func (s *Source) Adopt(ctx context.Context, r *http.Request, now time.Time, key string) (*Legacy, error) {
	if key == "" {
		return nil, errors.New("adopt: no gateway store key given")
	}
	tls := r.TLS != nil
	var (
		leg *Legacy
		err error
	)
	switch {
	case s.cfg.Kind == KindExpress:
		leg, err = s.adoptExpress(ctx, r.Header, now, key)
	case s.coll != nil:
		leg, err = s.adoptKoaStore(ctx, r.Header, now, key)
	default:
		leg = s.adoptKoaCookie(r.Header, now, key)
	}
	if err != nil {
		return nil, err
	}
	if leg.Outcome == OutcomeAdopted || leg.Outcome == OutcomeRefused && !leg.keep {
		leg.Expire = s.expired(tls)
	}
	return leg, nil
}

// Sweep deletes the legacy documents this instance claimed more than
// Grace before now (by _id: it never scans the legacy collection), or
// forgets cookie-only claims as old, and returns how many. Call it
// periodically, e.g. every minute from the store's sweep loop.
func (s *Source) Sweep(ctx context.Context, now time.Time) (int64, error) {
	if s.claims != nil {
		return s.claims.prune(now.Add(-s.grace)), nil
	}
	return s.sweepStore(ctx, now.Add(-s.grace))
}

func refused(reason string) *Legacy {
	return &Legacy{Outcome: OutcomeRefused, Reason: reason}
}

// unquote strips the double quotes a cookie value may be wrapped in, as
// the Node cookie parsers do.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// firstCookies returns the first maxCookies of values, and whether there
// were more.
func firstCookies(values []string) ([]string, bool) {
	if len(values) > maxCookies {
		return values[:maxCookies], true
	}
	return values, false
}

// verdict ends the check of legacy cookies: value when exactly one
// distinct value verified (found counts them), or why there is none. over
// says cookies past maxCookies were left untried: then none verifying is
// "too many legacy cookies", since the real one may be among the rest.
func verdict(value string, found int, over bool) (string, string) {
	switch {
	case found == 0 && over:
		return "", reasonTooMany
	case found == 0:
		return "", "bad signature"
	case found > 1:
		return "", reasonAmbiguous
	}
	return value, ""
}
