package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sessiongate/caddy-session/store"
)

// The stored document (docs/storage.md is the reference).
const (
	fieldID      = "_id"     // string: the store key
	fieldFormat  = "f"       // int32: formatVersion; absent in format 1
	fieldData    = "data"    // document: the session data; absent in a tombstone
	fieldSubject = "sub"     // string: the subject; absent when none
	fieldCreated = "created" // date
	fieldUpdated = "updated" // date
	fieldExpires = "expires" // date
	fieldMaxAge  = "maxAge"  // int64: milliseconds, 0 = the configured default
	fieldVersion = "v"       // int64: 1 on create, +1 per write
	fieldRotated = "rot"     // string: the successor's handle; only in a tombstone
	fieldSid     = "sid"     // string: the IdP's session id; absent when none
	fieldIdPSub  = "isub"    // string: the IdP's subject (sub_key); absent when none
	fieldUA      = "ua"      // string: the creating request's User-Agent; absent when none
	fieldAddr    = "ip"      // string: the creating request's coarse address; absent when none
	fieldDevice  = "dev"     // binary: ua and ip sealed (format 3 only; seal.go)
)

// formatVersion is the document format this store writes. Format 1 (no f
// field) was written before tombstones, subjects and canonical numbers; it
// is read as it is and rewritten in format 2 by its next Update.
const formatVersion int32 = 2

// appendData appends the BSON document for the session data. Integers
// outside int64 are Decimal128 unless the server refuses them; one written
// before the start-up check knows (FerretDB 1.x drops the connection on a
// Decimal128) waits for the check, within ctx.
func (s *Store) appendData(ctx context.Context, dst []byte, data json.RawMessage) ([]byte, error) {
	start := len(dst)
	out, decimals, err := encode(dst, data, s.noDecimal.Load())
	if err != nil || !decimals {
		return out, err
	}
	select {
	case <-s.probed:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the server check has not finished: %w", store.ErrUnavailable, ctx.Err())
	case <-s.bg.Done():
		return nil, fmt.Errorf("%w: store closed", store.ErrUnavailable)
	}
	if s.noDecimal.Load() {
		return toBSONWith(out[:start], data, true)
	}
	return out, nil
}

// encodeDocument builds the whole document Create inserts: format 2, or
// format 3 (sealed) when the store has encryption keys.
func (s *Store) encodeDocument(ctx context.Context, key string, rec *store.Record) (bson.Raw, error) {
	if s.sealer != nil {
		return s.encodeSealed(key, rec)
	}
	idx, b := bsoncore.AppendDocumentStart(make([]byte, 0, 160+len(rec.Data)))
	b = bsoncore.AppendStringElement(b, fieldID, key)
	b = bsoncore.AppendInt32Element(b, fieldFormat, formatVersion)
	b = bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, fieldData)
	b, err := s.appendData(ctx, b, rec.Data)
	if err != nil {
		return nil, err
	}
	for _, f := range [...]struct{ name, v string }{
		{fieldSubject, rec.Subject}, {fieldSid, rec.Sid}, {fieldIdPSub, rec.IdPSub}, {fieldUA, rec.UserAgent}, {fieldAddr, rec.Addr},
	} {
		if f.v != "" {
			b = bsoncore.AppendStringElement(b, f.name, f.v)
		}
	}
	return endNewDocument(b, idx, rec)
}

// endNewDocument appends the fields every new document ends with (times,
// max-age, version 1) and closes the document begun at idx.
func endNewDocument(b []byte, idx int32, rec *store.Record) (bson.Raw, error) {
	b = bsoncore.AppendDateTimeElement(b, fieldCreated, rec.Created.UnixMilli())
	b = bsoncore.AppendDateTimeElement(b, fieldUpdated, rec.Updated.UnixMilli())
	b = bsoncore.AppendDateTimeElement(b, fieldExpires, rec.Expires.UnixMilli())
	b = bsoncore.AppendInt64Element(b, fieldMaxAge, rec.MaxAge.Milliseconds())
	b = bsoncore.AppendInt64Element(b, fieldVersion, 1)
	b, err := bsoncore.AppendDocumentEnd(b, idx)
	return bson.Raw(b), err
}

