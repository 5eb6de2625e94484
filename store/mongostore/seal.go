package mongostore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// Sealing: encryption at rest (docs/storage.md, "Sealed documents").
//
// With Options.EncryptionKeys set, the store writes format 3: the subject
// and the session data are sealed together with AES-256-GCM (a random
// 96-bit nonce per write) under the first key, and kept in data as BSON
// binary: the nonce, then the ciphertext and its tag. The associated data
// is the format version, the document's _id and the subject's hash, so a
// ciphertext copied onto another document, or given another subject hash,
// does not open. The document names its key by a key id (KeyID: a keyed
// hash of the key, never the key). The subject is kept beside it as
// HMAC-SHA-256 under Options.SubjectKey, a separate key that does not
// rotate with the encryption keys, so the sub index finds sessions sealed
// under any key.
//
// A reader of format 2 (the versions before sealing) finds data of BSON
// type binary and sub of type binary, which it refuses as an unreadable
// document: it never serves a sealed session as an empty one and never
// writes clear data over it.

// formatSealed is the format of a sealed document.
const formatSealed int32 = 3

// fieldKeyID names the key that sealed a document (format 3 only).
const fieldKeyID = "k"

// KeyLen is the length of an encryption key and of the subject key.
const KeyLen = 32

// The sealed payload: a BSON document holding the clear subject and the
// session data's canonical JSON.
const (
	payloadSubject = "sub"
	payloadSid     = "sid"
	payloadIdPSub  = "isub"
	payloadData    = "data"
	payloadUA      = "ua" // in the device payload
	payloadAddr    = "ip" // in the device payload
)

const nonceLen = 12 // GCM's standard nonce

// ParseKey reads a 32-byte key written as 64 hex digits (what
// `caddy session gen-secret` prints) or in base64 (standard or URL
// alphabet, padded or not). Errors never quote the key.
func ParseKey(s string) ([]byte, error) {
	if k, err := hex.DecodeString(s); err == nil && len(s) > 0 {
		// Hex (base64 of a 32-byte key is 43 or 44 characters, never
		// only hex digits in practice).
		if len(k) != KeyLen {
			return nil, fmt.Errorf("mongostore: a key is %d random bytes (%d hex digits); this one is %d bytes of hex (`caddy session gen-secret` prints a suitable key)", KeyLen, 2*KeyLen, len(k))
		}
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.Strict().DecodeString(s)
		if err != nil {
			continue
		}
		if len(k) != KeyLen {
			return nil, fmt.Errorf("mongostore: a key is %d random bytes; this one decodes to %d (`caddy session gen-secret` prints a suitable key)", KeyLen, len(k))
		}
		return k, nil
	}
	return nil, fmt.Errorf("mongostore: a key is %d random bytes written as %d hex digits or in base64; this one (%d characters) is neither (`caddy session gen-secret` prints a suitable key)",
		KeyLen, 2*KeyLen, len(s))
}

// KeyID returns the short name of a key that documents and log lines
// carry: 8 hex digits of HMAC-SHA-256 under the key of a fixed text. It
// tells keys apart and reveals nothing usable about the key.
func KeyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("caddy-session key id"))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// validateSealOptions checks the key options (Options.Validate).
func validateSealOptions(o Options) error {
	seen := map[string]bool{}
	for i, k := range o.EncryptionKeys {
		if len(k) != KeyLen {
			return fmt.Errorf("mongostore: encryption key %d is %d bytes, want %d", i+1, len(k), KeyLen)
		}
		id := KeyID(k)
		if seen[id] {
			return fmt.Errorf("mongostore: encryption key %d (key id %s) is given twice", i+1, id)
		}
		seen[id] = true
	}
	switch {
	case len(o.EncryptionKeys) == 0 && o.SubjectKey != nil:
		return errors.New("mongostore: a subject key without encryption keys: the subject is hashed only in sealed documents")
	case len(o.EncryptionKeys) == 0 && o.RequireSealed:
		return errors.New("mongostore: require_sealed without encryption keys would refuse every session")
	case len(o.EncryptionKeys) == 0:
		return nil
	case o.SubjectKey == nil:
		return errors.New("mongostore: encryption keys need a subject key (the HMAC key of the subject index, which does not rotate with them)")
	case len(o.SubjectKey) != KeyLen:
		return fmt.Errorf("mongostore: the subject key is %d bytes, want %d", len(o.SubjectKey), KeyLen)
	case seen[KeyID(o.SubjectKey)]:
		return errors.New("mongostore: the subject key must differ from every encryption key")
	}
	return nil
}

// sealKey is one encryption key, ready to use.
type sealKey struct {
	id   string
	aead cipher.AEAD
}

