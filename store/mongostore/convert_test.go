package mongostore

import (
	"encoding/json"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

func TestEscapeKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"ünï código", "ünï código"},
		{"", "%"},
		{"%", "%25"},
		{"a.b", "a%2Eb"},
		{"$set", "%24set"},
		{"price$", "price%24"},
		{"nul\x00", "nul%00"},
		{"100%", "100%25"},
		{"%2E", "%252E"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := escapeKey(tc.in); got != tc.want {
				t.Errorf("escapeKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got := unescapeKey(escapeKey(tc.in)); got != tc.in {
				t.Errorf("round trip of %q gave %q", tc.in, got)
			}
		})
	}
	t.Run("stray percent", func(t *testing.T) {
		// Hand-written keys with a stray '%' survive reading.
		for _, k := range []string{"50%", "%zz", "a%4"} {
			if got := unescapeKey(k); got != k {
				t.Errorf("unescapeKey(%q) = %q", k, got)
			}
		}
	})
}

// convert runs data through both directions, as a write then a read.
func convert(t *testing.T, data string, noDecimal bool) (bson.Raw, string) {
	t.Helper()
	doc, err := toBSONWith(nil, []byte(data), noDecimal)
	if err != nil {
		t.Fatalf("toBSON: %v", err)
	}
	if err := bson.Raw(doc).Validate(); err != nil {
		t.Fatalf("toBSON wrote invalid BSON: %v", err)
	}
	out, err := appendJSON(nil, doc)
	if err != nil {
		t.Fatalf("appendJSON: %v", err)
	}
	return doc, string(out)
}

// TestNumbersComeBackCanonical: every number, once made canonical by the
// gateway (protocol.CanonicalNumber), is stored with the BSON type the
// rules give it and read back byte for byte.
func TestNumbersComeBackCanonical(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lit       string
		canonical string
		typ       bson.Type
	}{
		{"0", "0", bson.TypeInt32},
		{"-0", "0", bson.TypeInt32},
		{"-12", "-12", bson.TypeInt32},
		{"2147483647", "2147483647", bson.TypeInt32},
		{"2147483648", "2147483648", bson.TypeInt64},
		{"9223372036854775807", "9223372036854775807", bson.TypeInt64},
		{"-9223372036854775808", "-9223372036854775808", bson.TypeInt64},
		{"9223372036854775808", "9223372036854775808", bson.TypeDecimal128},
		{"-9223372036854775809", "-9223372036854775809", bson.TypeDecimal128},
		{"12345678901234567890123456789012", "12345678901234567890123456789012", bson.TypeDecimal128},
		{"9999999999999999999999999999999999", "9999999999999999999999999999999999", bson.TypeDecimal128},
		{"10000000000000000000000000000000000", "1e+34", bson.TypeDouble},
		{"1.0", "1", bson.TypeInt32},
		{"-0.0", "0", bson.TypeInt32},
		{"1e-400", "0", bson.TypeInt32},
		{"1e20", "100000000000000000000", bson.TypeDecimal128},
		{"1e21", "1e+21", bson.TypeDouble},
		{"0.1", "0.1", bson.TypeDouble},
		{"1.5", "1.5", bson.TypeDouble},
		{"6.02e23", "6.02e+23", bson.TypeDouble},
		{"1e-7", "1e-7", bson.TypeDouble},
		{"0.30000000000000004", "0.30000000000000004", bson.TypeDouble},
		{"1.7976931348623157e308", "1.7976931348623157e+308", bson.TypeDouble},
		{"5e-324", "5e-324", bson.TypeDouble},
	} {
		t.Run(tc.lit, func(t *testing.T) {
			c, err := protocol.CanonicalNumber(tc.lit)
			if err != nil || c != tc.canonical {
				t.Fatalf("CanonicalNumber(%s) = %s, %v; want %s (the test's premise)", tc.lit, c, err, tc.canonical)
			}
			data := `{"n":` + c + `}`
			doc, out := convert(t, data, false)
			if got := doc.Lookup("n").Type; got != tc.typ {
				t.Errorf("stored as %v, want %v", got, tc.typ)
			}
			if out != data {
				t.Errorf("read back %s, want %s", out, data)
			}
			if _, out := convert(t, data, true); out != data {
				t.Errorf("without Decimal128: read back %s, want %s", out, data)
			}
		})
	}
	t.Run("out of range", func(t *testing.T) {
		if _, err := toBSON(nil, []byte(`{"n":1e400}`)); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Fatalf("1e400: %v, want an out-of-range error", err)
		}
	})
}

