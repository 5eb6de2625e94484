//go:build !sessioncas

// Delete this file with storecompat_old.go: storedescribe_cas.go describes
// the store modules as they are on main.

package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// describeStore implements storeDescriber: memory stores of one name
// share one map.
func (m *MemoryStore) describeStore() storeDescription {
	name := m.Name
	if name == "" {
		name = defaultMemoryStoreName
	}
	d := storeDescription{name: name, id: "memory:" + name}
	if l, ok := m.Store.(interface{ Len() int }); ok {
		d.size = l.Len
	}
	d.idx, _ = m.Store.(subjectIndex)
	return d
}

// describeStore implements storeDescriber: MongoDB stores on the same
// server (by URI) and collection share their sessions. The URI is only
// hashed into the identity, never kept.
func (m *MongoDBStore) describeStore() storeDescription {
	name := "mongodb"
	var idx subjectIndex
	if m.mstore != nil {
		coll := m.mstore.Collection()
		name = coll.Database().Name() + "." + coll.Name()
		idx, _ = any(m.mstore).(subjectIndex)
	}
	uri := strings.TrimSpace(caddy.NewReplacer().ReplaceKnown(m.URI, ""))
	sum := sha256.Sum256([]byte(uri))
	return storeDescription{name: name, id: "mongodb:" + hex.EncodeToString(sum[:8]) + "/" + name, idx: idx}
}