// sealer seals and opens documents. A nil *sealer is a store without
// encryption keys.
type sealer struct {
	keys          []sealKey // the first seals; all open
	subjectKey    []byte
	subjectID     string
	requireSealed bool
}

// newSealer returns the sealer for validated options, or nil when no
// encryption key is set.
func newSealer(o Options) (*sealer, error) {
	if len(o.EncryptionKeys) == 0 {
		return nil, nil
	}
	sl := &sealer{subjectKey: o.SubjectKey, subjectID: KeyID(o.SubjectKey), requireSealed: o.RequireSealed}
	for _, k := range o.EncryptionKeys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("mongostore: encryption key: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("mongostore: encryption key: %w", err)
		}
		sl.keys = append(sl.keys, sealKey{id: KeyID(k), aead: aead})
	}
	return sl, nil
}

func (sl *sealer) key(id string) *sealKey {
	for i := range sl.keys {
		if sl.keys[i].id == id {
			return &sl.keys[i]
		}
	}
	return nil
}

func (sl *sealer) keyIDs() []string {
	ids := make([]string, len(sl.keys))
	for i, k := range sl.keys {
		ids[i] = k.id
	}
	return ids
}

// subjectHash is the stored form of a subject: HMAC-SHA-256 under the
// subject key.
func (sl *sealer) subjectHash(subject string) []byte {
	m := hmac.New(sha256.New, sl.subjectKey)
	m.Write([]byte(subject))
	return m.Sum(nil)
}

// sidHash is the stored form of an IdP session id: HMAC-SHA-256 under the
// subject key of "sid", NUL, the sid. No subject holds a NUL byte
// (store.CanonicalSubject), so no sid hashes like a subject.
func (sl *sealer) sidHash(sid string) []byte {
	m := hmac.New(sha256.New, sl.subjectKey)
	m.Write([]byte("sid\x00"))
	m.Write([]byte(sid))
	return m.Sum(nil)
}

// isubHash is the stored form of an IdP subject (Record.IdPSub):
// HMAC-SHA-256 under the subject key of "isub", NUL, the value, so it
// hashes like no subject and no sid.
func (sl *sealer) isubHash(sub string) []byte {
	m := hmac.New(sha256.New, sl.subjectKey)
	m.Write([]byte("isub\x00"))
	m.Write([]byte(sub))
	return m.Sum(nil)
}

// associatedData binds a ciphertext to its document: a tag ('f' for the
// data, 'd' for the device fields), the format version, the _id, and the
// stored subject and sid hashes, each after its length (0 without one),
// then the IdP subject hash after its length only when there is one, so
// documents sealed before that field still open.
func associatedData(tag byte, id string, subHash, sidHash, isubHash []byte) []byte {
	ad := make([]byte, 0, 2+len(id)+4+len(subHash)+len(sidHash)+len(isubHash))
	ad = append(ad, tag, byte(formatSealed))
	ad = append(ad, id...)
	ad = append(ad, 0, byte(len(subHash)))
	ad = append(ad, subHash...)
	ad = append(ad, byte(len(sidHash)))
	ad = append(ad, sidHash...)
	if len(isubHash) > 0 {
		ad = append(ad, byte(len(isubHash)))
		ad = append(ad, isubHash...)
	}
	return ad
}

// sealedParts is what seal makes of a record.
type sealedParts struct {
	blob                       []byte // the nonce, then the ciphertext and tag
	keyID                      string
	subHash, sidHash, isubHash []byte // nil when the record has none
}

// seal seals the record's subject, sid and data for document id under
// the first key, and hashes its subject and sid.
func (sl *sealer) seal(id string, rec *store.Record) (p sealedParts, err error) {
	data := rec.Data
	if len(data) == 0 {
		data = []byte("{}")
	}
	if rec.Subject != "" {
		p.subHash = sl.subjectHash(rec.Subject)
	}
	if rec.Sid != "" {
		p.sidHash = sl.sidHash(rec.Sid)
	}
	if rec.IdPSub != "" {
		p.isubHash = sl.isubHash(rec.IdPSub)
	}
	k := &sl.keys[0]
	p.keyID = k.id
	size := len(data) + len(rec.Subject) + len(rec.Sid) + len(rec.IdPSub) + 40
	p.blob, err = sealPayload(k.aead, size, associatedData('f', id, p.subHash, p.sidHash, p.isubHash),
		func(pt []byte) []byte {
			if rec.Subject != "" {
				pt = bsoncore.AppendStringElement(pt, payloadSubject, rec.Subject)
			}
			if rec.Sid != "" {
				pt = bsoncore.AppendStringElement(pt, payloadSid, rec.Sid)
			}
			if rec.IdPSub != "" {
				pt = bsoncore.AppendStringElement(pt, payloadIdPSub, rec.IdPSub)
			}
			return bsoncore.AppendBinaryElement(pt, payloadData, 0, data)
		})
	return p, err
}

