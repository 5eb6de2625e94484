package storetest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/protocol"
	"github.com/sessiongate/caddy-session/store"
)

// corpusEntry is one session object, written as JSON the way an upstream
// might send it. The store is given its canonical encoding (see
// canonicalData): what the gateway stores.
type corpusEntry struct {
	name string
	json string
}

// corpus is what a store must hand back byte for byte, once encoded.
// Keys starting with "$" or holding "." or NUL are absent on purpose: the
// gateway refuses them before they reach a store.
var corpus = []corpusEntry{
	{"empty object", `{}`},
	{"scalars", `{"t": true, "f": false, "n": null, "s": "text", "z": 0}`},
	{"unicode", `{"name": "Zoë é", "cjk": "世界", "sep": "\u2028\u2029", "escaped": "\u00e9"}`},
	{"surrogate pairs", `{"rocket": "🚀", "two": "😀𝄞", "escaped": "\ud83d\ude80"}`},
	{"control characters", `{"c": "\u0000\u0001\b\f\n\r\t\u001f\"\\/<>&\u007f"}`},
	{"nested", `{"list": [1, "two", 3.5, false, null, {"k": "v"}, []], "a": {"b": {"c": [1, [2, [3, {}]], {"d": []}]}}}`},
	{"empty containers", `{"o": {}, "a": [], "s": "", "x": [{}], "y": {"z": []}}`},
	{"int64 edges", `{"max": 9223372036854775807, "min": -9223372036854775808, "one": 1, "small": -1, "zero": 0, "minus zero": -0}`},
	{"just outside int64", `{"above": 9223372036854775808, "below": -9223372036854775809}`},
	{"20-digit integers", `{"pos": 12345678901234567890, "neg": -99999999999999999999, "ten": 10000000000000000000}`},
	{"34-digit integers", `{"pos": 1234567890123456789012345678901234, "neg": -9999999999999999999999999999999999}`},
	{"floats", `{"a": 1.5, "b": 1e-7, "c": 1e21, "d": 0.1, "e": -2.5, "f": 0.30000000000000004, "g": 123456789.125}`},
	{"floats written as integers", `{"one": 1.0, "hundred": 1E+2, "e20": 1e20, "minus zero": -0.0}`},
	{"float extremes", `{"max": 1.7976931348623157e308, "min": 5e-324, "neg": -1e-300}`},
	{"numbers in arrays", `{"l": [9223372036854775807, 12345678901234567890, 1.5, 1e21, -1]}`},
	{"unusual keys", `{"with space": 6, "a-b": 5, "_id": 4, "Z": 3, " ": 1, "": 2, "ünï": 7, "🚀": 8}`},
	{"operator-like values", `{"user_name": "$set", "inc": {"x": "$inc", "y": ["a.b"]}}`},
	{"nested unusual keys", `{"a": {"_id": {"a-b": [{" ": "é"}]}}}`},
	{"large value", `{"n": 1, "big": "` + strings.Repeat("abcdefghij", 700) + `"}`},
}

// canonicalData returns the canonical encoding of e (package
// internal/protocol), the bytes the gateway would hand a store.
func canonicalData(t *testing.T, e corpusEntry) string {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(e.json))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("corpus entry %q: %v", e.name, err)
	}
	data, err := protocol.Encode(v)
	if err != nil {
		t.Fatalf("corpus entry %q: Encode: %v", e.name, err)
	}
	return string(data)
}

// testDataRoundTrip checks that Find hands back the bytes Create and
// Update were given, for every corpus entry.
func testDataRoundTrip(t *testing.T, s store.Store) {
	for _, e := range corpus {
		t.Run(e.name, func(t *testing.T) {
			data := canonicalData(t, e)
			c := newClock()
			created := newKey(t)
			rec := newRecord(c, data, c.at(time.Hour))
			mustCreate(t, s, created, rec)
			checkUnchanged(t, s, created, c.at(0), stored(rec))

			updated := newKey(t)
			mustCreate(t, s, updated, newRecord(c, `{"before":1}`, c.at(time.Hour)))
			up := newRecord(c, data, c.at(time.Hour))
			up.Version = 1
			mustUpdate(t, s, updated, up, c.at(time.Second))
			got := mustFind(t, s, updated, c.at(time.Second))
			want := stored(up)
			want.Updated, want.Version = c.at(time.Second), 2
			checkRecord(t, got, want)
		})
	}
}

// testEmptyData checks that nil and empty Data read back as {}, from
// Create and from Update.
func testEmptyData(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			key := newKey(t)
			rec := newRecord(c, "", c.at(time.Hour))
			rec.Data = tc.data
			mustCreate(t, s, key, rec)
			got := mustFind(t, s, key, c.at(0))
			if string(got.Data) != `{}` {
				t.Fatalf("after Create: Data = %q, want {}", got.Data)
			}

			key = newKey(t)
			mustCreate(t, s, key, newRecord(c, `{"a":1}`, c.at(time.Hour)))
			up := newRecord(c, "", c.at(time.Hour))
			up.Data, up.Version = tc.data, 1
			mustUpdate(t, s, key, up, c.at(time.Second))
			got = mustFind(t, s, key, c.at(time.Second))
			if string(got.Data) != `{}` || got.Version != 2 {
				t.Fatalf("after Update: Data = %q, Version = %d, want {} and 2", got.Data, got.Version)
			}
		})
	}
}
