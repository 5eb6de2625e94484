//go:build !sessioncas

// Delete this file with storecompat_old.go: it runs the admin API and
// command walks on the store contract before compare-and-set, whose
// stores have no subject index, through a test store that adds one.

package caddymodule

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/memstore"
)

func init() { caddy.RegisterModule(new(indexedTestStore)) }

// indexedTestStore is a real memory store with a subject index on the
// data's "user" key (http.session.stores.indexed).
type indexedTestStore struct {
	*memstore.Store
	mu   sync.Mutex
	keys map[string]map[string]bool // subject -> keys
}

func (*indexedTestStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.session.stores.indexed", New: func() caddy.Module { return new(indexedTestStore) }}
}

func (s *indexedTestStore) Provision(caddy.Context) error {
	s.Store, s.keys = memstore.New(), map[string]map[string]bool{}
	return nil
}

func (s *indexedTestStore) Cleanup() error { return s.Store.Close() }

func (*indexedTestStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (s *indexedTestStore) index(key string, data map[string]json.RawMessage) {
	var subject string
	if json.Unmarshal(data["user"], &subject) != nil || subject == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[subject] == nil {
		s.keys[subject] = map[string]bool{}
	}
	s.keys[subject][key] = true
}

func (s *indexedTestStore) Create(ctx context.Context, key string, rec *store.Record) error {
	err := s.Store.Create(ctx, key, rec)
	if err == nil {
		s.index(key, rec.Data)
	}
	return err
}

func (s *indexedTestStore) Apply(ctx context.Context, key string, ch store.Change, now time.Time) error {
	err := s.Store.Apply(ctx, key, ch, now)
	if err == nil {
		if rec, err := s.Store.Find(ctx, key, now); err == nil {
			s.index(key, rec.Data)
		}
	}
	return err
}

func (s *indexedTestStore) subjectKeys(subject string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.keys[subject] {
		keys = append(keys, k)
	}
	return keys
}

func (s *indexedTestStore) FindBySubject(ctx context.Context, subject string, now time.Time) ([]sessionSummary, error) {
	var list []sessionSummary
	for _, k := range s.subjectKeys(subject) {
		if rec, err := s.Store.Find(ctx, k, now); err == nil {
			list = append(list, sessionSummary{Handle: cookie.Handle(k), Created: rec.Created, Updated: rec.Updated, Expires: rec.Expires})
		}
	}
	return list, nil
}

func (s *indexedTestStore) DeleteBySubject(ctx context.Context, subject, exceptKey string) (int, error) {
	n := 0
	for _, k := range s.subjectKeys(subject) {
		if k == exceptKey {
			continue
		}
		if _, err := s.Store.Find(ctx, k, now()); err == nil {
			n++
		}
		_ = s.Store.Delete(ctx, k)
		s.mu.Lock()
		delete(s.keys[subject], k)
		s.mu.Unlock()
	}
	return n, nil
}

func (s *indexedTestStore) DeleteByHandle(ctx context.Context, handle string) (int, error) {
	s.mu.Lock()
	var found []string
	for _, keys := range s.keys {
		for k := range keys {
			if strings.HasPrefix(k, handle) {
				found = append(found, k)
			}
		}
	}
	s.mu.Unlock()
	n := 0
	for _, k := range found {
		if _, err := s.Store.Find(ctx, k, now()); err == nil {
			n++
		}
		_ = s.Store.Delete(ctx, k)
	}
	return n, nil
}

const indexedSession = "\tsession {\n\t\tsecret " + testSecret + "\n\t\tstore indexed\n\t}\n"

func TestAdminWalkOldContract(t *testing.T) {
	adminWalk(t, indexedSession, "indexed")
}

func TestCommandListRevokeOldContract(t *testing.T) {
	commandWalk(t, indexedSession)
}
