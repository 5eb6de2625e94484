package caddymodule

import (
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// policyT0 is the creation time of the sessions in the policy tables.
var policyT0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// rec is a session created at policyT0, last written at updated (minutes after
// policyT0), expiring at expires (minutes after policyT0), with its own max-age.
func policyRec(updated, expires int, maxAge time.Duration) *store.Record {
	return &store.Record{
		Created: policyT0,
		Updated: policyT0.Add(time.Duration(updated) * time.Minute),
		Expires: policyT0.Add(time.Duration(expires) * time.Minute),
		MaxAge:  maxAge,
	}
}

// at is policyT0 plus d.
func policyAt(d time.Duration) time.Time { return policyT0.Add(d) }

// policyDefaults is the policy of a handler configured with nothing.
var policyDefaults = policy{idle: DefaultIdleTimeout, lifetime: DefaultLifetime}

func TestPolicyIdleFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rec  *store.Record
		want time.Duration
	}{
		{"no session: the configured timeout", nil, time.Hour},
		{"no max-age: the configured timeout", policyRec(0, 60, 0), time.Hour},
		{"max-age wins, shorter", policyRec(0, 10, 10*time.Minute), 10 * time.Minute},
		{"max-age wins, longer", policyRec(0, 600, 30*24*time.Hour), 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := policyDefaults.idleFor(tc.rec); got != tc.want {
				t.Errorf("idleFor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyAlive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    policy
		rec  *store.Record
		now  time.Duration
		want bool
	}{
		{"fresh", policyDefaults, policyRec(0, 60, 0), time.Minute, true},
		{"just before the idle timeout", policyDefaults, policyRec(0, 60, 0), 59*time.Minute + 59*time.Second, true},
		{"at the idle timeout", policyDefaults, policyRec(0, 60, 0), time.Hour, false},
		{"used recently, near the lifetime", policyDefaults, policyRec(23*60, 24*60, 0), 24*time.Hour - time.Second, true},
		{"at the lifetime, however recently used", policyDefaults, policyRec(23*60+59, 24*60, 0), 24 * time.Hour, false},
		// The store would still return these (Expires is in the future):
		// the policy as configured now ends them at once.
		{"shortened idle_timeout applies at once", policy{idle: 10 * time.Minute, lifetime: DefaultLifetime}, policyRec(0, 60, 0), 11 * time.Minute, false},
		{"shortened idle_timeout, still within it", policy{idle: 10 * time.Minute, lifetime: DefaultLifetime}, policyRec(0, 60, 0), 9 * time.Minute, true},
		{"shortened lifetime applies at once", policy{idle: time.Hour, lifetime: 2 * time.Hour}, policyRec(150, 210, 0), 151 * time.Minute, false},
		{"max-age outlasts the configured idle timeout", policyDefaults, policyRec(0, 180, 3*time.Hour), 2 * time.Hour, true},
		{"max-age ends sooner than the configured idle timeout", policyDefaults, policyRec(0, 5, 5*time.Minute), 6 * time.Minute, false},
		{"max-age is capped by the lifetime", policyDefaults, policyRec(23*60, 24*60, 30*24*time.Hour), 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.alive(tc.rec, policyAt(tc.now)); got != tc.want {
				t.Errorf("alive = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		idle, now time.Duration
		want      time.Duration // after policyT0
	}{
		{"idle timeout from now", time.Hour, time.Hour, 2 * time.Hour},
		{"capped by the lifetime", time.Hour, 23*time.Hour + 30*time.Minute, 24 * time.Hour},
		{"a long max-age capped by the lifetime", 30 * 24 * time.Hour, 0, 24 * time.Hour},
		{"exactly at the lifetime", time.Hour, 23 * time.Hour, 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := policyDefaults.expiry(policyT0, tc.idle, policyAt(tc.now)); !got.Equal(policyAt(tc.want)) {
				t.Errorf("expiry = %v, want %v", got.Sub(policyT0), tc.want)
			}
		})
	}
}

func TestPolicyTouchInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		idle, touch time.Duration
		rec         *store.Record
		want        time.Duration
	}{
		{"default", time.Hour, 0, nil, time.Minute},
		{"default, session without max-age", time.Hour, 0, policyRec(0, 60, 0), time.Minute},
		{"configured", time.Hour, 5 * time.Minute, policyRec(0, 60, 0), 5 * time.Minute},
		{"configured at exactly half the idle timeout", 10 * time.Minute, 5 * time.Minute, policyRec(0, 10, 0), 5 * time.Minute},
		{"default capped at half a short idle timeout", time.Minute, 0, nil, 30 * time.Second},
		{"default capped at half a short max-age", time.Hour, 0, policyRec(0, 1, time.Minute), 30 * time.Second},
		{"configured capped at half a short max-age", time.Hour, 10 * time.Minute, policyRec(0, 4, 4*time.Minute), 2 * time.Minute},
		{"configured under half a long max-age", time.Hour, 10 * time.Minute, policyRec(0, 600, 10*time.Hour), 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{idle: tc.idle, lifetime: DefaultLifetime, touch: tc.touch}
			if got := p.touchInterval(tc.rec); got != tc.want {
				t.Errorf("touchInterval = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyTouchDue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		rec     *store.Record
		now     time.Duration
		due     bool
		expires time.Duration // after policyT0, when due
	}{
		{"within the touch interval", policyRec(0, 60, 0), 59 * time.Second, false, 0},
		{"at the touch interval", policyRec(0, 60, 0), time.Minute, true, 61 * time.Minute},
		{"long after", policyRec(0, 60, 0), 50 * time.Minute, true, 110 * time.Minute},
		{"with its own max-age", policyRec(0, 240, 4*time.Hour), 10 * time.Minute, true, 250 * time.Minute},
		{"capped by the lifetime", policyRec(23*60, 24*60-10, 0), 23*time.Hour + 30*time.Minute, true, 24 * time.Hour},
		{"at the lifetime cap already: no write", policyRec(23*60, 24*60, 0), 23*time.Hour + 30*time.Minute, false, 0},
		// The store holds a later expiry, from a longer idle_timeout
		// before a reload: the touch is still due, so Updated moves and
		// an active session outlives the new, shorter idle timeout.
		{"stored expiry from a longer idle timeout", policyRec(0, 200, 0), 10 * time.Minute, true, 70 * time.Minute},
		{"stored expiry from a shorter idle timeout", policyRec(0, 10, 0), 5 * time.Minute, true, 65 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp, due := policyDefaults.touchDue(tc.rec, policyAt(tc.now))
			if due != tc.due {
				t.Fatalf("due = %v, want %v", due, tc.due)
			}
			if due && !exp.Equal(policyAt(tc.expires)) {
				t.Errorf("expires %v after creation, want %v", exp.Sub(policyT0), tc.expires)
			}
		})
	}
}

func TestPolicyTouchDueCappedCookie(t *testing.T) {
	t.Parallel()
	// idle_timeout 20m, lifetime 1h: from 40m on the expiry is capped at
	// 1h and no longer moves.
	for _, tc := range []struct {
		name         string
		cookieMaxAge time.Duration
		updated, now int // minutes after creation
		due          bool
	}{
		{"expiry capped, no cookie cap: no write", 0, 44, 48, false},
		{"expiry capped, the last cookie ends before the lifetime", 10 * time.Minute, 44, 48, true},
		{"expiry capped, the last cookie lasts the lifetime", 10 * time.Minute, 52, 56, false},
		{"within the touch interval", 10 * time.Minute, 44, 44, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{idle: 20 * time.Minute, lifetime: time.Hour, cookieMaxAge: tc.cookieMaxAge}
			exp, due := p.touchDue(policyRec(tc.updated, 60, 0), policyAt(time.Duration(tc.now)*time.Minute))
			if due != tc.due {
				t.Fatalf("due = %v, want %v", due, tc.due)
			}
			if due && !exp.Equal(policyAt(time.Hour)) {
				t.Errorf("expires %v after creation, want 1h", exp.Sub(policyT0))
			}
		})
	}
}

func TestPolicyCookieAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		cookieMaxAge time.Duration
		rec          *store.Record
		now          time.Duration
		want         time.Duration
	}{
		{"default: the remaining lifetime", 0, policyRec(0, 60, 0), 0, 24 * time.Hour},
		{"default, later: what is left of the lifetime", 0, policyRec(0, 60, 0), 10 * time.Hour, 14 * time.Hour},
		{"default with max-age: still the remaining lifetime", 0, policyRec(0, 60, 30*24*time.Hour), time.Hour, 23 * time.Hour},
		{"capped by cookie max age", 10 * time.Minute, policyRec(0, 60, 0), 0, 10 * time.Minute},
		{"cookie max age longer than what is left", 10 * time.Minute, policyRec(0, 60, 0), 23*time.Hour + 55*time.Minute, 5 * time.Minute},
		{"browser-session cookie", -1, policyRec(0, 60, 0), 0, 0},
		{"browser-session cookie made persistent by max-age", -1, policyRec(0, 60, 30*time.Minute), time.Hour, 23 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policyDefaults
			p.cookieMaxAge = tc.cookieMaxAge
			if got := p.cookieAge(tc.rec, policyAt(tc.now)); got != tc.want {
				t.Errorf("cookieAge = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyRefreshCookie(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		cookieMaxAge time.Duration
		want         bool
	}{
		{"until the lifetime ends: sent once", 0, false},
		{"browser-session cookie: sent once", -1, false},
		{"capped: re-sent on every write", 10 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policyDefaults
			p.cookieMaxAge = tc.cookieMaxAge
			if got := p.refreshCookie(); got != tc.want {
				t.Errorf("refreshCookie = %v, want %v", got, tc.want)
			}
		})
	}
}
