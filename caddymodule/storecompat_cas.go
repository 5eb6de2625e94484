//go:build sessioncas

// This file is for the compare-and-set store contract. Remove the build
// constraint above, and delete storecompat_old.go, when the contract
// lands in caddymodule.

package caddymodule

import "github.com/sessiongate/caddy-session/store"

// subjectIndex is the store's optional subject index.
type subjectIndex = store.SubjectIndex

// sessionSummary describes a session in a subject listing.
type sessionSummary = store.Summary

// storeAnswers are the store errors that are answers, not failures: they
// are not counted in caddy_session_store_errors_total.
var storeAnswers = []error{store.ErrNotFound, store.ErrExists, store.ErrConflict, store.ErrRotated}
