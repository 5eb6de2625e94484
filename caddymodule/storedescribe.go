package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessiongate/caddy-session/cookie"
)

// describeStore implements storeDescriber: memory stores of one name
// share one map.
func (m *MemoryStore) describeStore() storeDescription {
	name := m.Name
	if name == "" {
		name = defaultMemoryStoreName
	}
	d := storeDescription{name: name, id: "memory:" + name, idx: m.SubjectIndex(), inProcess: true}
	if m.Store != nil {
		d.size = m.Store.Len
	}
	return d
}

// describeStore implements storeDescriber: MongoDB stores on the same
// server (by URI) and collection share their sessions. The URI is only
// hashed into the identity, never kept.
func (m *MongoDBStore) describeStore() storeDescription {
	name := "mongodb"
	if m.guard != nil {
		if st, err := m.guard.acquire(); err == nil {
			coll := st.Collection()
			name = coll.Database().Name() + "." + coll.Name()
			m.guard.inflight.Done()
		}
	}
	uri := strings.TrimSpace(caddy.NewReplacer().ReplaceKnown(m.URI, ""))
	sum := sha256.Sum256([]byte(uri))
	return storeDescription{name: name, id: "mongodb:" + hex.EncodeToString(sum[:8]) + "/" + name, idx: m.SubjectIndex()}
}

// requestOutcomeOf is the metrics outcome of a request whose cookies
// were o; loaded says whether a live session was loaded for a valid one.
func requestOutcomeOf(o cookie.Outcome, loaded bool) requestOutcome {
	switch o {
	case cookie.OutcomeValid:
		if loaded {
			return outcomeValid
		}
		return outcomeExpired
	case cookie.OutcomeInvalid:
		return outcomeInvalid
	case cookie.OutcomeAmbiguous:
		return outcomeAmbiguous
	}
	return outcomeNone
}
