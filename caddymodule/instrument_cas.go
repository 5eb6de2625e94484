//go:build sessioncas

// This file is for the compare-and-set store contract (store.Store with
// Update and Rotate). Remove the build constraint above when the contract
// lands in caddymodule.

package caddymodule

import (
	"context"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// Update implements store.Store.
func (s *instrumentedStore) Update(ctx context.Context, key string, rec *store.Record, now time.Time) error {
	start := time.Now()
	err := s.Store.Update(ctx, key, rec, now)
	s.done(storeUpdate, start, err)
	return err
}

// Rotate implements store.Store.
func (s *instrumentedStore) Rotate(ctx context.Context, key string, version int64, successor string, until, now time.Time) error {
	start := time.Now()
	err := s.Store.Rotate(ctx, key, version, successor, until, now)
	s.done(storeRotate, start, err)
	return err
}
