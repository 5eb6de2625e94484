package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDepth is how deeply objects and arrays may nest in upstream data.
// MongoDB refuses documents nested past 100 levels; a lower bound keeps
// every store and the recursive code here far from any limit.
const maxDepth = 32

// maxExactDigits is the most digits an integer outside int64 may have and
// still be kept as written: what a MongoDB Decimal128 holds exactly.
const maxExactDigits = 34

// decode parses data as one JSON value with numbers kept as written
// (json.Number). Its errors give a byte offset, never the input.
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("malformed JSON at byte %d", syn.Offset)
		}
		return nil, errors.New("malformed JSON: truncated")
	}
	if off := dec.InputOffset(); len(bytes.TrimLeft(data[off:], " \t\r\n")) > 0 {
		return nil, fmt.Errorf("malformed JSON: data after the value at byte %d", off)
	}
	return v, nil
}

// decodeObject decodes data as a JSON object; nil or empty data is {}.
func decodeObject(data []byte) (map[string]any, error) {
	if len(data) == 0 {
		return map[string]any{}, nil
	}
	v, err := decode(data)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

// check validates decoded upstream data in place and returns it with its
// numbers canonical. It refuses object keys that a document store cannot
// keep as field names (a leading '$', a '.' or NUL), at any depth, so the
// data is the same in every store; nesting past maxDepth; and numbers out
// of float64 range.
func check(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("data nested deeper than %d levels", maxDepth)
	}
	switch v := v.(type) {
	case json.Number:
		c, err := CanonicalNumber(string(v))
		return json.Number(c), err
	case map[string]any:
		for k, e := range v {
			if err := checkKey(k, depth); err != nil {
				return nil, err
			}
			e, err := check(e, depth+1)
			if err != nil {
				return nil, err
			}
			v[k] = e
		}
	case []any:
		for i, e := range v {
			e, err := check(e, depth+1)
			if err != nil {
				return nil, err
			}
			v[i] = e
		}
	}
	return v, nil
}

// checkKey refuses a key a document store cannot keep. The error names the
// depth (0 for top-level keys) and the key's length, never the key.
func checkKey(k string, depth int) error {
	var why string
	switch {
	case strings.HasPrefix(k, "$"):
		why = "starts with $"
	case strings.Contains(k, "."):
		why = "contains ."
	case strings.Contains(k, "\x00"):
		why = "contains NUL"
	default:
		return nil
	}
	return fmt.Errorf("key at depth %d (%d bytes) %s; keys must not start with $ or contain . or NUL", depth, len(k), why)
}

// Encode writes v (a value decoded by this package: nil, bool, string,
// json.Number, []any, map[string]any) as canonical ASCII JSON:
// encoding/json without HTML escaping (object keys sorted at every depth),
// numbers canonical (see CanonicalNumber), then one pass that turns DEL and
// every non-ASCII rune into \uXXXX (surrogate pairs above U+FFFF);
// encoding/json has already escaped the other control bytes. Such bytes
// only occur inside strings, so the result is the same JSON, printable
// ASCII only (safe in an HTTP header for any backend), and equal values
// encode to equal bytes. Output that is already plain ASCII is not copied.
func Encode(v any) ([]byte, error) {
	v, _, err := canonical(v, 0)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return toASCII(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})), nil
}

// canonical returns v with canonical numbers, and whether that differs
// from v; it copies only the maps and slices on the way to a number that
// changes, never modifying v. It refuses other types.
func canonical(v any, depth int) (any, bool, error) {
	if depth > 10000 { // far past maxDepth: only a caller-made cycle gets here
		return nil, false, errors.New("protocol: value nested too deeply")
	}
	switch v := v.(type) {
	case nil, bool, string:
		return v, false, nil
	case json.Number:
		c, err := CanonicalNumber(string(v))
		if err != nil || c == string(v) {
			return v, false, err
		}
		return json.Number(c), true, nil
	case map[string]any:
		return canonicalMap(v, depth)
	case []any:
		return canonicalSlice(v, depth)
	}
	return nil, false, fmt.Errorf("protocol: cannot encode a %T", v)
}

func canonicalMap(m map[string]any, depth int) (any, bool, error) {
	var out map[string]any // a copy, made at the first change
	for k, e := range m {
		c, changed, err := canonical(e, depth+1)
		if err != nil {
			return nil, false, err
		}
		if changed && out == nil {
			out = maps.Clone(m)
		}
		if changed {
			out[k] = c
		}
	}
	if out == nil {
		return m, false, nil
	}
	return out, true, nil
}

func canonicalSlice(s []any, depth int) (any, bool, error) {
	var out []any // a copy, made at the first change
	for i, e := range s {
		c, changed, err := canonical(e, depth+1)
		if err != nil {
			return nil, false, err
		}
		if changed && out == nil {
			out = slices.Clone(s)
		}
		if changed {
			out[i] = c
		}
	}
	if out == nil {
		return s, false, nil
	}
	return out, true, nil
}

const hexDigits = "0123456789abcdef"

