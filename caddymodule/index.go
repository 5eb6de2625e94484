package caddymodule

import "github.com/sessiongate/caddy-session/store"

// SubjectIndex returns the memory store's subject index.
func (m *MemoryStore) SubjectIndex() store.SubjectIndex {
	if m.Store == nil {
		return nil
	}
	return m.Store
}

// SubjectIndex returns the MongoDB store's subject index.
func (m *MongoDBStore) SubjectIndex() store.SubjectIndex {
	si, _ := m.Store.(store.SubjectIndex)
	return si
}
