package mongostore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// Session data crosses the store as the gateway's canonical JSON (package
// internal/protocol) and is kept as a real BSON sub-document, so operators
// can query it. Both directions are done by hand, in one pass each:
//
//   - JSON to BSON (toBSON) scans the JSON bytes and appends BSON bytes.
//     Extended JSON is never interpreted: an upstream's {"$numberLong":"5"}
//     stays an object with an (escaped) key.
//   - BSON to JSON (appendJSON) walks the stored bytes and appends the
//     canonical JSON bytes, strings through protocol.AppendString and
//     doubles through protocol.AppendFloat, so Find hands back exactly the
//     bytes the gateway encoded, without a map or a re-encode.
//
// Numbers follow the canonical rules (protocol.CanonicalNumber): an integer
// literal that fits int32 is an int32, one that fits int64 an int64, an
// integer literal of up to 34 digits beyond that a Decimal128 (exact), and
// every other number a double. Reading writes them back the same way, so
// a canonical number comes back byte for byte.
//
// Field names are escaped (escapeKey) at every depth. An array directly
// inside an array is stored wrapped in a one-field document {"%[]": [...]}:
// some MongoDB-wire servers (FerretDB 1.x) refuse nested arrays, and
// MongoDB cannot query into them anyway. No escaped key can be "%[]" (a
// real '%' is stored as %25), so the wrapper is unambiguous.
//
// Errors name the kind of problem and a byte offset, never a key or a
// value: session data must not reach a log line.

// maxNesting bounds how deeply the data may nest (objects and arrays, an
// array in an array counting twice for its wrapper). MongoDB refuses
// documents nested past 100 levels, and the session document adds two.
const maxNesting = 90

// maxDecimalDigits is the most digits an integer outside int64 may have to
// be kept exactly, as a Decimal128.
const maxDecimalDigits = 34

// nestedArrayKey is the field of the document wrapping an array nested
// directly in an array.
const nestedArrayKey = "%[]"

// bigIntKey is the field of the document {"%n": "<digits>"} that holds an
// integer outside int64 on a server that refuses Decimal128 (FerretDB
// 1.x). Like nestedArrayKey, no escaped key can take this form.
const bigIntKey = "%n"