// encodeSealed builds the format-3 document Create inserts.
func (s *Store) encodeSealed(key string, rec *store.Record) (bson.Raw, error) {
	p, err := s.sealData(key, rec)
	if err != nil {
		return nil, err
	}
	device, err := s.sealer.sealDevice(key, rec.UserAgent, rec.Addr)
	if err != nil {
		return nil, err
	}
	idx, b := bsoncore.AppendDocumentStart(make([]byte, 0, 200+len(p.blob)+len(device)))
	b = bsoncore.AppendStringElement(b, fieldID, key)
	b = bsoncore.AppendInt32Element(b, fieldFormat, formatSealed)
	b = bsoncore.AppendStringElement(b, fieldKeyID, p.keyID)
	b = bsoncore.AppendBinaryElement(b, fieldData, 0, p.blob)
	for _, f := range [...]struct {
		name string
		v    []byte
	}{{fieldSubject, p.subHash}, {fieldSid, p.sidHash}, {fieldIdPSub, p.isubHash}, {fieldDevice, device}} {
		if f.v != nil {
			b = bsoncore.AppendBinaryElement(b, f.name, 0, f.v)
		}
	}
	return endNewDocument(b, idx, rec)
}

// scratch holds buffers for checking data that is sealed rather than
// stored as BSON.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// sealData checks that the data could be stored in the clear (the same
// rules, the same errors: sealing never lets through what the clear form
// refuses), then seals the subject, the sid and the data for key.
func (s *Store) sealData(key string, rec *store.Record) (sealedParts, error) {
	bp := scratch.Get().(*[]byte)
	buf, err := toBSONWith((*bp)[:0], rec.Data, true)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		scratch.Put(bp)
	}
	if err != nil {
		return sealedParts{}, err
	}
	return s.sealer.seal(key, rec)
}

// errBadDocument is wrapped by errors about a stored document this store
// cannot read (a field of the wrong type).
var errBadDocument = errors.New("unreadable session document")

