package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxDepth is how deeply objects and arrays may nest in session data.
// MongoDB refuses documents nested past 100 levels; a lower bound keeps
// every store and the recursive code here far from any limit.
const MaxDepth = 32

// errBadKey and friends describe why upstream data was refused.
var (
	errNotObject = errors.New("not a JSON object")
)

// decode parses s as one JSON value with numbers kept as written
// (json.Number), so 64-bit integers and decimals survive unchanged.
func decode(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed JSON: data after the value")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("malformed JSON: data after the value")
	}
	return v, nil
}

// checkKeys refuses object keys that a document store cannot keep as
// field names: a leading '$' (operators), a '.' (path separator) or NUL.
// Refusing them everywhere keeps the data identical in every store.
func checkKeys(v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("data nested deeper than %d levels", MaxDepth)
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00") {
				return fmt.Errorf("key %q not allowed: keys must not start with $ or contain . or NUL", k)
			}
			if err := checkKeys(e, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range v {
			if err := checkKeys(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// encode appends v as compact JSON in canonical form: object keys sorted,
// every non-ASCII character escaped as \uXXXX, so the result is safe in an
// HTTP header for any backend and equal values encode to equal bytes.
func encode(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		if v {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case json.Number:
		return append(dst, v...)
	case string:
		return appendString(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = encode(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = encode(dst, v[k])
		}
		return append(dst, '}')
	}
	panic(fmt.Sprintf("protocol: cannot encode %T", v)) // unreachable: values come from decode
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with everything outside
// printable ASCII escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			if c == '"' || c == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, c)
			i++
			continue
		}
		if c < 0x80 {
			switch c {
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				dst = appendU(dst, rune(c))
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x10000 {
			r -= 0x10000
			dst = appendU(dst, 0xD800+(r>>10))
			dst = appendU(dst, 0xDC00+(r&0x3FF))
		} else {
			dst = appendU(dst, r) // includes U+FFFD for invalid bytes
		}
		i += size
	}
	return append(dst, '"')
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// plainASCII reports whether raw needs no rewriting to be header-safe:
// printable ASCII only, no whitespace between tokens.
func plainASCII(raw []byte) bool {
	for _, c := range raw {
		if c < 0x21 || c >= 0x7f {
			// A space may only appear inside a string; the canonical
			// encoder never writes one outside. Be conservative.
			if c == ' ' {
				continue
			}
			return false
		}
	}
	return true
}

// Normalize returns raw in canonical form (see encode). Values that are
// already printable ASCII are returned as they are.
func Normalize(raw json.RawMessage) (json.RawMessage, error) {
	if plainASCII(raw) {
		return raw, nil
	}
	v, err := decode(string(raw))
	if err != nil {
		return nil, err
	}
	return encode(nil, v), nil
}

// AppendObject appends data as one JSON object, keys sorted, ASCII only:
// the value of the X-Session request header.
func AppendObject(dst []byte, data map[string]json.RawMessage) []byte {
	if len(data) == 0 {
		return append(dst, "{}"...)
	}
	var small [16]string
	keys := small[:0]
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		raw := data[k]
		if plainASCII(raw) {
			dst = append(dst, bytes.TrimSpace(raw)...)
		} else if n, err := Normalize(raw); err == nil {
			dst = append(dst, n...)
		} else {
			// A store handed back something that is not JSON. Never
			// forward it: send null, which the upstream can survive.
			dst = append(dst, "null"...)
		}
	}
	return append(dst, '}')
}
