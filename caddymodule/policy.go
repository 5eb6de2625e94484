package caddymodule

import (
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// policy holds the expiry rules of one handler: when a session ends, when
// an unchanged request extends it, and how long the browser keeps the
// cookie. It is pure (every method takes now) so the rules are table-tested
// without Caddy.
type policy struct {
	idle     time.Duration // default idle timeout
	lifetime time.Duration // absolute lifetime, from creation
	touch    time.Duration // configured touch interval; 0 means the default
	// cookieMaxAge caps the cookie's Max-Age; zero means "until the end of
	// the lifetime"; negative means a browser-session cookie unless the
	// upstream asked for a persistent session with max-age.
	cookieMaxAge time.Duration
}

// idleFor is the idle timeout of rec: its own max-age, or the default.
func (p policy) idleFor(rec *store.Record) time.Duration {
	if rec != nil && rec.MaxAge > 0 {
		return rec.MaxAge
	}
	return p.idle
}

// alive enforces the idle timeout and the lifetime as configured now, on
// top of the expiry the store filtered on, so a shortened timeout applies
// at once to existing sessions.
func (p policy) alive(rec *store.Record, now time.Time) bool {
	return now.Before(rec.Created.Add(p.lifetime)) && now.Before(rec.Updated.Add(p.idleFor(rec)))
}

// expiry is when a session created at created, with idle timeout idle,
// expires if used at now: the idle timeout, capped by the lifetime.
func (p policy) expiry(created time.Time, idle time.Duration, now time.Time) time.Time {
	exp, end := now.Add(idle), created.Add(p.lifetime)
	if end.Before(exp) {
		return end
	}
	return exp
}

// touchInterval is how long an unchanged session goes without a write:
// the configured interval, never more than half the session's own idle
// timeout, so a short max-age never ends a session that is in use.
func (p policy) touchInterval(rec *store.Record) time.Duration {
	t := p.touch
	if t <= 0 {
		t = DefaultTouchInterval
	}
	return min(t, p.idleFor(rec)/2)
}

// touchDue reports whether an unchanged request at now should extend rec,
// and to when: once per touch interval, when that moves the session's
// end as alive sees it. After idle_timeout was shortened that end is
// before the stored expiry, and only the touch's new Updated keeps an
// active session alive. A capped cookie, sent with every write, is due
// again while the one sent at the last write ends before the lifetime
// does, even when the expiry no longer moves.
func (p policy) touchDue(rec *store.Record, now time.Time) (time.Time, bool) {
	if now.Sub(rec.Updated) < p.touchInterval(rec) {
		return time.Time{}, false
	}
	idle := p.idleFor(rec)
	end := p.expiry(rec.Created, idle, rec.Updated)
	if rec.Expires.Before(end) {
		end = rec.Expires
	}
	exp := p.expiry(rec.Created, idle, now)
	cookieRunsOut := p.refreshCookie() && rec.Updated.Add(p.cookieMaxAge).Before(rec.Created.Add(p.lifetime))
	return exp, exp.After(end) || cookieRunsOut
}

// cookieAge is the Max-Age of rec's cookie sent at now: until the lifetime
// ends, capped by the configured maximum; zero (a browser-session cookie)
// when so configured and the upstream did not ask for a persistent one.
func (p policy) cookieAge(rec *store.Record, now time.Time) time.Duration {
	left := rec.Created.Add(p.lifetime).Sub(now)
	switch {
	case p.cookieMaxAge < 0 && rec.MaxAge == 0:
		return 0
	case p.cookieMaxAge > 0:
		return min(left, p.cookieMaxAge)
	}
	return left
}

// refreshCookie reports whether every write of a session re-sends its
// cookie: only a capped cookie can run out before the session does, and a
// session in use is written at least once per touch interval.
func (p policy) refreshCookie() bool { return p.cookieMaxAge > 0 }
