//go:build !sessioncas

// This file bridges the store contract before compare-and-set (Apply, no
// subject index). Delete it, and remove the build constraints of
// storecompat_cas.go and instrument_cas.go, when the new contract lands
// in caddymodule.

package caddymodule

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/store"
)

// subjectIndex has the method set of the new contract's
// store.SubjectIndex.
type subjectIndex interface {
	FindBySubject(ctx context.Context, subject string, now time.Time) ([]sessionSummary, error)
	DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error)
	DeleteByHandle(ctx context.Context, handle string) (int, error)
}

// sessionSummary has the fields of the new contract's store.Summary.
type sessionSummary struct {
	Handle  string
	Created time.Time
	Updated time.Time
	Expires time.Time
}

// storeAnswers are the store errors that are answers, not failures.
var storeAnswers = []error{store.ErrNotFound, store.ErrExists}

// Apply implements the old store.Store, timed as "update".
func (s *instrumentedStore) Apply(ctx context.Context, key string, ch store.Change, now time.Time) error {
	start := time.Now()
	err := s.Store.Apply(ctx, key, ch, now)
	s.done(storeUpdate, start, err)
	return err
}

// Cleanup unregisters the handler's store from the admin API and the
// active-sessions gauge.
func (h *Handler) Cleanup() error {
	if h.unregisterStore != nil {
		h.unregisterStore()
	}
	return nil
}

var _ caddy.CleanerUpper = (*Handler)(nil) // main: Handler.Cleanup calls h.unregisterStore()

// createOp (old handler only) is the write a successful create counts as: a regenerate when
// the request had a session, a create otherwise.
func createOp(regenerate bool) writeOp {
	if regenerate {
		return writeRegenerate
	}
	return writeCreate
}
