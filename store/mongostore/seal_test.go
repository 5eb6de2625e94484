package mongostore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/caddy-session/store"
	"github.com/sessiongate/caddy-session/store/storetest"
)

// testKey returns a fixed 32-byte key: n in every byte.
func testKey(n byte) []byte { return bytes.Repeat([]byte{n}, KeyLen) }

// sealed returns options with encryption keys (the first seals) and a
// subject key.
func sealed(keys ...byte) Options {
	o := Options{SubjectKey: testKey(0xAA)}
	for _, k := range keys {
		o.EncryptionKeys = append(o.EncryptionKeys, testKey(k))
	}
	return o
}

// shareDB returns a store on s's client, database and collection with
// other options: another Caddy instance, another configuration.
func shareDB(t *testing.T, s *Store, opts Options) *Store {
	t.Helper()
	opts.Database, opts.Collection = s.coll.Database().Name(), s.coll.Name()
	o, err := New(s.client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	waitReady(t, o)
	return o
}

func logged(opts Options) (Options, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	opts.Logger = zap.New(core)
	return opts, logs
}

// TestConformanceSealed runs the suite on sealed stores.
func TestConformanceSealed(t *testing.T) {
	shared := open(t, Options{})
	newStore := func(t *testing.T) store.Store {
		opts := sealed(1, 2)
		opts.Database, opts.Collection = shared.coll.Database().Name(), uniqueCollection(t)
		s, err := New(shared.client, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		waitReady(t, s)
		return s
	}
	storetest.Run(t, newStore)
	t.Run("SubjectIndexRequired", func(t *testing.T) {
		storetest.RunSubjectIndex(t, newStore)
	})
}

const marker = "marker-7f3a9c"

// TestSealedDocumentShape: a sealed document holds neither the data nor
// the subject in the clear, names its key by id, and keeps the layout of
// docs/storage.md; what format 2 readers would take for data has another
// BSON type (they refuse it).
func TestSealedDocumentShape(t *testing.T) {
	t.Parallel()
	s := open(t, sealed(1))
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("5e", 32)
	rec := &store.Record{Data: raw(`{"secret":"` + marker + `"}`), Subject: marker + "-user", Sid: marker + "-sid", IdPSub: marker + "-isub",
		UserAgent: marker + "-agent", Addr: marker + "-addr", Created: now, Updated: now, Expires: now.Add(time.Hour)}
	if err := s.Create(t.Context(), key, rec); err != nil {
		t.Fatal(err)
	}
	check := func(doc bson.Raw) {
		t.Helper()
		if bytes.Contains(doc, []byte(marker)) {
			t.Fatalf("marker in the clear in %s", doc)
		}
		if f := wantType(t, doc, "f", bson.TypeInt32); f.Int32() != formatSealed {
			t.Fatalf("f = %d", f.Int32())
		}
		if k := wantType(t, doc, "k", bson.TypeString); k.StringValue() != KeyID(testKey(1)) {
			t.Fatalf("k = %s, want %s", k.StringValue(), KeyID(testKey(1)))
		}
		_, blob := wantType(t, doc, "data", bson.TypeBinary).Binary()
		if len(blob) < nonceLen+16+len(marker) {
			t.Fatalf("data is %d bytes", len(blob))
		}
		for _, f := range []string{"sub", "sid", "isub"} {
			if _, h := wantType(t, doc, f, bson.TypeBinary).Binary(); len(h) != 32 {
				t.Fatalf("%s is %d bytes", f, len(h))
			}
		}
		wantType(t, doc, "dev", bson.TypeBinary)
		wantAbsent(t, doc, "ua")
		wantAbsent(t, doc, "ip")
	}
	doc := rawDoc(t, s, key)
	check(doc)
	got, err := s.Find(t.Context(), key, now)
	if err != nil || string(got.Data) != string(rec.Data) || got.Subject != rec.Subject || got.Sid != rec.Sid ||
		got.IdPSub != rec.IdPSub || got.UserAgent != rec.UserAgent || got.Addr != rec.Addr {
		t.Fatalf("Find: %+v %v", got, err)
	}
	if list, err := s.FindBySubject(t.Context(), rec.Subject, now); err != nil || len(list) != 1 ||
		list[0].UserAgent != rec.UserAgent || list[0].Addr != rec.Addr {
		t.Fatalf("FindBySubject: %+v %v", list, err)
	}
	got.Data = raw(`{"secret":"` + marker + `","n":2}`)
	if err := s.Update(t.Context(), key, got, now); err != nil {
		t.Fatal(err)
	}
	doc2 := rawDoc(t, s, key)
	check(doc2)
	_, b1 := doc.Lookup("data").Binary()
	_, b2 := doc2.Lookup("data").Binary()
	if bytes.Equal(b1[:nonceLen], b2[:nonceLen]) {
		t.Fatal("the same nonce for two writes")
	}
	// A tombstone keeps no seal.
	if err := s.Rotate(t.Context(), key, 2, "0123456789ab", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	tomb := rawDoc(t, s, key)
	wantAbsent(t, tomb, "data")
	wantAbsent(t, tomb, "k")
	wantAbsent(t, tomb, "sub")
	wantAbsent(t, tomb, "sid")
	wantAbsent(t, tomb, "isub")
	if _, err := s.Find(t.Context(), key, now); !errors.Is(err, store.ErrRotated) {
		t.Fatalf("Find of the tombstone: %v", err)
	}
}

// TestFormat2ReaderRefusesSealed: the decoder of format 2 (kept here as it
// was before sealing: data must be an embedded document, sub a string)
// refuses a sealed document instead of reading it as an empty session.
// This version refuses a format it does not know the same way.
func TestFormat2ReaderRefusesSealed(t *testing.T) {
	t.Parallel()
	s := open(t, sealed(1))
	now := time.Now().Truncate(time.Millisecond)
	key := strings.Repeat("2f", 32)
	if err := s.Create(t.Context(), key, &store.Record{Data: raw(`{"a":1}`), Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	doc := rawDoc(t, s, key)
	if v := doc.Lookup("data"); v.Type == bson.TypeEmbeddedDocument {
		t.Fatalf("data is a document: a format 2 reader would read it")
	}
	future := bytes.Replace(doc, []byte{0x10, 'f', 0, 3, 0, 0, 0}, []byte{0x10, 'f', 0, 4, 0, 0, 0}, 1)
	if _, _, err := decodeDocument(future, now, s.sealer); !errors.Is(err, errBadDocument) || !strings.Contains(err.Error(), "format 4") {
		t.Fatalf("format 4 document: %v", err)
	}
}

// swapField exchanges field name's value between two documents by hand,
// as someone with write access to the collection could.
func swapField(t *testing.T, s *Store, k1, k2, name string) {
	t.Helper()
	v1, v2 := rawDoc(t, s, k1).Lookup(name), rawDoc(t, s, k2).Lookup(name)
	for _, kv := range []struct {
		key string
		v   bson.RawValue
	}{{k1, v2}, {k2, v1}} {
		if _, err := s.Collection().UpdateOne(t.Context(), bson.D{{Key: "_id", Value: kv.key}},
			bson.D{{Key: "$set", Value: bson.D{{Key: name, Value: kv.v}}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSealedTampering: a ciphertext moved to another document, a subject
// hash moved, a flipped byte, a truncated field: each reads as no
// session, never an error the gateway would answer 500 to; the failures
// are counted and logged at error level at most once a minute.
func TestSealedTampering(t *testing.T) {
	t.Parallel()
	opts, logs := logged(sealed(1))
	var hooked sync.Map
	opts.OnSealFailure = func(kind string) {
		n, _ := hooked.LoadOrStore(kind, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
	s := open(t, opts)
	now := time.Now().Truncate(time.Millisecond)
	create := func(key, subject string) {
		t.Helper()
		if err := s.Create(t.Context(), key, &store.Record{Data: raw(`{"who":"` + subject + `"}`), Subject: subject, Sid: "idp-" + subject,
			IdPSub: "isub-" + subject, UserAgent: "agent of " + subject, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			if rec, err := s.Find(t.Context(), k, now); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Find %s: %+v %v, want ErrNotFound", k[:4], rec, err)
			}
		}
	}
	a, b := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	create(a, "ann")
	create(b, "bob")
	swapField(t, s, a, b, "data")
	gone(a, b)

	c, d := strings.Repeat("c3", 32), strings.Repeat("d4", 32)
	create(c, "cat")
	create(d, "dan")
	swapField(t, s, c, d, "sub") // revoke-all of one would end the other's session
	gone(c, d)

	g, h := strings.Repeat("a7", 32), strings.Repeat("b8", 32)
	create(g, "gus")
	create(h, "hal")
	swapField(t, s, g, h, "sid") // a back-channel logout of one would end the other's
	gone(g, h)

	k, l := strings.Repeat("f1", 32), strings.Repeat("f2", 32)
	create(k, "kim")
	create(l, "lee")
	swapField(t, s, k, l, "isub") // a back-channel logout by sub of one would end the other's
	gone(k, l)

	i, j := strings.Repeat("c9", 32), strings.Repeat("da", 32)
	create(i, "ivy")
	create(j, "joe")
	swapField(t, s, i, j, "dev")
	gone(i, j)

	e := strings.Repeat("e5", 32)
	create(e, "eve")
	_, blob := rawDoc(t, s, e).Lookup("data").Binary()
	for name, bad := range map[string][]byte{
		"flipped":   append(append([]byte{}, blob[:len(blob)-1]...), blob[len(blob)-1]^1),
		"truncated": blob[:len(blob)-3],
		"short":     blob[:5],
		"empty":     {},
	} {
		if _, err := s.Collection().UpdateOne(t.Context(), bson.D{{Key: "_id", Value: e}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "data", Value: bson.Binary{Data: bad}}}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Find(t.Context(), e, now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s ciphertext: %v", name, err)
		}
	}
	if got := s.SealFailures(); got.Unopenable != 14 || got.UnknownKey != 0 {
		t.Fatalf("SealFailures = %+v, want 14 unopenable", got)
	}
	if n, ok := hooked.Load("unopenable"); !ok || n.(*atomic.Int64).Load() != 14 {
		t.Fatalf("OnSealFailure saw %v unopenable", n)
	}
	lines := logs.FilterMessageSnippet("does not open").All()
	if len(lines) != 1 || lines[0].Level != zapcore.ErrorLevel {
		t.Fatalf("%d lines about unopenable documents, want 1 at error level: %v", len(lines), lines)
	}
	// A minute later (the caller's clock), the next one is logged, with
	// the count since.
	if _, err := s.Find(t.Context(), e, now.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	lines = logs.FilterMessageSnippet("does not open").All()
	if len(lines) != 2 || lines[1].ContextMap()["count"] != int64(14) {
		t.Fatalf("after a minute: %v", lines)
	}
	for _, l := range logs.All() {
		if strings.Contains(l.Message+" "+strings.Join(contextStrings(l), " "), "ann") {
			t.Fatalf("a log line quotes session data: %v", l)
		}
	}
}

func contextStrings(l observer.LoggedEntry) []string {
	var out []string
	for k, v := range l.ContextMap() {
		out = append(out, k, strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\t", " ")))
	}
	return out
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case error:
		return v.Error()
	}
	return ""
}

// TestUnknownKeyAndRotation: the rotation steps on two instances sharing
// a collection keep every session; a session sealed under a key no longer
// configured reads as no session, counted, logged once naming the key id.
func TestUnknownKeyAndRotation(t *testing.T) {
	t.Parallel()
	old := open(t, sealed(1))
	now := time.Now().Truncate(time.Millisecond)
	key1, key2 := strings.Repeat("01", 32), strings.Repeat("02", 32)
	for _, k := range []string{key1, key2} {
		if err := old.Create(t.Context(), k, &store.Record{Data: raw(`{"n":1}`), Subject: "ann", Sid: "s1", UserAgent: "agent", Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	// Step 1: the new key (2) as an older key. Step 2: first.
	step1 := shareDB(t, old, sealed(1, 2))
	step2 := shareDB(t, old, sealed(2, 1))
	for _, s := range []*Store{old, step1, step2} {
		if rec, err := s.Find(t.Context(), key1, now); err != nil || string(rec.Data) != `{"n":1}` || rec.Subject != "ann" {
			t.Fatalf("Find: %+v %v", rec, err)
		}
	}
	// Step 3: a write reseals under the new key; old instances still open it.
	rec, _ := step2.Find(t.Context(), key1, now)
	rec.Data = raw(`{"n":2}`)
	if err := step2.Update(t.Context(), key1, rec, now); err != nil {
		t.Fatal(err)
	}
	if k := rawDoc(t, old, key1).Lookup("k").StringValue(); k != KeyID(testKey(2)) {
		t.Fatalf("resealed under %s", k)
	}
	if got, err := step1.Find(t.Context(), key1, now); err != nil || string(got.Data) != `{"n":2}` {
		t.Fatalf("an instance with the new key as an older one: %+v %v", got, err)
	}
	// The subject index finds both, whichever key sealed them.
	if list, err := step2.FindBySubject(t.Context(), "ann", now); err != nil || len(list) != 2 {
		t.Fatalf("FindBySubject across keys: %v %v", list, err)
	}
	// Step 4: the old key dropped: the resealed session lives on, the
	// other (never written since) is no session.
	opts, logs := logged(sealed(2))
	step4 := shareDB(t, old, opts)
	// The device fields, written at Create under the old key and never
	// resealed, read as empty; the session lives on.
	if got, err := step4.Find(t.Context(), key1, now); err != nil || string(got.Data) != `{"n":2}` || got.Sid != "s1" || got.UserAgent != "" {
		t.Fatalf("after dropping the old key: %+v %v", got, err)
	}
	if got, err := step2.Find(t.Context(), key1, now); err != nil || got.UserAgent != "agent" {
		t.Fatalf("device fields with both keys: %+v %v", got, err)
	}
	for range 3 {
		if _, err := step4.Find(t.Context(), key2, now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("sealed under a dropped key: %v", err)
		}
	}
	if got := step4.SealFailures(); got.UnknownKey != 3 {
		t.Fatalf("SealFailures = %+v", got)
	}
	lines := logs.FilterMessageSnippet("not configured").All()
	if len(lines) != 1 || lines[0].Level != zapcore.ErrorLevel || lines[0].ContextMap()["key_id"] != KeyID(testKey(1)) {
		t.Fatalf("want one error line naming key id %s: %v", KeyID(testKey(1)), lines)
	}
	// Without any key, a sealed document is no session too.
	plain := shareDB(t, old, Options{})
	if _, err := plain.Find(t.Context(), key1, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a store without keys: %v", err)
	}
}

// TestUnsealedDocuments: documents written in the clear read as before on
// a sealed store, are sealed by their next write, are found by subject
// meanwhile; RequireSealed refuses them.
func TestUnsealedDocuments(t *testing.T) {
	t.Parallel()
	plain := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	key, other := strings.Repeat("c1", 32), strings.Repeat("c2", 32)
	for _, k := range []string{key, other} {
		if err := plain.Create(t.Context(), k, &store.Record{Data: raw(`{"a":1}`), Subject: "ann", Sid: "s1", Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	opts, logs := logged(sealed(1))
	opts.RequireSealed = true
	strict := shareDB(t, plain, opts)
	if _, err := strict.Find(t.Context(), key, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RequireSealed read a clear document: %v", err)
	}
	if strict.SealFailures().Unsealed != 1 || logs.FilterMessageSnippet("require_sealed").Len() != 1 {
		t.Fatalf("not counted or not logged: %+v", strict.SealFailures())
	}
	if list, _ := strict.FindBySubject(t.Context(), "ann", now); len(list) != 0 {
		t.Fatalf("RequireSealed lists clear documents: %v", list)
	}

	s := shareDB(t, plain, sealed(1))
	rec, err := s.Find(t.Context(), key, now)
	if err != nil || string(rec.Data) != `{"a":1}` || rec.Subject != "ann" {
		t.Fatalf("clear document on a sealed store: %+v %v", rec, err)
	}
	if list, err := s.FindBySubject(t.Context(), "ann", now); err != nil || len(list) != 2 {
		t.Fatalf("FindBySubject before resealing: %v %v", list, err)
	}
	rec.Data = raw(`{"a":2}`)
	if err := s.Update(t.Context(), key, rec, now); err != nil {
		t.Fatal(err)
	}
	wantType(t, rawDoc(t, s, key), "data", bson.TypeBinary)
	if got, err := strict.Find(t.Context(), key, now); err != nil || string(got.Data) != `{"a":2}` {
		t.Fatalf("resealed document under RequireSealed: %+v %v", got, err)
	}
	if list, err := s.FindBySubject(t.Context(), "ann", now); err != nil || len(list) != 2 {
		t.Fatalf("FindBySubject, one sealed, one clear: %v %v", list, err)
	}
	if n, err := s.LimitSubject(t.Context(), "ann", 1, now); err != nil || n != 1 {
		t.Fatalf("LimitSubject, one sealed, one clear: %d %v", n, err)
	}
	if n, err := s.DeleteBySid(t.Context(), "s1"); err != nil || n != 1 {
		t.Fatalf("DeleteBySid, one left: %d %v", n, err)
	}
	if err := plain.Create(t.Context(), other, &store.Record{Data: raw(`{}`), Subject: "ann", Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteBySubject(t.Context(), "ann", ""); err != nil || n != 1 {
		t.Fatalf("DeleteBySubject of a clear one: %d %v", n, err)
	}
}

// TestKeyCheck: a wrong key and a changed subject key are reported at
// start-up; the rotation steps are not.
func TestKeyCheck(t *testing.T) {
	t.Parallel()
	first := open(t, sealed(1))
	startWith := func(opts Options) *observer.ObservedLogs {
		opts, logs := logged(opts)
		shareDB(t, first, opts)
		return logs.FilterLevelExact(zapcore.ErrorLevel)
	}
	if errs := startWith(sealed(1, 2)); errs.Len() != 0 {
		t.Fatalf("new key as an older one: %v", errs.All())
	}
	if errs := startWith(sealed(2, 1)); errs.Len() != 0 {
		t.Fatalf("new key first: %v", errs.All())
	}
	if errs := startWith(sealed(2)); errs.Len() != 0 {
		t.Fatalf("old key dropped: %v", errs.All())
	}
	errs := startWith(sealed(3, 1)) // a typo in the first key
	if errs.FilterMessageSnippet("none of the configured encryption keys").Len() != 1 {
		t.Fatalf("a wrong key not reported: %v", errs.All())
	}
	// The typo's key did not become the newest.
	if errs := startWith(sealed(2)); errs.Len() != 0 {
		t.Fatalf("after the typo: %v", errs.All())
	}
	other := sealed(2)
	other.SubjectKey = testKey(0xBB)
	if errs := startWith(other); errs.FilterMessageSnippet("subject_key differs").Len() != 1 {
		t.Fatalf("subject key changed: %v", errs.All())
	}
	n, err := first.Collection().CountDocuments(t.Context(), bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: checkIDPrefix}, {Key: "$lt", Value: "seal-check;"}}}})
	if err != nil || n != 2 {
		t.Fatalf("%d check documents, want 2 (keys 1 and 2; the typo's key is not recorded): %v", n, err)
	}
}

func TestParseKey(t *testing.T) {
	key := make([]byte, KeyLen)
	for i := range key {
		key[i] = byte(i * 7)
	}
	for _, s := range []string{
		hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key),
	} {
		got, err := ParseKey(s)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("ParseKey(%s) = %x, %v", s, got, err)
		}
	}
	secret := "correct horse battery staple"
	for _, s := range []string{"", secret, hex.EncodeToString(key[:16]), hex.EncodeToString(key) + "00",
		base64.StdEncoding.EncodeToString(key[:31]), strings.Repeat("z", 64)} {
		_, err := ParseKey(s)
		if err == nil || (s != "" && strings.Contains(err.Error(), s)) {
			t.Fatalf("ParseKey(%q): %v", s, err)
		}
	}
}

func TestSealOptionsValidate(t *testing.T) {
	for name, o := range map[string]Options{
		"short key":               {EncryptionKeys: [][]byte{testKey(1)[:31]}, SubjectKey: testKey(9)},
		"long key":                {EncryptionKeys: [][]byte{append(testKey(1), 0)}, SubjectKey: testKey(9)},
		"twice":                   {EncryptionKeys: [][]byte{testKey(1), testKey(1)}, SubjectKey: testKey(9)},
		"no subject key":          {EncryptionKeys: [][]byte{testKey(1)}},
		"short subject key":       {EncryptionKeys: [][]byte{testKey(1)}, SubjectKey: testKey(9)[:16]},
		"subject key reused":      {EncryptionKeys: [][]byte{testKey(1), testKey(2)}, SubjectKey: testKey(2)},
		"subject key alone":       {SubjectKey: testKey(9)},
		"require_sealed, no keys": {RequireSealed: true},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := sealed(1, 2).Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpen feeds the opener sealed payloads of any content, and documents
// of any bytes and mutations of sealed ones: it returns a record or an
// error, never panics, and never opens a changed ciphertext.
func FuzzOpen(f *testing.F) {
	sl, err := newSealer(sealed(1))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	good := func(id, subject, data string) []byte {
		s := &Store{sealer: sl}
		doc, err := s.encodeSealed(id, &store.Record{Data: raw(data), Subject: subject, Sid: subject, UserAgent: "ua", Addr: "ip", Expires: now.Add(time.Hour)})
		if err != nil {
			f.Fatal(err)
		}
		return doc
	}
	f.Add(good("k1", "ann", `{"a":1}`), []byte{}, 0, byte(0))
	f.Add(good("k4", "", `{"a":"b"}`), []byte("\x1b\x00\x00\x00\x02ua\x00\x02\x00\x00\x00x\x00\x02ip\x00\x02\x00\x00\x00y\x00\x00"), 7, byte(4))
	f.Add(good("k2", "", `{}`), []byte("\x05\x00\x00\x00\x00"), 40, byte(1))
	f.Add([]byte("\x05\x00\x00\x00\x00"), []byte("\x0d\x00\x00\x00\x02sub\x00\x01\x00\x00\x00\x00\x00"), 3, byte(0x80))
	f.Fuzz(func(t *testing.T, doc, payload []byte, at int, flip byte) {
		// Arbitrary plaintext, properly sealed: the payload reader.
		k := sl.keys[0]
		nonce := make([]byte, nonceLen)
		blob := k.aead.Seal(nonce[:nonceLen:nonceLen], nonce, payload, associatedData('f', "id", nil, nil, nil))
		if o, err := sl.open("id", k.id, blob, nil, nil, nil); err == nil && (o.data == nil || len(o.subject)+len(o.sid)+len(o.data) > len(payload)) {
			t.Fatalf("opened %q into %+v", payload, o)
		}
		dev := append([]byte{1, 2, 3, 4}, k.aead.Seal(nonce[:nonceLen:nonceLen], nonce, payload, associatedData('d', "id", nil, nil, nil))...)
		copy(dev, k.id) // not the raw id: unknown, read as empty
		if ua, addr, err := sl.openDevice("id", dev); err == nil && len(ua)+len(addr) > len(payload) {
			t.Fatalf("opened device %q into %q %q", payload, ua, addr)
		}
		// Arbitrary documents, and one byte of a good one changed.
		decodeDocument(doc, now, sl)
		decodeDocument(doc, now, nil)
		if _, _, err := (*sealer)(nil).openDevice("id", doc); err != nil && !errors.Is(err, errUnopenable) {
			t.Fatalf("openDevice without keys: %v", err)
		}
		g := good("k3", "ann", `{"x":[1,2]}`)
		if flip != 0 && len(g) > 0 {
			at = int(uint(at) % uint(len(g)))
			g[at] ^= flip
			if rec, _, err := decodeDocument(g, now, sl); err == nil && rec != nil && isSealedField(g, at) {
				t.Fatalf("a changed byte %d of the seal opened: %s", at, rec.Data)
			}
		}
	})
}

// isSealedField reports whether byte at of a sealed document lies inside
// the value of data (the sealed blob), where any change must be caught.
func isSealedField(doc []byte, at int) bool {
	v, err := bson.Raw(doc).LookupErr("data")
	if err != nil || v.Type != bson.TypeBinary {
		return false
	}
	start := bytes.Index(doc, v.Value)
	return start >= 0 && at >= start+5 && at < start+len(v.Value)
}

// sessionOf returns canonical session data of about n bytes.
func sessionOf(n int) string {
	var b strings.Builder
	b.WriteString(`{"csrf":"q2V4n8s0lKc3yJtY1mR7aQ","items":[`)
	for i := 0; b.Len() < n-60; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"price":12.5,"qty":2,"sku":"A-1001"}`)
	}
	b.WriteString(`],"user":{"email":"ann@example.com","id":42}}`)
	return b.String()
}

var benchSizes = []struct {
	name string
	data string
}{{"300B", sessionOf(300)}, {"4KB", sessionOf(4096)}}

// BenchmarkDecode is the read path without the network: a stored
// document to the record Find returns, in the clear (BSON to canonical
// JSON, appendJSON) and sealed (AES-256-GCM open of the JSON).
func BenchmarkDecode(b *testing.B) {
	now := time.Now()
	for _, mode := range []string{"clear", "sealed"} {
		s := benchStore(b, mode)
		for _, size := range benchSizes {
			b.Run(mode+"/"+size.name, func(b *testing.B) {
				doc, err := s.encodeDocument(b.Context(), strings.Repeat("be", 32), &store.Record{Data: raw(size.data), Subject: "ann", Expires: now.Add(time.Hour)})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(size.data)))
				for b.Loop() {
					rec, _, err := decodeDocument(doc, now, s.sealer)
					if err != nil || len(rec.Data) != len(size.data) {
						b.Fatalf("decode: %v", err)
					}
				}
			})
		}
	}
}

// BenchmarkEncode is the write path without the network: a record to the
// document Create inserts (checking the data, converting or sealing it).
func BenchmarkEncode(b *testing.B) {
	now := time.Now()
	for _, mode := range []string{"clear", "sealed"} {
		s := benchStore(b, mode)
		for _, size := range benchSizes {
			b.Run(mode+"/"+size.name, func(b *testing.B) {
				rec := &store.Record{Data: raw(size.data), Subject: "ann", Expires: now.Add(time.Hour)}
				b.ReportAllocs()
				b.SetBytes(int64(len(size.data)))
				for b.Loop() {
					if _, err := s.encodeDocument(b.Context(), strings.Repeat("be", 32), rec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchStore is a Store with no server, enough to encode and decode.
func benchStore(b *testing.B, mode string) *Store {
	s := &Store{probed: make(chan struct{})}
	close(s.probed)
	if mode == "sealed" {
		sl, err := newSealer(sealed(1))
		if err != nil {
			b.Fatal(err)
		}
		s.sealer = sl
	}
	return s
}

// TestReseal: batches reseal clear sessions and sessions under an older
// key under the first key, keeping versions, times, subjects and device
// fields; sessions that do not open are passed over; the handle cursor
// reaches the end.
func TestReseal(t *testing.T) {
	t.Parallel()
	plain := open(t, Options{})
	now := time.Now().Truncate(time.Millisecond)
	type made struct {
		key string
		rec *store.Record
	}
	var all []made
	create := func(s *Store, i int) {
		t.Helper()
		key := fmt.Sprintf("%02x", i) + strings.Repeat("0", 62)
		rec := &store.Record{Data: raw(fmt.Sprintf(`{"i":%d}`, i)), Subject: fmt.Sprintf("user-%d", i%2), UserAgent: fmt.Sprintf("agent %d", i),
			Created: now.Add(-time.Hour), Updated: now.Add(-time.Minute), Expires: now.Add(time.Hour)}
		if err := s.Create(t.Context(), key, rec); err != nil {
			t.Fatal(err)
		}
		all = append(all, made{key, rec})
	}
	old, lost := shareDB(t, plain, sealed(1)), shareDB(t, plain, sealed(9))
	for i, s := range []*Store{plain, old, plain, lost, old, plain} {
		create(s, i+1)
	}
	s := shareDB(t, plain, sealed(2, 1))
	if _, _, _, err := plain.Reseal(t.Context(), 10, "", now); err == nil {
		t.Fatal("Reseal without keys")
	}
	var resealed, skipped, calls int
	for after := ""; ; calls++ {
		r, k, next, err := s.Reseal(t.Context(), 2, after, now)
		if err != nil {
			t.Fatal(err)
		}
		resealed, skipped = resealed+r, skipped+k
		if next == "" {
			break
		}
		after = next
	}
	if resealed != 5 || skipped != 1 || calls != 3 {
		t.Fatalf("resealed %d, passed over %d, in %d calls; want 5, 1, 3", resealed, skipped, calls)
	}
	only2 := shareDB(t, plain, sealed(2))
	for i, m := range all {
		doc := rawDoc(t, s, m.key)
		if i == 3 {
			if k := doc.Lookup("k").StringValue(); k != KeyID(testKey(9)) {
				t.Fatalf("the session under an unknown key was changed: %s", doc)
			}
			continue
		}
		if k := doc.Lookup("k").StringValue(); k != KeyID(testKey(2)) {
			t.Fatalf("session %d not resealed: k %q", i+1, k)
		}
		wantAbsent(t, doc, "ua")
		got, err := only2.Find(t.Context(), m.key, now)
		if err != nil || string(got.Data) != string(m.rec.Data) || got.Subject != m.rec.Subject || got.UserAgent != m.rec.UserAgent ||
			got.Version != 1 || !got.Updated.Equal(m.rec.Updated) {
			t.Fatalf("session %d after reseal: %+v %v", i+1, got, err)
		}
	}
	if list, err := only2.FindBySubject(t.Context(), "user-1", now); err != nil || len(list) != 3 {
		t.Fatalf("FindBySubject after reseal: %v %v", list, err)
	}
	if r, k, next, err := s.Reseal(t.Context(), 10, "", now); err != nil || r != 0 || k != 1 || next != "" {
		t.Fatalf("a second pass: %d %d %q %v", r, k, next, err)
	}
}