// TestBigIntegersWithoutDecimal: on a server without Decimal128 an
// integer outside int64 is a {"%n": "<digits>"} document.
func TestBigIntegersWithoutDecimal(t *testing.T) {
	t.Parallel()
	doc, _ := convert(t, `{"n":[12345678901234567890]}`, true)
	v, err := doc.LookupErr("n", "0", bigIntKey)
	if err != nil || v.StringValue() != "12345678901234567890" {
		t.Fatalf("stored as %v (%v), want {%q: digits}", doc, err, bigIntKey)
	}
}

// TestCanonicalDataRoundTrip: canonical session objects come back byte
// for byte: escapes, surrogate pairs, nesting, nested arrays.
func TestCanonicalDataRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, data string }{
		{"empty", `{}`},
		{"scalars", `{"f":false,"n":null,"s":"text","t":true}`},
		{"escapes", `{"c":"\u0000\u0001\b\f\n\r\t\u001f\"\\/<>&\u007f"}`},
		{"non-ASCII", `{"cjk":"\u4e16\u754c","name":"Zo\u00eb","rocket":"\ud83d\ude80","sep":"\u2028"}`},
		{"unusual keys", `{"":1," ":2,"%":3,"100%":4,"a\"b":6,"\u00fcn":5}`},
		{"nested arrays", `{"a":[[1,[2,[]]],{"b":[[]]}],"e":[]}`},
		{"nested objects", `{"a":{"b":{"c":{"d":{}}}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, out := convert(t, tc.data, false); out != tc.data {
				t.Fatalf("read back %s, want %s", out, tc.data)
			}
		})
	}
}

// TestKeysEscapedInBSON: keys MongoDB cannot take as field names are
// stored escaped, at any depth, and an array in an array is wrapped.
func TestKeysEscapedInBSON(t *testing.T) {
	t.Parallel()
	doc, out := convert(t, `{"$set":{"a.b":[[1]]},"":"e"}`, false)
	if _, err := doc.LookupErr("%24set", "a%2Eb"); err != nil {
		t.Fatalf("escaped path missing in %v", doc)
	}
	if v, err := doc.LookupErr("%24set", "a%2Eb", "0", nestedArrayKey); err != nil || v.Type != bson.TypeArray {
		t.Fatalf("nested array not wrapped: %v", doc)
	}
	if _, err := doc.LookupErr("%"); err != nil {
		t.Fatalf("empty key not stored as %%: %v", doc)
	}
	// Written unsorted (the keys sort differently escaped), read sorted.
	if want := `{"":"e","$set":{"a.b":[[1]]}}`; out != want {
		t.Fatalf("read back %s, want %s", out, want)
	}
}

// TestReadSortsKeys: a document whose keys are not in canonical order (a
// format-1 document, a field an operator added) is read with sorted keys
// at every depth.
func TestReadSortsKeys(t *testing.T) {
	t.Parallel()
	raw, err := bson.Marshal(bson.D{
		{Key: "b", Value: int32(1)},
		{Key: "a", Value: bson.D{{Key: "z", Value: "x"}, {Key: "y", Value: bson.A{bson.D{{Key: "q", Value: 1.5}, {Key: "p", Value: nil}}}}}},
		{Key: "c", Value: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := appendJSON(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"y":[{"p":null,"q":1.5}],"z":"x"},"b":1,"c":true}`; string(out) != want {
		t.Fatalf("read %s, want %s", out, want)
	}
}

// TestInvalidJSON: bad input is refused with the kind of problem and a
// byte offset, never with the key or value.
func TestInvalidJSON(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	for _, tc := range []struct{ name, in, kind string }{
		{"truncated", `{"` + secret + `":1`, "truncated"},
		{"trailing comma", `{"` + secret + `":[1,]}`, "unexpected character"},
		{"no colon", `{"` + secret + `" 1}`, "expected ':'"},
		{"two values", `{"a":"` + secret + `"} {}`, "data after the object"},
		{"bad literal", `{"a":nul}`, "invalid literal"},
		{"bad number", `{"a":01}`, "invalid number"},
		{"bad escape", `{"a":"` + secret + `\x"}`, "invalid escape"},
		{"control", "{\"a\":\"" + secret + "\n\"}", "control character"},
		{"bad UTF-8", "{\"a\":\"" + secret + "\xff\"}", "invalid UTF-8"},
		{"duplicate", `{"` + secret + `":1,"` + secret + `":2}`, "duplicate object key"},
		{"too deep", strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100), "nested too deeply"},
		{"huge", `{"a":1e999}`, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := toBSON(nil, []byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.kind) || !strings.Contains(err.Error(), "at byte") {
				t.Errorf("error %q, want one naming %q and a byte offset", err, tc.kind)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes the data: %v", err)
			}
		})
	}
	t.Run("not an object", func(t *testing.T) {
		if _, err := toBSON(nil, []byte(`[1]`)); err != errNotObject {
			t.Fatalf("array: %v", err)
		}
	})
}

