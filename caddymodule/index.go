package caddymodule

import (
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/caddy-session/store"
)

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

// LegacyDatabase returns the MongoDB store's database, where legacy sessions
// being adopted are read from by default; nil once the module is cleaned up.
func (m *MongoDBStore) LegacyDatabase() *mongo.Database {
	if m.guard == nil {
		return nil
	}
	st, err := m.guard.acquire()
	if err != nil {
		return nil
	}
	defer m.guard.inflight.Done()
	return st.Collection().Database()
}
