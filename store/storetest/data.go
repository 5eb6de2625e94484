package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// corpusEntry is one session object in the gateway's canonical encoding
// (package internal/protocol): ASCII only, keys sorted at every depth, no
// insignificant space, non-ASCII as \uXXXX (lower-case hex, surrogate
// pairs above U+FFFF), integers that fit int64 as written by
// strconv.FormatInt, integers of at most 34 digits outside int64 as
// written, every other number as encoding/json writes a float64.
type corpusEntry struct {
	name string
	data string
}

// corpus is what a store must hand back byte for byte. Every entry is
// canonical, so a store that decodes and re-encodes (MongoDB) must land on
// exactly these bytes. Keys starting with "$" or holding "." or NUL are
// absent on purpose: the gateway refuses them before they reach a store.
var corpus = []corpusEntry{
	{"empty object", `{}`},
	{"scalars", `{"f":false,"n":null,"s":"text","t":true,"z":0}`},
	{"unicode escapes", `{"cjk":"\u4e16\u754c","name":"Zo\u00eb \u00e9","sep":"\u2028\u2029"}`},
	{"surrogate pairs", `{"rocket":"\ud83d\ude80","two":"\ud83d\ude00\ud834\udd1e"}`},
	{"control characters", `{"c":"\u0000\u0001\b\f\n\r\t\u001f\"\\/<>&"}`},
	{"nested", `{"a":{"b":{"c":[1,[2,[3,{}]],{"d":[]}]}},"list":[1,"two",3.5,false,null,{"k":"v"},[]]}`},
	{"empty containers", `{"a":[],"o":{},"s":"","x":[{}],"y":{"z":[]}}`},
	{"int64 edges", `{"max":9223372036854775807,"min":-9223372036854775808,"one":1,"small":-1,"zero":0}`},
	{"just outside int64", `{"above":9223372036854775808,"below":-9223372036854775809}`},
	{"20-digit integers", `{"neg":-99999999999999999999,"pos":12345678901234567890,"ten":10000000000000000000}`},
	{"21-digit integer from 1e20", `{"n":100000000000000000000}`},
	{"34-digit integers", `{"neg":-9999999999999999999999999999999999,"pos":1234567890123456789012345678901234}`},
	{"floats", `{"a":1.5,"b":1e-7,"c":1e+21,"d":0.1,"e":-2.5,"f":0.30000000000000004,"g":123456789.125}`},
	{"float extremes", `{"max":1.7976931348623157e+308,"min":5e-324,"neg":-1e-300}`},
	{"numbers in arrays", `{"l":[9223372036854775807,12345678901234567890,1.5,1e+21,-1]}`},
	{"unusual keys", `{"":2," ":1,"Z":3,"_id":4,"a-b":5,"with space":6,"\u00fcn\u00ef":7,"\ud83d\ude80":8}`},
	{"operator-like values", `{"inc":{"x":"$inc","y":["a.b"]},"user_name":"$set"}`},
	{"nested unusual keys", `{"a":{"_id":{"a-b":[{" ":"\u00e9"}]}}}`},
	{"large value", `{"big":"` + strings.Repeat("abcdefghij", 700) + `","n":1}`},
}

// testDataRoundTrip checks that Find hands back the bytes Create and
// Update were given, for every corpus entry.
func testDataRoundTrip(t *testing.T, s store.Store) {
	for _, e := range corpus {
		t.Run(e.name, func(t *testing.T) {
			c := newClock()
			created := newKey(t)
			rec := newRecord(c, e.data, c.at(time.Hour))
			mustCreate(t, s, created, rec)
			checkUnchanged(t, s, created, c.at(0), stored(rec))

			updated := newKey(t)
			mustCreate(t, s, updated, newRecord(c, `{"before":1}`, c.at(time.Hour)))
			up := newRecord(c, e.data, c.at(time.Hour))
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
