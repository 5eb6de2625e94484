package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
)

// racingStore is a memory store where another request writes first: before
// each of the next `races` compare-and-set calls (Update, Rotate), race
// runs against the store, as a concurrent request would.
type racingStore struct {
	*memstore.Store
	races atomic.Int32
	race  func(s *memstore.Store, key string)
}

func (s *racingStore) before(key string) {
	if s.race != nil && s.races.Add(-1) >= 0 {
		s.race(s.Store, key)
	}
}

func (s *racingStore) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	s.before(key)
	return s.Store.Update(ctx, key, rec, now)
}

func (s *racingStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	s.before(key)
	return s.Store.Rotate(ctx, key, version, successor, until, now)
}

// concurrentPatch is a race: another request adds one to "other".
func concurrentPatch(s *memstore.Store, key string) {
	ctx, now := context.Background(), time.Now()
	rec, err := s.Find(ctx, key, now)
	if err != nil {
		panic(err)
	}
	var data map[string]any
	if err := json.Unmarshal(rec.Data, &data); err != nil {
		panic(err)
	}
	n, _ := data["other"].(float64)
	data["other"] = n + 1
	next := *rec
	if next.Data, err = json.Marshal(data); err != nil {
		panic(err)
	}
	if err := s.Update(ctx, key, &next, now); err != nil {
		panic(err)
	}
}

// concurrentLogin is a race: another request regenerates the session.
func concurrentLogin(s *memstore.Store, key string) {
	ctx, now := context.Background(), time.Now()
	rec, err := s.Find(ctx, key, now)
	if err != nil {
		panic(err)
	}
	if err := s.Rotate(ctx, key, rec.Version, "0123456789ab", now.Add(time.Minute), now); err != nil {
		panic(err)
	}
}

// concurrentLogout is a race: another request destroys the session.
func concurrentLogout(s *memstore.Store, key string) {
	if err := s.Delete(context.Background(), key); err != nil {
		panic(err)
	}
}

// commitHandler is a provisioned handler on st (no TCP, no Caddy config).
func commitHandler(t *testing.T, st store.Store) *Handler {
	t.Helper()
	h := &Handler{Secrets: []string{testSecret}}
	if err := h.Provision(caddyCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	h.store, h.index = st, nil
	return h
}

// answering is an upstream that sets the session headers hdr.
func answering(hdr map[string]string) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
}

// serveOnce runs one request with the session cookie value (if any)
// through h and upstream, as Caddy calls a handler.
func serveOnce(h *Handler, cookieValue string, upstream caddyhttp.Handler) (*httptest.ResponseRecorder, error) {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	if cookieValue != "" {
		r.Header.Set("Cookie", "session="+cookieValue)
	}
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil)
	w := httptest.NewRecorder()
	return w, h.ServeHTTP(w, r, upstream)
}

// sessionCookie is the session cookie the response set: its value, and
// whether it expires the cookie; ok is false when none was set.
func sessionCookie(w *httptest.ResponseRecorder) (value string, expired, ok bool) {
	for _, line := range w.Result().Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err == nil && c.Name == "session" {
			return c.Value, c.MaxAge < 0, true
		}
	}
	return "", false, false
}

