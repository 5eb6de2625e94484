package mongostore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Session data crosses the store as raw JSON but is kept as a real BSON
// sub-document so operators can query it. The conversion is done by hand
// rather than through Extended JSON: ExtJSON would read an object such as
// {"$numberLong": "5"} from an upstream as a BSON int64 and hand back 5,
// silently changing the data.
//
// JSON numbers become int32 when they are integers that fit, int64 when
// they fit that, and double otherwise (like a JavaScript number, an
// integer beyond int64 loses precision). Reading back, integers are
// written as integers and doubles in the shortest form that reads back as
// the same double, as encoding/json does, so 1.0 comes back as 1.
//
// Field names are escaped (see escapeKey) at every depth, so any JSON
// object key, including "$set", "a.b" and "", can be stored and comes
// back exactly.
//
// An array directly inside an array is stored wrapped in a one-field
// document, {"%[]": [...]}: some MongoDB-wire servers (FerretDB 1.x)
// refuse nested arrays, and MongoDB cannot query into them anyway. No
// escaped key can be "%[]" (a real '%' is stored as %25), so the wrapper
// is unambiguous.

// escapeKey turns a JSON object key into a field name every MongoDB-wire
// server accepts anywhere, including inside an update path such as
// data.<key>: '%', '.', '$' and NUL are written as %XX (uppercase hex),
// and the empty key, which cannot appear in a path, as a lone "%" (a real
// '%' is always escaped, so that cannot clash). Keys without those
// characters, nearly all of them, are stored as they are.
func escapeKey(k string) string {
	if k == "" {
		return "%"
	}
	if !strings.ContainsAny(k, "%.$\x00") {
		return k
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(k) + 8)
	for i := 0; i < len(k); i++ {
		switch c := k[i]; c {
		case '%', '.', '$', 0:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeKey reverses escapeKey. A '%' not followed by two hex digits
// (say, in a field an operator wrote by hand) is kept as it is.
func unescapeKey(k string) string {
	if k == "%" {
		return ""
	}
	if !strings.Contains(k, "%") {
		return k
	}
	var b strings.Builder
	b.Grow(len(k))
	for i := 0; i < len(k); i++ {
		if k[i] == '%' && i+2 < len(k) {
			if n, err := strconv.ParseUint(k[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// nestedArrayKey is the field of the document wrapping an array nested
// directly in an array.
const nestedArrayKey = "%[]"

// errNumberRange is returned for a JSON number no BSON type can hold.
var errNumberRange = errors.New("number out of range")

// jsonToBSON converts one raw JSON value to a value the driver marshals
// to the matching BSON: bson.D, bson.A, string, int32, int64, float64,
// bool or nil (null).
func jsonToBSON(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, false)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the value")
	}
	return v, nil
}

// decodeValue reads one value; inArray says it is an array element.
func decodeValue(dec *json.Decoder, inArray bool) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return decodeObject(dec)
		case '[':
			arr := bson.A{}
			for dec.More() {
				v, err := decodeValue(dec, true)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			if inArray {
				return bson.D{{Key: nestedArrayKey, Value: arr}}, nil
			}
			return arr, nil
		}
		return nil, fmt.Errorf("invalid JSON: unexpected %v", t)
	case json.Number:
		return convertNumber(string(t))
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("invalid JSON: unexpected token %T", tok)
}

func decodeObject(dec *json.Decoder) (any, error) {
	doc := bson.D{}
	var seen map[string]int
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("invalid JSON: object key is %T", tok)
		}
		v, err := decodeValue(dec, false)
		if err != nil {
			return nil, err
		}
		key = escapeKey(key)
		// A repeated key keeps its last value, as JSON decoders do;
		// BSON documents with duplicate names confuse every reader.
		if i, dup := seen[key]; dup {
			doc[i].Value = v
			continue
		}
		if seen == nil {
			seen = make(map[string]int)
		}
		seen[key] = len(doc)
		doc = append(doc, bson.E{Key: key, Value: v})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return doc, nil
}

func convertNumber(s string) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			if n >= math.MinInt32 && n <= math.MaxInt32 {
				return int32(n), nil
			}
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// ParseFloat rounds huge integers without error; only numbers
		// beyond ±1.8e308 get here.
		return nil, fmt.Errorf("%w: %.40s", errNumberRange, s)
	}
	return f, nil
}

// dataToBSON converts a session's data map to the BSON sub-document kept
// in the data field, escaping each key.
func dataToBSON(data map[string]json.RawMessage) (bson.D, error) {
	doc := make(bson.D, 0, len(data))
	for k, raw := range data {
		v, err := jsonToBSON(raw)
		if err != nil {
			return nil, fmt.Errorf("data key %q: %w", k, err)
		}
		doc = append(doc, bson.E{Key: escapeKey(k), Value: v})
	}
	return doc, nil
}

// dataFromBSON converts the stored data sub-document back to raw JSON
// values, one per top-level key. A missing or empty document gives nil.
func dataFromBSON(doc bson.Raw) (map[string]json.RawMessage, error) {
	if len(doc) == 0 {
		return nil, nil
	}
	elems, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, nil
	}
	out := make(map[string]json.RawMessage, len(elems))
	for _, e := range elems {
		b, err := appendJSON(nil, e.Value())
		if err != nil {
			return nil, fmt.Errorf("data key %q: %w", unescapeKey(e.Key()), err)
		}
		out[unescapeKey(e.Key())] = b
	}
	return out, nil
}

// appendJSON appends v as JSON. Types JSON has no word for (dates,
// ObjectIDs, decimals an operator may have written) come out as relaxed
// Extended JSON, which is still valid JSON.
func appendJSON(b []byte, v bson.RawValue) ([]byte, error) {
	switch v.Type {
	case bson.TypeNull, bson.TypeUndefined:
		return append(b, "null"...), nil
	case bson.TypeBoolean:
		return strconv.AppendBool(b, v.Boolean()), nil
	case bson.TypeInt32:
		return strconv.AppendInt(b, int64(v.Int32()), 10), nil
	case bson.TypeInt64:
		return strconv.AppendInt(b, v.Int64(), 10), nil
	case bson.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return appendExtJSON(b, v)
		}
		return appendFloat(b, f), nil
	case bson.TypeString:
		return appendString(b, v.StringValue()), nil
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			return nil, err
		}
		b = append(b, '{')
		for i, e := range elems {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, unescapeKey(e.Key()))
			b = append(b, ':')
			if b, err = appendJSON(b, e.Value()); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			return nil, err
		}
		b = append(b, '[')
		for i, e := range vals {
			if i > 0 {
				b = append(b, ',')
			}
			if inner, ok := wrappedArray(e); ok {
				e = inner
			}
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	return appendExtJSON(b, v)
}

func appendExtJSON(b []byte, v bson.RawValue) ([]byte, error) {
	out, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	if err != nil {
		return nil, err
	}
	const prefix = `{"v":`
	if !bytes.HasPrefix(out, []byte(prefix)) || !bytes.HasSuffix(out, []byte("}")) {
		return nil, fmt.Errorf("unexpected Extended JSON for BSON type %v", v.Type)
	}
	return append(b, out[len(prefix):len(out)-1]...), nil
}

// appendFloat formats f the way encoding/json does: the shortest
// representation that reads back as f, exponent only for very large or
// small magnitudes.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Turn e-07 into e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s as a JSON string. Non-ASCII text is kept as
// UTF-8 (the gateway does its own ASCII encoding on the way upstream);
// invalid UTF-8, which BSON should never hold, becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// wrappedArray unwraps {"%[]": [...]}, the stored form of an array nested
// in an array.
func wrappedArray(v bson.RawValue) (bson.RawValue, bool) {
	if v.Type != bson.TypeEmbeddedDocument {
		return v, false
	}
	elems, err := v.Document().Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != nestedArrayKey {
		return v, false
	}
	inner := elems[0].Value()
	return inner, inner.Type == bson.TypeArray
}
