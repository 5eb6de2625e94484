package adopt_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/internal/adopt"
	"github.com/sessiongate/caddy-session/store"
)

// Example shows how a gateway handler uses a Source on a request that has
// no live gateway session. It is compiled, not run: it needs a store and
// a legacy app.
func Example() {
	var (
		sources []*adopt.Source // one per `adopt` block, from adopt.New
		st      store.Store
		w       http.ResponseWriter
		r       *http.Request
		now     = time.Now()
		idle    = time.Hour
	)
	live := false // the gateway cookie gave a live session
	for _, src := range sources {
		if !src.Present(r.Header) {
			continue // the cost of a request without legacy cookies
		}
		if live { // a gateway session always wins; the legacy cookie goes
			for _, c := range src.Discard(r.Header, r.TLS != nil) {
				w.Header().Add("Set-Cookie", c)
			}
			continue
		}
		token := cookie.NewToken()
		key := cookie.Key(token)
		leg, err := src.Adopt(r.Context(), r, now, key)
		if err != nil {
			return // store outage: 503, as for the gateway's own store
		}
		for _, c := range leg.Expire {
			w.Header().Add("Set-Cookie", c)
		}
		switch leg.Outcome {
		case adopt.OutcomeRefused:
			slog.Info("legacy session not adopted", "source", src.Name(), "reason", leg.Reason)
		case adopt.OutcomeAdopted:
			rec := &store.Record{Data: leg.Data, Created: now, Updated: now, Expires: now.Add(idle)}
			if err := st.Create(r.Context(), key, rec); err != nil {
				_ = leg.Release(context.WithoutCancel(r.Context())) // adoptable again
				return                                              // 503
			}
			// Set the gateway cookie for token; X-Session is leg.Data and
			// X-Session-Meta says "adopted": src.Name().
			live = true
		case adopt.OutcomeJoined:
			rec, err := st.Find(r.Context(), leg.Key, now)
			switch {
			case err == nil:
				_ = rec // serve the adopted session; set no cookie
			case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRotated):
				_ = leg.Data // the claimant has not stored it yet: serve it read-only
			}
			live = true
		}
	}
}