// TestCommitTable runs the upstream's answers through ServeHTTP into
// commit, against a memory store, in milliseconds: what is stored, the
// cookie sent, the status.
func TestCommitTable(t *testing.T) {
	const start = `{"user":"ann"}`
	for _, tc := range []struct {
		name    string
		session bool              // the request carries a session holding start
		answer  map[string]string // the upstream's session headers
		race    func(*memstore.Store, string)
		races   int32
		status  int    // the error's status; 0: no error
		cookie  string // "new", "expired" or "" (none)
		data    string // the data under the cookie's key, or left under the old key; "" none
		oldGone bool   // the request's session key no longer finds a session
	}{
		{name: "create", answer: map[string]string{"X-Session-Update": `{"user":"ann"}`}, cookie: "new", data: start},
		{name: "create nothing", answer: map[string]string{"X-Session-Patch": `{}`}},
		{name: "update", session: true, answer: map[string]string{"X-Session-Patch": `{"n":1}`}, data: `{"n":1,"user":"ann"}`},
		{name: "unchanged", session: true, answer: map[string]string{}, data: start},
		{name: "regenerate", session: true, answer: map[string]string{"X-Session-Control": "regenerate"}, cookie: "new", data: start, oldGone: true},
		{name: "destroy", session: true, answer: map[string]string{"X-Session-Control": "destroy"}, cookie: "expired", oldGone: true},
		{name: "update after a concurrent patch", session: true, answer: map[string]string{"X-Session-Patch": `{"n":1}`},
			race: concurrentPatch, races: 1, data: `{"n":1,"other":1,"user":"ann"}`},
		{name: "regenerate after a concurrent patch", session: true, answer: map[string]string{"X-Session-Control": "regenerate"},
			race: concurrentPatch, races: 1, cookie: "new", data: `{"other":1,"user":"ann"}`, oldGone: true},
		{name: "destroy after a concurrent patch", session: true, answer: map[string]string{"X-Session-Control": "destroy"},
			race: concurrentPatch, races: 1, cookie: "expired", oldGone: true},
		{name: "update after a concurrent login", session: true, answer: map[string]string{"X-Session-Patch": `{"n":1}`},
			race: concurrentLogin, races: 1, oldGone: true},
		{name: "destroy after a concurrent login", session: true, answer: map[string]string{"X-Session-Control": "destroy"},
			race: concurrentLogin, races: 1, oldGone: true},
		{name: "update after a concurrent logout", session: true, answer: map[string]string{"X-Session-Patch": `{"n":1}`},
			race: concurrentLogout, races: 1, cookie: "expired", oldGone: true},
		{name: "update under contention", session: true, answer: map[string]string{"X-Session-Patch": `{"n":1}`},
			race: concurrentPatch, races: maxAttempts, status: http.StatusServiceUnavailable, data: `{"other":4,"user":"ann"}`},
		{name: "refused update", session: true, answer: map[string]string{"X-Session-Update": `{"user":`}, status: http.StatusBadGateway, data: start},
		{name: "refused control", session: true, answer: map[string]string{"X-Session-Control": "explode"}, status: http.StatusBadGateway, data: start},
		{name: "refused create", answer: map[string]string{"X-Session-Update": `[1]`}, status: http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			t.Cleanup(func() { _ = mem.Close() })
			st := &racingStore{Store: mem, race: tc.race}
			h := commitHandler(t, st)
			var value, key string
			if tc.session {
				w, err := serveOnce(h, "", answering(map[string]string{"X-Session-Update": start}))
				var ok bool
				if value, _, ok = sessionCookie(w); err != nil || !ok {
					t.Fatalf("creating the session: %v, cookie %v", err, ok)
				}
				token, ok := h.signer.Verify("session", value)
				if !ok {
					t.Fatal("the session cookie does not verify")
				}
				key = cookie.Key(token)
			}
			st.races.Store(tc.races)

			w, err := serveOnce(h, value, answering(tc.answer))

			var he caddyhttp.HandlerError
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.status != 0 && (!errors.As(err, &he) || he.StatusCode != tc.status):
				t.Fatalf("error %v, want status %d", err, tc.status)
			}
			got, expired, sent := sessionCookie(w)
			switch {
			case tc.cookie == "" && sent:
				t.Fatalf("Set-Cookie %q (expired %v), want none", got, expired)
			case tc.cookie == "expired" && (!sent || !expired):
				t.Fatalf("Set-Cookie %q (sent %v), want an expired cookie", got, sent)
			case tc.cookie == "new" && (!sent || expired || got == value):
				t.Fatalf("Set-Cookie %q (sent %v, expired %v), want a new cookie", got, sent, expired)
			}
			dataKey := key
			if tc.cookie == "new" {
				token, ok := h.signer.Verify("session", got)
				if !ok {
					t.Fatal("the new cookie does not verify")
				}
				dataKey = cookie.Key(token)
			}
			var stored string
			if dataKey != "" {
				if rec, err := mem.Find(context.Background(), dataKey, time.Now()); err == nil {
					stored = string(rec.Data)
				}
			}
			if stored != tc.data {
				t.Errorf("stored %s, want %s", stored, tc.data)
			}
			if key != "" {
				_, err := mem.Find(context.Background(), key, time.Now())
				if gone := err != nil; gone != tc.oldGone {
					t.Errorf("the request's session gone: %v (%v), want %v", gone, err, tc.oldGone)
				}
			}
		})
	}
}