// sealPayload builds a payload document with fields and seals it in
// place: the nonce, then the ciphertext and tag.
func sealPayload(aead cipher.AEAD, size int, ad []byte, fields func([]byte) []byte) ([]byte, error) {
	buf := make([]byte, nonceLen, nonceLen+size+5+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("mongostore: nonce: %w", err)
	}
	idx, pt := bsoncore.AppendDocumentStart(buf[nonceLen:])
	pt, err := bsoncore.AppendDocumentEnd(fields(pt), idx)
	if err != nil {
		return nil, err
	}
	// The ciphertext overwrites the payload, right after the nonce.
	return aead.Seal(buf[:nonceLen], buf[:nonceLen], pt, ad), nil
}

// sealDevice seals the User-Agent and address Create stores, under the
// first key, as the key id's 4 bytes, then the nonce, ciphertext and tag:
// Update leaves them, so they carry their own key id. It returns nil when
// both are empty.
func (sl *sealer) sealDevice(id, ua, addr string) ([]byte, error) {
	if ua == "" && addr == "" {
		return nil, nil
	}
	k := &sl.keys[0]
	blob, err := sealPayload(k.aead, len(ua)+len(addr)+16, associatedData('d', id, nil, nil, nil), func(pt []byte) []byte {
		pt = bsoncore.AppendStringElement(pt, payloadUA, ua)
		return bsoncore.AppendStringElement(pt, payloadAddr, addr)
	})
	if err != nil {
		return nil, err
	}
	kid, _ := hex.DecodeString(k.id)
	return append(kid, blob...), nil
}

// errUnopenable is wrapped by errors about a sealed document that does not
// open under the key it names: tampered with, moved from another document,
// or truncated.
var errUnopenable = errors.New("sealed session document does not open")

// errUnsealed is returned for a document without a seal when sealed
// documents are required.
var errUnsealed = errors.New("session document is not sealed (require_sealed)")

// unknownKeyError is returned for a document sealed under a key that is
// not configured.
type unknownKeyError struct{ keyID string }

func (e *unknownKeyError) Error() string {
	return "session document sealed under key id " + e.keyID + ", which is not configured"
}

// opened is what open reads from a sealed document.
type opened struct {
	subject, sid, isub string
	data               []byte
}

// open reverses seal for document id.
func (sl *sealer) open(id, keyID string, blob, subHash, sidHash, isubHash []byte) (o opened, err error) {
	pt, err := sl.openPayload(keyID, blob, associatedData('f', id, subHash, sidHash, isubHash))
	if err != nil {
		return o, err
	}
	err = readPayload(pt, func(key string, v bsoncore.Value) (ok bool) {
		switch key {
		case payloadSubject:
			o.subject, ok = v.StringValueOK()
		case payloadSid:
			o.sid, ok = v.StringValueOK()
		case payloadIdPSub:
			o.isub, ok = v.StringValueOK()
		case payloadData:
			var sub byte
			sub, o.data, ok = v.BinaryOK()
			ok = ok && sub == 0
		default:
			ok = true
		}
		return ok
	})
	if err == nil && o.data == nil {
		err = fmt.Errorf("%w: payload without data", errUnopenable)
	}
	return o, err
}

// openDevice reverses sealDevice. Device fields sealed under a key no
// longer configured (the data was resealed since, the fields were not)
// read as empty: the session lives on.
func (sl *sealer) openDevice(id string, blob []byte) (ua, addr string, err error) {
	if len(blob) < 4 {
		return "", "", fmt.Errorf("%w: device fields truncated", errUnopenable)
	}
	keyID := hex.EncodeToString(blob[:4])
	if sl == nil || sl.key(keyID) == nil {
		return "", "", nil
	}
	pt, err := sl.openPayload(keyID, blob[4:], associatedData('d', id, nil, nil, nil))
	if err != nil {
		return "", "", err
	}
	err = readPayload(pt, func(key string, v bsoncore.Value) (ok bool) {
		switch key {
		case payloadUA:
			ua, ok = v.StringValueOK()
		case payloadAddr:
			addr, ok = v.StringValueOK()
		default:
			ok = true
		}
		return ok
	})
	return ua, addr, err
}

// openPayload authenticates and decrypts a sealed blob under the key
// named keyID.
func (sl *sealer) openPayload(keyID string, blob, ad []byte) ([]byte, error) {
	if sl == nil {
		return nil, &unknownKeyError{keyID: keyID}
	}
	k := sl.key(keyID)
	if k == nil {
		return nil, &unknownKeyError{keyID: keyID}
	}
	if len(blob) < nonceLen+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: truncated (%d bytes)", errUnopenable, len(blob))
	}
	pt, err := k.aead.Open(nil, blob[:nonceLen], blob[nonceLen:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (tampered with, moved from another document, or another subject or sid hash)", errUnopenable)
	}
	return pt, nil
}