// decodeDocument reads a stored document, of any format this version
// knows, in one pass over its fields. For a tombstone it returns the
// successor's handle and no record; for a document expired at now,
// neither (the data is not converted or opened). Fields it does not know
// are ignored; a format it does not know is refused. A sealed document is
// opened with sl (nil: no keys, so a sealed document is sealed under an
// unknown key); errors about seals are what isSealFailure recognises.
func decodeDocument(raw bson.Raw, now time.Time, sl *sealer) (rec *store.Record, successor string, err error) {
	rec = &store.Record{}
	var (
		data, blob, subHash, sidHash, isubHash, device []byte
		id, keyID                                      string
		format                                         int64
		sealed, hashedSub, hashedSid, hashedIsub       bool
		sealedDevice                                   bool
	)
	elems := []byte(raw)
	if len(elems) < 5 {
		return nil, "", fmt.Errorf("%w: %d bytes", errBadDocument, len(elems))
	}
	elems = elems[4 : len(elems)-1]
	for len(elems) > 0 {
		el, rest, ok := bsoncore.ReadElement(elems)
		if !ok {
			return nil, "", fmt.Errorf("%w: bad element at byte %d", errBadDocument, len(raw)-len(elems))
		}
		elems = rest
		v := el.Value()
		key := el.KeyBytes()
		switch string(key) {
		case fieldID:
			id, ok = v.StringValueOK()
		case fieldFormat:
			format, ok = v.AsInt64OK()
		case fieldKeyID:
			keyID, ok = v.StringValueOK()
		case fieldData:
			switch v.Type {
			case bsoncore.TypeEmbeddedDocument:
				data = v.Data
			case bsoncore.TypeBinary:
				blob, ok = genericBinary(v)
				sealed = true
			default:
				ok = false
			}
		case fieldSubject:
			hashedSub, ok = readIndexed(v, &rec.Subject, &subHash)
		case fieldSid:
			hashedSid, ok = readIndexed(v, &rec.Sid, &sidHash)
		case fieldIdPSub:
			hashedIsub, ok = readIndexed(v, &rec.IdPSub, &isubHash)
		case fieldDevice:
			device, ok = genericBinary(v)
			sealedDevice = true
		case fieldUA:
			rec.UserAgent, ok = v.StringValueOK()
		case fieldAddr:
			rec.Addr, ok = v.StringValueOK()
		case fieldRotated:
			successor, ok = v.StringValueOK()
		case fieldCreated:
			rec.Created, ok = dateValue(v)
		case fieldUpdated:
			rec.Updated, ok = dateValue(v)
		case fieldExpires:
			rec.Expires, ok = dateValue(v)
		case fieldMaxAge:
			var ms int64
			ms, ok = v.AsInt64OK()
			rec.MaxAge = time.Duration(ms) * time.Millisecond
		case fieldVersion:
			rec.Version, ok = v.AsInt64OK()
		}
		if !ok {
			return nil, "", fmt.Errorf("%w: field %s has BSON type %v", errBadDocument, key, v.Type)
		}
	}
	if format > int64(formatSealed) {
		return nil, "", fmt.Errorf("%w: format %d is newer than this version reads (%d): upgrade every instance first (docs/storage.md)",
			errBadDocument, format, formatSealed)
	}
	if !rec.Expires.After(now) {
		return nil, "", nil
	}
	if successor != "" {
		return nil, successor, nil
	}
	if sealed {
		if format != int64(formatSealed) {
			return nil, "", fmt.Errorf("%w: sealed data in a format %d document", errUnopenable, format)
		}
		o, err := sl.open(id, keyID, blob, subHash, sidHash, isubHash)
		if err != nil {
			return nil, "", err
		}
		rec.Subject, rec.Sid, rec.IdPSub, rec.Data = o.subject, o.sid, o.isub, o.data
		rec.UserAgent, rec.Addr = "", ""
		if sealedDevice {
			if rec.UserAgent, rec.Addr, err = sl.openDevice(id, device); err != nil {
				return nil, "", err
			}
		}
		return rec, "", nil
	}
	switch {
	case hashedSub || hashedSid || hashedIsub || sealedDevice:
		return nil, "", fmt.Errorf("%w: sealed fields beside clear data", errUnopenable)
	case sl != nil && sl.requireSealed:
		return nil, "", errUnsealed
	}
	// The JSON is rarely longer than the BSON it comes from.
	rec.Data, err = appendJSON(make([]byte, 0, len(data)+len(data)/8+2), data)
	if err != nil {
		return nil, "", err
	}
	return rec, "", nil
}

// genericBinary reads a BSON binary of the generic subtype (0), the only
// one the store writes.
func genericBinary(v bsoncore.Value) ([]byte, bool) {
	sub, b, ok := v.BinaryOK()
	return b, ok && sub == 0
}

// readIndexed reads an indexed field (the subject, the sid, the IdP
// subject): its keyed hash in a sealed document, its clear value
// otherwise. It reports whether it was a hash.
func readIndexed(v bsoncore.Value, clear *string, hash *[]byte) (hashed, ok bool) {
	if v.Type == bsoncore.TypeBinary {
		*hash, ok = genericBinary(v)
		return true, ok
	}
	*clear, ok = v.StringValueOK()
	return false, ok
}

// dateValue reads a BSON date as a UTC time.Time.
func dateValue(v bsoncore.Value) (time.Time, bool) {
	ms, ok := v.DateTimeOK()
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(ms).UTC(), true
}