// escapeKey turns a JSON object key into a field name every MongoDB-wire
// server accepts anywhere, including inside an update path: '%', '.', '$'
// and NUL are written as %XX (uppercase hex), and the empty key, which
// cannot appear in a path, as a lone "%" (a real '%' is always escaped,
// so that cannot clash). Keys without those characters, nearly all of
// them, are stored as they are. The gateway refuses '$', '.' and NUL in
// keys already; this is defence in depth.
func appendEscapedKey(dst, k []byte) []byte {
	if len(k) == 0 {
		return append(dst, '%')
	}
	const hexDigits = "0123456789ABCDEF"
	for _, c := range k {
		switch c {
		case '%', '.', '$', 0:
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// escapeKey is appendEscapedKey for a string.
func escapeKey(k string) string {
	if k != "" && !strings.ContainsAny(k, "%.$\x00") {
		return k
	}
	return string(appendEscapedKey(nil, []byte(k)))
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

// errNotObject is returned when the data is valid JSON but not an object.
var errNotObject = errors.New("data is not a JSON object")

// encoder converts one JSON text to BSON.
type encoder struct {
	in        []byte
	pos       int
	str       []byte // scratch for unescaped strings
	noDecimal bool   // write big integers as {"%n": "<digits>"}
	decimals  bool   // a Decimal128 was written
}

func (e *encoder) errorf(kind string) error {
	return fmt.Errorf("invalid session data: %s at byte %d of %d", kind, e.pos, len(e.in))
}

// toBSON appends the BSON document for the JSON object data to dst. Empty
// data is the empty document.
func toBSON(dst, data []byte) ([]byte, error) { return toBSONWith(dst, data, false) }

// toBSONWith is toBSON; noDecimal stores integers outside int64 as
// {"%n": "<digits>"} instead of Decimal128.
func toBSONWith(dst, data []byte, noDecimal bool) ([]byte, error) {
	out, _, err := encode(dst, data, noDecimal)
	return out, err
}

// encode is toBSONWith that also reports whether it wrote a Decimal128.
func encode(dst, data []byte, noDecimal bool) (out []byte, decimals bool, err error) {
	e := encoder{in: data, noDecimal: noDecimal}
	out, err = e.toBSON(dst)
	return out, e.decimals, err
}

func (e *encoder) toBSON(dst []byte) ([]byte, error) {
	e.ws()
	if e.pos == len(e.in) {
		return bsoncore.BuildDocument(dst), nil
	}
	if e.in[e.pos] != '{' {
		return nil, errNotObject
	}
	dst, err := e.object(dst, 1)
	if err != nil {
		return nil, err
	}
	if e.ws(); e.pos != len(e.in) {
		return nil, e.errorf("data after the object")
	}
	return dst, nil
}

func (e *encoder) ws() {
	for e.pos < len(e.in) {
		switch e.in[e.pos] {
		case ' ', '\t', '\n', '\r':
			e.pos++
		default:
			return
		}
	}
}

// expect consumes c after optional white space.
func (e *encoder) expect(c byte) error {
	e.ws()
	if e.pos >= len(e.in) {
		return e.errorf("truncated JSON")
	}
	if e.in[e.pos] != c {
		return e.errorf(fmt.Sprintf("expected %q", c))
	}
	e.pos++
	return nil
}

// endOfElement reads what follows an object member or array element: a
// comma (done false) or the closing byte (done true).
func (e *encoder) endOfElement(closing byte) (done bool, err error) {
	e.ws()
	if e.pos >= len(e.in) {
		return false, e.errorf("truncated JSON")
	}
	switch e.in[e.pos] {
	case ',':
		e.pos++
		return false, nil
	case closing:
		e.pos++
		return true, nil
	}
	return false, e.errorf(fmt.Sprintf("expected ',' or %q", closing))
}

// open starts the BSON document of the object or array at e.pos, which
// ends with closing: it appends the length to be filled in by finishDoc,
// and finishes an empty one at once (empty true). start is where the
// document begins in dst.
func (e *encoder) open(dst []byte, depth int, closing byte) (out []byte, start int, empty bool, err error) {
	if depth > maxNesting {
		return nil, 0, false, e.errorf("data nested too deeply")
	}
	e.pos++ // '{' or '['
	start = len(dst)
	dst = append(dst, 0, 0, 0, 0)
	e.ws()
	if e.pos < len(e.in) && e.in[e.pos] == closing {
		e.pos++
		return finishDoc(dst, start), start, true, nil
	}
	return dst, start, false, nil
}

// object appends a BSON document for the object at e.pos.
func (e *encoder) object(dst []byte, depth int) ([]byte, error) {
	dst, start, empty, err := e.open(dst, depth, '}')
	if err != nil || empty {
		return dst, err
	}
	prevKey := -1 // offset in dst of the previous key
	for {
		e.ws()
		if e.pos >= len(e.in) || e.in[e.pos] != '"' {
			return nil, e.errorf("object key expected")
		}
		keyAt := e.pos
		k, err := e.string()
		if err != nil {
			return nil, err
		}
		typeAt := len(dst)
		dst = appendEscapedKey(append(dst, 0), k)
		dst = append(dst, 0)
		if prevKey >= 0 && !keyAfter(dst, prevKey, typeAt+1) && hasKey(dst[start+4:typeAt], dst[typeAt+1:len(dst)-1]) {
			e.pos = keyAt
			return nil, e.errorf("duplicate object key")
		}
		prevKey = typeAt + 1
		if err := e.expect(':'); err != nil {
			return nil, err
		}
		var t bsoncore.Type
		if dst, t, err = e.value(dst, depth, false); err != nil {
			return nil, err
		}
		dst[typeAt] = byte(t)
		if done, err := e.endOfElement('}'); err != nil {
			return nil, err
		} else if done {
			return finishDoc(dst, start), nil
		}
	}
}

// keyAfter reports whether the NUL-terminated key at dst[b:] sorts after
// the one at dst[a:]: the common case for canonical (sorted) data, which
// makes the duplicate check unnecessary.
func keyAfter(dst []byte, a, b int) bool {
	ka := dst[a : a+bytes.IndexByte(dst[a:], 0)]
	kb := dst[b : b+bytes.IndexByte(dst[b:], 0)]
	return bytes.Compare(kb, ka) > 0
}

// hasKey reports whether the elements in elems (a document body) include
// the field name key.
func hasKey(elems, key []byte) bool {
	for len(elems) > 0 {
		el, rest, ok := bsoncore.ReadElement(elems)
		if !ok {
			return false
		}
		if bytes.Equal(el.KeyBytes(), key) {
			return true
		}
		elems = rest
	}
	return false
}

// finishDoc terminates the document started at start and writes its
// length.
func finishDoc(dst []byte, start int) []byte {
	dst = append(dst, 0)
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// array appends a BSON array for the array at e.pos.
func (e *encoder) array(dst []byte, depth int) ([]byte, error) {
	dst, start, empty, err := e.open(dst, depth, ']')
	if err != nil || empty {
		return dst, err
	}
	for i := 0; ; i++ {
		typeAt := len(dst)
		dst = strconv.AppendInt(append(dst, 0), int64(i), 10)
		dst = append(dst, 0)
		e.ws()
		var (
			t   bsoncore.Type
			err error
		)
		if dst, t, err = e.value(dst, depth, true); err != nil {
			return nil, err
		}
		dst[typeAt] = byte(t)
		if done, err := e.endOfElement(']'); err != nil {
			return nil, err
		} else if done {
			return finishDoc(dst, start), nil
		}
	}
}

// value appends the BSON value at e.pos (after white space) and returns
// its type; inArray says it is an array element.
func (e *encoder) value(dst []byte, depth int, inArray bool) ([]byte, bsoncore.Type, error) {
	e.ws()
	if e.pos >= len(e.in) {
		return nil, 0, e.errorf("truncated JSON")
	}
	switch c := e.in[e.pos]; {
	case c == '{':
		dst, err := e.object(dst, depth+1)
		return dst, bsoncore.TypeEmbeddedDocument, err
	case c == '[' && inArray:
		start := len(dst)
		dst = append(dst, 0, 0, 0, 0, byte(bsoncore.TypeArray))
		dst = append(append(dst, nestedArrayKey...), 0)
		dst, err := e.array(dst, depth+2)
		if err != nil {
			return nil, 0, err
		}
		return finishDoc(dst, start), bsoncore.TypeEmbeddedDocument, nil
	case c == '[':
		dst, err := e.array(dst, depth+1)
		return dst, bsoncore.TypeArray, err
	case c == '"':
		s, err := e.string()
		if err != nil {
			return nil, 0, err
		}
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)+1))
		return append(append(dst, s...), 0), bsoncore.TypeString, nil
	case c == 't':
		dst, err := e.literal(dst, "true", []byte{1})
		return dst, bsoncore.TypeBoolean, err
	case c == 'f':
		dst, err := e.literal(dst, "false", []byte{0})
		return dst, bsoncore.TypeBoolean, err
	case c == 'n':
		dst, err := e.literal(dst, "null", nil)
		return dst, bsoncore.TypeNull, err
	case c == '-' || (c >= '0' && c <= '9'):
		return e.number(dst)
	}
	return nil, 0, e.errorf("unexpected character")
}

// literal consumes word and appends its BSON value bytes.
func (e *encoder) literal(dst []byte, word string, val []byte) ([]byte, error) {
	if !bytes.HasPrefix(e.in[e.pos:], []byte(word)) {
		return nil, e.errorf("invalid literal")
	}
	e.pos += len(word)
	return append(dst, val...), nil
}

// string consumes a JSON string and returns its bytes, unescaped. The
// result aliases the input or e.str and is valid until the next call.
func (e *encoder) string() ([]byte, error) {
	e.pos++ // opening quote
	start := e.pos
	for e.pos < len(e.in) {
		c := e.in[e.pos]
		switch {
		case c == '"':
			s := e.in[start:e.pos]
			e.pos++
			return s, nil
		case c == '\\':
			e.str = append(e.str[:0], e.in[start:e.pos]...)
			return e.escapedString()
		case c < 0x20:
			return nil, e.errorf("control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(e.in[e.pos:])
			if r == utf8.RuneError && size == 1 {
				return nil, e.errorf("invalid UTF-8 in string")
			}
			e.pos += size
		default:
			e.pos++
		}
	}
	return nil, e.errorf("unterminated string")
}

// escapedString continues string from the first backslash, building the
// unescaped bytes in e.str. A lone surrogate becomes U+FFFD, as
// encoding/json decodes it.
func (e *encoder) escapedString() ([]byte, error) {
	for e.pos < len(e.in) {
		c := e.in[e.pos]
		switch {
		case c == '"':
			e.pos++
			return e.str, nil
		case c == '\\':
			if e.pos+1 >= len(e.in) {
				return nil, e.errorf("unterminated string")
			}
			esc := e.in[e.pos+1]
			e.pos += 2
			switch esc {
			case '"', '\\', '/':
				e.str = append(e.str, esc)
			case 'b':
				e.str = append(e.str, '\b')
			case 'f':
				e.str = append(e.str, '\f')
			case 'n':
				e.str = append(e.str, '\n')
			case 'r':
				e.str = append(e.str, '\r')
			case 't':
				e.str = append(e.str, '\t')
			case 'u':
				r, err := e.hex4()
				if err != nil {
					return nil, err
				}
				if utf16.IsSurrogate(r) {
					r = e.lowSurrogate(r)
				}
				e.str = utf8.AppendRune(e.str, r)
			default:
				e.pos -= 2
				return nil, e.errorf("invalid escape in string")
			}
		case c < 0x20:
			return nil, e.errorf("control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(e.in[e.pos:])
			if r == utf8.RuneError && size == 1 {
				return nil, e.errorf("invalid UTF-8 in string")
			}
			e.str = append(e.str, e.in[e.pos:e.pos+size]...)
			e.pos += size
		default:
			e.str = append(e.str, c)
			e.pos++
		}
	}
	return nil, e.errorf("unterminated string")
}

// hex4 reads the four hex digits of a \u escape.
func (e *encoder) hex4() (rune, error) {
	if e.pos+4 > len(e.in) {
		return 0, e.errorf("truncated \\u escape")
	}
	var r rune
	for _, c := range e.in[e.pos : e.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, e.errorf("invalid \\u escape")
		}
		r = r<<4 | rune(c)
	}
	e.pos += 4
	return r, nil
}

// lowSurrogate pairs the surrogate hi with a following \u escape, if it is
// its low half; otherwise hi stands alone and becomes U+FFFD.
func (e *encoder) lowSurrogate(hi rune) rune {
	if e.pos+6 <= len(e.in) && e.in[e.pos] == '\\' && e.in[e.pos+1] == 'u' {
		save := e.pos
		e.pos += 2
		if lo, err := e.hex4(); err == nil {
			if r := utf16.DecodeRune(hi, lo); r != utf8.RuneError {
				return r
			}
		}
		e.pos = save
	}
	return utf8.RuneError
}

// number consumes a JSON number and appends it as int32, int64,
// Decimal128 or double (see the rules at the top of this file).
func (e *encoder) number(dst []byte) ([]byte, bsoncore.Type, error) {
	start := e.pos
	isInt := true
	for e.pos < len(e.in) {
		c := e.in[e.pos]
		if c == '.' || c == 'e' || c == 'E' {
			isInt = false
		} else if !(c >= '0' && c <= '9' || c == '-' || c == '+') {
			break
		}
		e.pos++
	}
	lit := e.in[start:e.pos]
	if !protocol.ValidNumber(string(lit)) {
		e.pos = start
		return nil, 0, e.errorf("invalid number")
	}
	if isInt {
		if n, ok := parseInt64(lit); ok {
			if n >= math.MinInt32 && n <= math.MaxInt32 {
				return bsoncore.AppendInt32(dst, int32(n)), bsoncore.TypeInt32, nil
			}
			return bsoncore.AppendInt64(dst, n), bsoncore.TypeInt64, nil
		}
		if len(bytes.TrimPrefix(lit, []byte{'-'})) <= maxDecimalDigits && e.noDecimal {
			start := len(dst)
			dst = bsoncore.AppendStringElement(append(dst, 0, 0, 0, 0), bigIntKey, string(lit))
			return finishDoc(dst, start), bsoncore.TypeEmbeddedDocument, nil
		}
		if len(bytes.TrimPrefix(lit, []byte{'-'})) <= maxDecimalDigits {
			d, err := bson.ParseDecimal128(string(lit))
			if err == nil {
				h, l := d.GetBytes()
				e.decimals = true
				return bsoncore.AppendDecimal128(dst, h, l), bsoncore.TypeDecimal128, nil
			}
		}
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil { // only a range error is left: beyond ±1.8e308
		e.pos = start
		return nil, 0, e.errorf(fmt.Sprintf("number out of range (%d bytes)", len(lit)))
	}
	return bsoncore.AppendDouble(dst, f), bsoncore.TypeDouble, nil
}

// parseInt64 parses an integer literal without allocating.
func parseInt64(lit []byte) (int64, bool) {
	neg := len(lit) > 0 && lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range digits {
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	switch {
	case !neg && u <= math.MaxInt64:
		return int64(u), true
	case neg && u <= 1<<63:
		return int64(-u), true // -u wraps to MinInt64 for 1<<63
	}
	return 0, false
}

// errMalformed is wrapped by errors about stored BSON that cannot be read.
var errMalformed = errors.New("malformed BSON")

// decoder converts stored BSON to canonical JSON.
type decoder struct {
	base []byte // the whole data document, for offsets in errors
}

func (d *decoder) errorf(at []byte, kind string) error {
	off := len(d.base) - len(at)
	return fmt.Errorf("stored session data: %w: %s at byte %d of %d", errMalformed, kind, off, len(d.base))
}

// appendJSON appends the canonical JSON object for the stored data
// document doc. An absent (nil) document is {}.
func appendJSON(dst []byte, doc []byte) ([]byte, error) {
	if len(doc) == 0 {
		return append(dst, "{}"...), nil
	}
	d := decoder{base: doc}
	return d.document(dst, doc, 1)
}

// body checks doc's length prefix and returns its elements without the
// terminating NUL.
func (d *decoder) body(doc []byte) ([]byte, error) {
	n, _, ok := bsoncore.ReadLength(doc)
	if !ok || n < 5 || int(n) > len(doc) || doc[n-1] != 0 {
		return nil, d.errorf(doc, "bad document length")
	}
	return doc[4 : n-1], nil
}

// document appends doc as a JSON object. Keys come out in the stored
// order when it is the canonical (sorted) one, which is every document
// this store wrote; otherwise (documents of format 1, fields an operator
// added by hand) the object is written again with its keys sorted.
func (d *decoder) document(dst, doc []byte, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, d.errorf(doc, "nested too deeply")
	}
	elems, err := d.body(doc)
	if err != nil {
		return nil, err
	}
	if inner, ok := wrappedArray(elems); ok {
		return d.array(dst, inner, depth+1)
	}
	if digits, ok := wrappedBigInt(elems); ok {
		return append(dst, digits...), nil
	}
	start := len(dst)
	dst = append(dst, '{')
	var prev []byte
	for first := true; len(elems) > 0; first = false {
		el, rest, ok := bsoncore.ReadElement(elems)
		if !ok {
			return nil, d.errorf(elems, "bad element")
		}
		key := el.KeyBytes()
		if !first && !sortsAfter(key, prev) {
			return d.sortedDocument(dst[:start], doc, depth)
		}
		prev = key
		if !first {
			dst = append(dst, ',')
		}
		dst = appendKey(dst, key)
		dst = append(dst, ':')
		if dst, err = d.value(dst, el.Value(), depth); err != nil {
			return nil, err
		}
		elems = rest
	}
	return append(dst, '}'), nil
}

// sortsAfter reports whether the stored key b sorts after a, comparing
// the keys as the gateway does: unescaped, byte by byte.
func sortsAfter(b, a []byte) bool {
	if bytes.IndexByte(a, '%') < 0 && bytes.IndexByte(b, '%') < 0 {
		return bytes.Compare(b, a) > 0
	}
	return unescapeKey(string(b)) > unescapeKey(string(a))
}

// sortedDocument appends doc as a JSON object with its keys sorted; a
// repeated key keeps its last value.
func (d *decoder) sortedDocument(dst, doc []byte, depth int) ([]byte, error) {
	type field struct {
		key string
		val bsoncore.Value
	}
	elems, err := d.body(doc)
	if err != nil {
		return nil, err
	}
	var fields []field
	for len(elems) > 0 {
		el, rest, ok := bsoncore.ReadElement(elems)
		if !ok {
			return nil, d.errorf(elems, "bad element")
		}
		fields = append(fields, field{unescapeKey(string(el.KeyBytes())), el.Value()})
		elems = rest
	}
	slices.SortStableFunc(fields, func(a, b field) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i, f := range fields {
		if i+1 < len(fields) && fields[i+1].key == f.key {
			continue
		}
		if dst[len(dst)-1] != '{' {
			dst = append(dst, ',')
		}
		dst = protocol.AppendString(dst, f.key)
		dst = append(dst, ':')
		if dst, err = d.value(dst, f.val, depth); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

// appendKey appends a stored field name as a JSON string: as it is when
// it is plain printable ASCII without escapes, else unescaped and through
// protocol.AppendString.
func appendKey(dst, key []byte) []byte {
	if plain(key, '%') {
		dst = append(dst, '"')
		dst = append(dst, key...)
		return append(dst, '"')
	}
	return protocol.AppendString(dst, unescapeKey(string(key)))
}

// plain reports whether s is printable ASCII without '"', '\\' and also:
// the bytes JSON writes as they are.
func plain(s []byte, also byte) bool {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == also {
			return false
		}
	}
	return true
}

// array appends the BSON array arr as a JSON array; array elements that
// are wrapped arrays are unwrapped.
func (d *decoder) array(dst, arr []byte, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, d.errorf(arr, "nested too deeply")
	}
	elems, err := d.body(arr)
	if err != nil {
		return nil, err
	}
	dst = append(dst, '[')
	for first := true; len(elems) > 0; first = false {
		el, rest, ok := bsoncore.ReadElement(elems)
		if !ok {
			return nil, d.errorf(elems, "bad element")
		}
		if !first {
			dst = append(dst, ',')
		}
		if dst, err = d.value(dst, el.Value(), depth); err != nil {
			return nil, err
		}
		elems = rest
	}
	return append(dst, ']'), nil
}

// wrappedArray returns the array of {"%[]": [...]}, the stored form of an
// array nested in an array, given the document's elements.
func wrappedArray(elems []byte) ([]byte, bool) {
	el, rest, ok := bsoncore.ReadElement(elems)
	if !ok || len(rest) != 0 || bsoncore.Type(el[0]) != bsoncore.TypeArray || string(el.KeyBytes()) != nestedArrayKey {
		return nil, false
	}
	return el.Value().Data, true
}

// stringBytes returns the bytes of a BSON string value (length, bytes,
// NUL) without copying them.
func stringBytes(v []byte) ([]byte, bool) {
	n, rest, ok := bsoncore.ReadLength(v)
	if !ok || n < 1 || int(n) > len(rest) || rest[n-1] != 0 {
		return nil, false
	}
	return rest[:n-1], true
}

// wrappedBigInt returns the digits of {"%n": "<digits>"}, the stored form
// of an integer outside int64 on a server without Decimal128.
func wrappedBigInt(elems []byte) (string, bool) {
	el, rest, ok := bsoncore.ReadElement(elems)
	if !ok || len(rest) != 0 || string(el.KeyBytes()) != bigIntKey {
		return "", false
	}
	s, ok := el.Value().StringValueOK()
	if !ok || !protocol.ValidNumber(s) || strings.ContainsAny(s, ".eE") {
		return "", false
	}
	return s, true
}

// value appends one BSON value as JSON.
func (d *decoder) value(dst []byte, v bsoncore.Value, depth int) ([]byte, error) {
	switch v.Type {
	case bsoncore.TypeString:
		s, ok := stringBytes(v.Data)
		if !ok {
			return nil, d.errorf(v.Data, "bad string")
		}
		if plain(s, 0x7f) { // no copy into a Go string: most strings
			dst = append(dst, '"')
			dst = append(dst, s...)
			return append(dst, '"'), nil
		}
		return protocol.AppendString(dst, string(s)), nil
	case bsoncore.TypeInt32:
		return strconv.AppendInt(dst, int64(v.Int32()), 10), nil
	case bsoncore.TypeInt64:
		return strconv.AppendInt(dst, v.Int64(), 10), nil
	case bsoncore.TypeDouble:
		return protocol.AppendFloat(dst, v.Double()), nil
	case bsoncore.TypeEmbeddedDocument:
		return d.document(dst, v.Data, depth+1)
	case bsoncore.TypeArray:
		return d.array(dst, v.Data, depth+1)
	case bsoncore.TypeBoolean:
		return strconv.AppendBool(dst, v.Boolean()), nil
	case bsoncore.TypeNull, bsoncore.TypeUndefined:
		return append(dst, "null"...), nil
	case bsoncore.TypeDecimal128:
		h, l := v.Decimal128()
		return appendDecimal(dst, h, l), nil
	}
	return d.foreign(dst, v)
}

// appendDecimal appends a Decimal128: an integer (exponent 0, as this
// store writes big integers) as its digits, anything else (an operator's
// NumberDecimal) as the canonical double nearest to it.
func appendDecimal(dst []byte, h, l uint64) []byte {
	const (
		signBit  = 1 << 63
		expShift = 49
		expMask  = 1<<14 - 1
		bias     = 6176
	)
	if h>>61&3 != 3 && int(h>>expShift&expMask) == bias { // finite, exponent 0
		sig := new(big.Int).SetUint64(h & (1<<expShift - 1))
		sig.Lsh(sig, 64).Or(sig, new(big.Int).SetUint64(l))
		if h&signBit != 0 && sig.Sign() != 0 {
			dst = append(dst, '-')
		}
		return sig.Append(dst, 10)
	}
	f, err := strconv.ParseFloat(bson.NewDecimal128(h, l).String(), 64)
	if err != nil {
		return append(dst, "null"...)
	}
	return protocol.AppendFloat(dst, f)
}

// foreign appends a value of a type JSON has no word for (a date, an
// ObjectID an operator wrote) as relaxed Extended JSON, which is still
// valid JSON.
func (d *decoder) foreign(dst []byte, v bsoncore.Value) ([]byte, error) {
	out, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: bson.RawValue{Type: bson.Type(v.Type), Value: v.Data}}}, false, false)
	if err != nil {
		return nil, d.errorf(v.Data, fmt.Sprintf("unreadable value of BSON type %v", v.Type))
	}
	const prefix = `{"v":`
	if !bytes.HasPrefix(out, []byte(prefix)) || !bytes.HasSuffix(out, []byte("}")) {
		return nil, d.errorf(v.Data, fmt.Sprintf("unreadable value of BSON type %v", v.Type))
	}
	return append(dst, out[len(prefix):len(out)-1]...), nil
}