// TestMalformedBSON: stored bytes that cannot be read give an error with
// an offset, never a panic and never the content.
func TestMalformedBSON(t *testing.T) {
	t.Parallel()
	doc, _ := convert(t, `{"secret":"abcdef","x":[1,2]}`, false)
	for cut := 5; cut < len(doc); cut += 3 {
		bad := append([]byte(nil), doc[:cut]...)
		bad[0] = byte(len(bad)) // a length that fits the cut bytes
		if _, err := appendJSON(nil, bad); err != nil && strings.Contains(err.Error(), "abcdef") {
			t.Fatalf("error quotes the data: %v", err)
		}
	}
}

// TestForeignTypes: values an operator wrote with types JSON lacks come
// back as valid JSON (relaxed Extended JSON) rather than failing the read.
func TestForeignTypes(t *testing.T) {
	t.Parallel()
	dec, _ := bson.ParseDecimal128("1.5")
	raw, err := bson.Marshal(bson.D{{Key: "d", Value: bson.DateTime(1893553445000)}, {Key: "m", Value: dec}, {Key: "o", Value: bson.NewObjectID()}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := appendJSON(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("invalid JSON %s: %v", out, err)
	}
	if string(v["d"]) != `{"$date":"2030-01-02T03:04:05Z"}` || string(v["m"]) != "1.5" {
		t.Fatalf("read %s", out)
	}
}

// benchData is a typical small session: a user object, a CSRF token, a
// cart, some numbers.
const benchData = `{"cart":[{"price":12.5,"qty":2,"sku":"A-1001"},{"price":3.99,"qty":1,"sku":"B-2002"}],"csrf":"q2V4n8s0lKc3yJtY1mR7aQ","flash":null,"login":1795746307,"user":{"email":"ann@example.com","id":42,"name":"Ann Zo\u00eb","roles":["admin","editor"]}}`

// BenchmarkAppendJSON is the read path's own cost: stored BSON to the
// X-Session header value, no network.
func BenchmarkAppendJSON(b *testing.B) {
	doc, err := toBSON(nil, []byte(benchData))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchData)))
	var buf []byte
	for b.Loop() {
		buf, err = appendJSON(make([]byte, 0, len(doc)+len(doc)/8+2), doc)
		if err != nil {
			b.Fatal(err)
		}
	}
	if string(buf) != benchData {
		b.Fatalf("read %s", buf)
	}
}

// BenchmarkToBSON is the write path's own conversion cost.
func BenchmarkToBSON(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchData)))
	for b.Loop() {
		if _, err := toBSON(make([]byte, 0, 512), []byte(benchData)); err != nil {
			b.Fatal(err)
		}
	}
}
