package mongostore

import (
	"encoding/json"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestEscapeKey(t *testing.T) {
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
		if got := escapeKey(tc.in); got != tc.want {
			t.Errorf("escapeKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := unescapeKey(escapeKey(tc.in)); got != tc.in {
			t.Errorf("round trip of %q gave %q", tc.in, got)
		}
	}
	// Hand-written keys with a stray '%' survive reading.
	for _, k := range []string{"50%", "%zz", "a%4"} {
		if got := unescapeKey(k); got != k {
			t.Errorf("unescapeKey(%q) = %q", k, got)
		}
	}
}

func roundTrip(t *testing.T, in string) (bson.RawValue, string) {
	t.Helper()
	v, err := jsonToBSON(json.RawMessage(in))
	if err != nil {
		t.Fatalf("jsonToBSON(%s): %v", in, err)
	}
	b, err := bson.Marshal(bson.D{{Key: "v", Value: v}})
	if err != nil {
		t.Fatal(err)
	}
	rv := bson.Raw(b).Lookup("v")
	out, err := appendJSON(nil, rv)
	if err != nil {
		t.Fatal(err)
	}
	return rv, string(out)
}

func TestNumbers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		typ  bson.Type
		want string
	}{
		{"0", bson.TypeInt32, "0"},
		{"-12", bson.TypeInt32, "-12"},
		{"2147483647", bson.TypeInt32, "2147483647"},
		{"2147483648", bson.TypeInt64, "2147483648"},
		{"-9223372036854775808", bson.TypeInt64, "-9223372036854775808"},
		{"9223372036854775808", bson.TypeDouble, "9223372036854776000"},
		{"1.0", bson.TypeDouble, "1"},
		{"1.5", bson.TypeDouble, "1.5"},
		{"-0.0", bson.TypeDouble, "-0"},
		{"6.02e23", bson.TypeDouble, "6.02e+23"},
		{"1e-7", bson.TypeDouble, "1e-7"},
		{"3.14159", bson.TypeDouble, "3.14159"},
	} {
		rv, out := roundTrip(t, tc.in)
		if rv.Type != tc.typ || out != tc.want {
			t.Errorf("%s: stored as %v, read back %s; want %v, %s", tc.in, rv.Type, out, tc.typ, tc.want)
		}
	}
	if _, err := jsonToBSON(json.RawMessage(`1e400`)); err == nil {
		t.Error("1e400 accepted")
	}
}

func TestStringsAndNesting(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"Zoë \u00e9 🚀 世界"`, `"Zoë é 🚀 世界"`},
		{`"q\"b\\s/\n\t\u0001\u2028"`, "\"q\\\"b\\\\s/\\n\\t\\u0001\u2028\""},
		{`""`, `""`},
		{`{"b": 1, "a": [true, null, {"c": "d"}], "e": {}}`, `{"b":1,"a":[true,null,{"c":"d"}],"e":{}}`},
		{`{"a": 1, "a": 2}`, `{"a":2}`},
		{`[]`, `[]`},
		{`[[1, [2, []]], {"a": [[]]}]`, `[[1,[2,[]]],{"a":[[]]}]`},
		{` {"$x.y": {"": 1}} `, `{"$x.y":{"":1}}`},
	} {
		if _, out := roundTrip(t, tc.in); out != tc.want {
			t.Errorf("%s read back as %s, want %s", tc.in, out, tc.want)
		}
	}
	for _, bad := range []string{``, `{`, `[1,]`, `{"a" 1}`, `1 2`, `nul`, `{"a":1}}`} {
		if _, err := jsonToBSON(json.RawMessage(bad)); err == nil {
			t.Errorf("invalid JSON %q accepted", bad)
		}
	}
}

// TestForeignTypes: values an operator wrote with types JSON lacks come
// back as relaxed Extended JSON rather than failing the read.
func TestForeignTypes(t *testing.T) {
	when := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := bson.Marshal(bson.D{{Key: "d", Value: when}, {Key: "o", Value: bson.NewObjectID()}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := dataFromBSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data["d"]); got != `{"$date":"2030-01-02T03:04:05Z"}` {
		t.Fatalf("date read back as %s", got)
	}
	if !json.Valid(data["o"]) {
		t.Fatalf("ObjectID read back as invalid JSON %s", data["o"])
	}
}

func TestNestedArraysWrapped(t *testing.T) {
	v, err := jsonToBSON(json.RawMessage(`{"a": [1, [2, [3]]]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inner := bson.Raw(b).Lookup("a").Array().Index(1)
	if inner.Type != bson.TypeEmbeddedDocument {
		t.Fatalf("nested array stored as %v, want a wrapping document", inner.Type)
	}
	if got := inner.Document().Lookup(nestedArrayKey).Array().Index(1).Type; got != bson.TypeEmbeddedDocument {
		t.Fatalf("doubly nested array stored as %v", got)
	}
}