// readPayload hands each field of a payload document to field, which
// reports whether its value has the right type. The payload has been
// authenticated, but is checked all the same: a reader never trusts
// lengths.
func readPayload(pt []byte, field func(key string, v bsoncore.Value) bool) error {
	bad := func(what string) error { return fmt.Errorf("%w: payload: %s", errUnopenable, what) }
	if len(pt) < 5 || int64(binary.LittleEndian.Uint32(pt)) != int64(len(pt)) || pt[len(pt)-1] != 0 {
		return bad("not a document")
	}
	elems := pt[4 : len(pt)-1]
	for len(elems) > 0 {
		el, rest, ok := bsoncore.ReadElement(elems)
		if !ok {
			return bad("bad element")
		}
		elems = rest
		if !field(el.Key(), el.Value()) {
			return bad("field " + el.Key() + " of the wrong type")
		}
	}
	return nil
}

// SealFailures counts documents read as "no session" because of their
// seal, since the store opened.
type SealFailures struct {
	// UnknownKey: sealed under a key that is not configured.
	UnknownKey int64
	// Unopenable: tampered with, moved from another document, truncated.
	Unopenable int64
	// Unsealed: documents without a seal refused by RequireSealed.
	Unsealed int64
}

// sealKinds index Store.sealFails.
const (
	sealUnknownKey = iota
	sealUnopenable
	sealUnsealed
	sealKinds
)

// sealKindNames name the kinds for Options.OnSealFailure.
var sealKindNames = [sealKinds]string{"unknown_key", "unopenable", "unsealed"}

// sealLogEvery is the least time between two log lines of one kind.
const sealLogEvery = time.Minute

// SealFailures returns the counts of documents refused because of their
// seal.
func (s *Store) SealFailures() SealFailures {
	return SealFailures{
		UnknownKey: s.sealFails[sealUnknownKey].n.Load(),
		Unopenable: s.sealFails[sealUnopenable].n.Load(),
		Unsealed:   s.sealFails[sealUnsealed].n.Load(),
	}
}

// sealFailure is a counter and a log line at most once a minute.
type sealFailure struct {
	n        atomic.Int64
	lastLog  atomic.Int64 // unix nanoseconds of the last line
	unlogged atomic.Int64 // failures since the last line
}

// isSealFailure reports whether err is about a seal, and which kind.
func isSealFailure(err error) (kind int, ok bool) {
	var uk *unknownKeyError
	switch {
	case errors.As(err, &uk):
		return sealUnknownKey, true
	case errors.Is(err, errUnopenable):
		return sealUnopenable, true
	case errors.Is(err, errUnsealed):
		return sealUnsealed, true
	}
	return 0, false
}

// noteSealFailure counts a document read as no session because of its
// seal and logs it at error level, at most once a minute per kind (now is
// the caller's clock). The line names the key id and the session's
// handle, never the key or the data.
func (s *Store) noteSealFailure(kind int, key string, err error, now time.Time) {
	f := &s.sealFails[kind]
	f.n.Add(1)
	if s.onSealFailure != nil {
		s.onSealFailure(sealKindNames[kind])
	}
	f.unlogged.Add(1)
	last := f.lastLog.Load()
	if last != 0 && now.UnixNano()-last < int64(sealLogEvery) {
		return
	}
	if !f.lastLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	fields := []zap.Field{
		zap.String("session", cookie.Handle(key)),
		zap.Int64("count", f.unlogged.Swap(0)),
		zap.Duration("logged_at_most_every", sealLogEvery),
	}
	var uk *unknownKeyError
	switch kind {
	case sealUnknownKey:
		errors.As(err, &uk)
		s.log.Error("session sealed under an encryption key that is not configured: it reads as no session (the user logs in again)",
			append(fields, zap.String("key_id", uk.keyID))...)
	case sealUnopenable:
		s.log.Error("sealed session document does not open (tampered with, moved from another document, or truncated): it reads as no session",
			append(fields, zap.Error(err))...)
	case sealUnsealed:
		s.log.Error("session document without a seal refused (require_sealed): it reads as no session", fields...)
	}
}

// notFoundForSeal turns a seal failure into store.ErrNotFound, counted
// and logged; other errors are returned as they are.
func (s *Store) notFoundForSeal(key string, err error, now time.Time) error {
	if kind, ok := isSealFailure(err); ok {
		s.noteSealFailure(kind, key, err, now)
		return store.ErrNotFound
	}
	return err
}
