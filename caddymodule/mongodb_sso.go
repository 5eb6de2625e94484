package caddymodule

import (
	"context"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// DeleteBySid implements store.SidIndex.
func (g *guardedStore) DeleteBySid(ctx context.Context, sid string) (int, error) {
	st, err := g.acquire()
	if err != nil {
		return 0, err
	}
	defer g.inflight.Done()
	return st.DeleteBySid(ctx, sid)
}

// LimitSubject implements store.SubjectLimiter.
func (g *guardedStore) LimitSubject(ctx context.Context, subject string, n int, now time.Time) (int, error) {
	st, err := g.acquire()
	if err != nil {
		return 0, err
	}
	defer g.inflight.Done()
	return st.LimitSubject(ctx, subject, n, now)
}

// FirstUse implements store.ReplayGuard.
func (g *guardedStore) FirstUse(ctx context.Context, id string, until, now time.Time) (bool, error) {
	st, err := g.acquire()
	if err != nil {
		return false, err
	}
	defer g.inflight.Done()
	return st.FirstUse(ctx, id, until, now)
}

// Interface guards.
var (
	_ store.SidIndex       = (*guardedStore)(nil)
	_ store.SubjectLimiter = (*guardedStore)(nil)
	_ store.ReplayGuard    = (*guardedStore)(nil)
)

// ssoBackend is the store behind the module (pre-reshape only).
func (m *MongoDBStore) ssoBackend() store.Store { return m.guard }