// toASCII rewrites JSON text from encoding/json so that DEL and every
// non-ASCII rune, which valid JSON only has inside strings, become \uXXXX
// escapes.
// Already plain text is returned as it is, without a copy.
func toASCII(b []byte) []byte {
	i := 0
	for i < len(b) && b[i] < utf8.RuneSelf-1 {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, i, len(b)+len(b)/2)
	copy(out, b[:i])
	for i < len(b) {
		if c := b[i]; c < utf8.RuneSelf-1 {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		out = appendRune(out, r)
		i += size
	}
	return out
}

// appendRune appends r as one \uXXXX escape, or a surrogate pair of them.
// An invalid rune (utf8.RuneError) is written as \ufffd.
func appendRune(dst []byte, r rune) []byte {
	if r >= 0x10000 {
		r -= 0x10000
		dst = appendU(dst, 0xD800+(r>>10))
		r = 0xDC00 + (r & 0x3FF)
	}
	return appendU(dst, r)
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// AppendString appends s as a JSON string, byte-identical to how Encode
// writes it: escapes as encoding/json writes them (\" \\ \b \f \n \r \t,
// other control bytes as \u00XX, each invalid UTF-8 byte as \ufffd), and
// every rune outside printable ASCII as \uXXXX.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			dst = appendRune(dst, r)
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		case c == '\b':
			dst = append(dst, `\b`...)
		case c == '\f':
			dst = append(dst, `\f`...)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		default:
			dst = appendU(dst, rune(c))
		}
		i++
	}
	return append(dst, '"')
}

// AppendFloat appends f as a canonical number: as encoding/json writes a
// float64 (shortest form that reads back the same; exponent form below
// 1e-6 and from 1e21 on), with -0 written as 0. NaN and the infinities,
// which JSON cannot hold, are written as null.
func AppendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f == 0 {
		return append(dst, '0')
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' { // 1e-07 is written 1e-7, as encoding/json does
		n := len(dst)
		if n-start >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// CanonicalNumber returns the canonical spelling of the JSON number lit:
//   - an integer literal (no '.', no exponent) that fits an int64 is
//     written as strconv.FormatInt writes it (so -0 is 0);
//   - an integer literal of at most 34 digits outside int64 is kept as
//     written (a MongoDB Decimal128 holds it exactly);
//   - every other number is read as the nearest float64 and written by
//     AppendFloat, so 1.0 is 1, 1e2 is 100, -0.0 is 0 and 1e-400 is 0.
//
// A number too large for a float64 (1e400) is an error wrapping
// ErrBadUpstream; text that is not a JSON number is another error. The
// result is its own canonical spelling.
func CanonicalNumber(lit string) (string, error) {
	if !ValidNumber(lit) {
		return "", fmt.Errorf("not a JSON number (%d bytes)", len(lit))
	}
	if !strings.ContainsAny(lit, ".eE") {
		if _, err := strconv.ParseInt(lit, 10, 64); err == nil {
			if lit == "-0" {
				return "0", nil
			}
			return lit, nil
		}
		if len(strings.TrimPrefix(lit, "-")) <= maxExactDigits {
			return lit, nil
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil { // only a range error is left: |lit| is past MaxFloat64
		return "", Bad(KindJSON, "number out of range (%d bytes)", len(lit))
	}
	var buf [32]byte
	c := AppendFloat(buf[:0], f)
	if string(c) == lit {
		return lit, nil
	}
	return string(c), nil
}

// ValidNumber reports whether s is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// The MongoDB store uses it on the numbers it converts.
func ValidNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	switch {
	case s == "":
		return false
	case s[0] == '0':
		s = s[1:]
	case s[0] >= '1' && s[0] <= '9':
		s = skipDigits(s)
	default:
		return false
	}
	if rest, ok := strings.CutPrefix(s, "."); ok {
		if s = skipDigits(rest); len(s) == len(rest) {
			return false
		}
	}
	if len(s) > 0 && (s[0] == 'e' || s[0] == 'E') {
		rest := s[1:]
		if len(rest) > 0 && (rest[0] == '+' || rest[0] == '-') {
			rest = rest[1:]
		}
		if s = skipDigits(rest); len(s) == len(rest) {
			return false
		}
	}
	return s == ""
}

func skipDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[i:]
}

// Lookup decodes data (a JSON object) and follows path: objects by key,
// arrays by index (decimal digits). Numbers come back as json.Number.
// found is false when data is not a JSON object or the path leads nowhere.
func Lookup(data json.RawMessage, path []string) (v any, found bool) {
	v, err := decodeObject(data)
	if err != nil {
		return nil, false
	}
	for _, step := range path {
		switch node := v.(type) {
		case map[string]any:
			v, found = node[step]
		case []any:
			var i int
			i, found = index(step, len(node))
			if found {
				v = node[i]
			}
		default:
			found = false
		}
		if !found {
			return nil, false
		}
	}
	return v, true
}

// index parses step as an index into an array of n elements.
func index(step string, n int) (int, bool) {
	if step == "" || len(skipDigits(step)) > 0 || (len(step) > 1 && step[0] == '0') {
		return 0, false
	}
	i, err := strconv.Atoi(step)
	return i, err == nil && i < n
}
