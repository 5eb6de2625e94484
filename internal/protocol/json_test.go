package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"null", nil, `null`},
		{"empty object", map[string]any{}, `{}`},
		{"sorted at every depth", map[string]any{"b": []any{map[string]any{"z": true, "a": false}}, "a": "x"}, `{"a":"x","b":[{"a":false,"z":true}]}`},
		{"no HTML escaping", "<a href='x'>&</a>", `"<a href='x'>&</a>"`},
		{"non-ASCII", map[string]any{"é": "Zoë 😀 \u2028\u2029\x7f"}, `{"\u00e9":"Zo\u00eb \ud83d\ude00 \u2028\u2029\u007f"}`},
		{"invalid UTF-8", "\xff\xc3(", `"\ufffd\ufffd("`},
		{"control bytes", "\x00\x01\b\f\n\r\t\x1f\"\\", `"\u0000\u0001\b\f\n\r\t\u001f\"\\"`},
		{"numbers", []any{json.Number("1.0"), json.Number("-0"), json.Number("1E2"), json.Number("123456789012345678901234567890"), json.Number("1e-7")},
			`[1,0,100,123456789012345678901234567890,1e-7]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Encode(tc.v)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestEncodeLeavesInputAlone(t *testing.T) {
	t.Parallel()
	inner := []any{json.Number("1.50")}
	v := map[string]any{"a": inner, "b": map[string]any{"c": json.Number("-0")}}
	got, err := Encode(v)
	if err != nil || string(got) != `{"a":[1.5],"b":{"c":0}}` {
		t.Fatalf("%s %v", got, err)
	}
	if inner[0] != json.Number("1.50") || v["b"].(map[string]any)["c"] != json.Number("-0") {
		t.Fatalf("input modified: %v", v)
	}
}

func TestEncodeRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"out of range", map[string]any{"a": json.Number("1e400")}},
		{"not a number", json.Number("0x10")},
		{"float64", 1.5},
		{"int", 1},
		{"typed map", map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, err := Encode(tc.v); err == nil {
				t.Fatalf("encoded as %s", got)
			}
		})
	}
}

func TestCanonicalNumber(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"0", "0"},
		{"-0", "0"},
		{"-0.0", "0"},
		{"1.0", "1"},
		{"12", "12"},
		{"-9223372036854775808", "-9223372036854775808"},
		{"9223372036854775807", "9223372036854775807"},
		{"9223372036854775808", "9223372036854775808"},
		{"-1234567890123456789012345678901234", "-1234567890123456789012345678901234"},
		{"12345678901234567890123456789012345", "1.234567890123457e+34"},
		{"1e2", "100"},
		{"1E+2", "100"},
		{"1e20", "100000000000000000000"},
		{"1e21", "1e+21"},
		{"0.000001", "0.000001"},
		{"0.0000001", "1e-7"},
		{"1.5e300", "1.5e+300"},
		{"1e-400", "0"},
		{"-1e-400", "0"},
		{"5e-324", "5e-324"},
		{"0.1", "0.1"},
		{"3.14159265358979323846", "3.141592653589793"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := CanonicalNumber(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"1e400", "-1e400", "1" + strings.Repeat("0", 400)} {
		t.Run(bad[:min(len(bad), 10)], func(t *testing.T) {
			t.Parallel()
			if _, err := CanonicalNumber(bad); !errors.Is(err, ErrBadUpstream) {
				t.Fatalf("want ErrBadUpstream, got %v", err)
			}
		})
	}
	for _, bad := range []string{"", "-", "+1", "01", "1.", ".5", "1e", "1e+", "0x10", "NaN", "Infinity", " 1", "1 ", "--1", "1.5.5"} {
		t.Run("syntax "+bad, func(t *testing.T) {
			t.Parallel()
			if _, err := CanonicalNumber(bad); err == nil || errors.Is(err, ErrBadUpstream) {
				t.Fatalf("want a syntax error, got %v", err)
			}
		})
	}
}

func TestAppendFloat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-2.5, "-2.5"},
		{1e21, "1e+21"},
		{1e-7, "1e-7"},
		{123e-20, "1.23e-18"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{math.NaN(), "null"},
		{math.Inf(-1), "null"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if got := string(AppendFloat([]byte("x"), tc.f)); got != "x"+tc.want {
				t.Fatalf("got %s, want x%s", got, tc.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	data := json.RawMessage(`{"user":{"id":42,"name":"ann","roles":["a",{"b":null}]},"n":1.5,"":0}`)
	for _, tc := range []struct {
		name  string
		path  []string
		want  any
		found bool
	}{
		{"whole", nil, nil, true},
		{"number", []string{"user", "id"}, json.Number("42"), true},
		{"string", []string{"user", "name"}, "ann", true},
		{"array index", []string{"user", "roles", "0"}, "a", true},
		{"null", []string{"user", "roles", "1", "b"}, nil, true},
		{"float", []string{"n"}, json.Number("1.5"), true},
		{"missing key", []string{"user", "email"}, nil, false},
		{"index out of range", []string{"user", "roles", "2"}, nil, false},
		{"index with sign", []string{"user", "roles", "+0"}, nil, false},
		{"index with leading zero", []string{"user", "roles", "01"}, nil, false},
		{"index not a number", []string{"user", "roles", "x"}, nil, false},
		{"through a scalar", []string{"n", "x"}, nil, false},
		{"empty key", []string{""}, json.Number("0"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, found := Lookup(data, tc.path)
			if found != tc.found {
				t.Fatalf("found %v, want %v", found, tc.found)
			}
			if tc.path == nil {
				if _, ok := got.(map[string]any); !ok {
					t.Fatalf("whole data: got %T", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{``, `[1]`, `{"a":`} {
		if _, found := Lookup(json.RawMessage(bad), []string{"a"}); found {
			t.Errorf("Lookup in %q found something", bad)
		}
	}
}

// FuzzAppendString proves AppendString writes any string exactly as Encode
// does, and that the string reads back (as encoding/json reads it).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x01\b\f\n\r\t\x1f\x7f", "\"\\/<>&", "\u2028\u2029", "é😀\U0010FFFF", "\xff\xfe\xc3", "\xed\xa0\x80", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendString([]byte("x"), s)
		if string(got[1:]) != string(enc) {
			t.Fatalf("AppendString %s, Encode %s", got[1:], enc)
		}
		checkASCII(t, enc)
		var back string
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("read back %q, want %q", back, s)
		}
	})
}

var numberSyntax = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// FuzzCanonicalNumber proves CanonicalNumber accepts exactly the JSON
// number syntax, is idempotent, and keeps the value.
func FuzzCanonicalNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.0", "1e400", "1e-400", "9223372036854775808", "123456789012345678901234567890123456", "1E+2", "01", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		c, err := CanonicalNumber(lit)
		if valid := numberSyntax.MatchString(lit); valid != (err == nil || errors.Is(err, ErrBadUpstream)) {
			t.Fatalf("syntax: valid %v, err %v", valid, err)
		}
		if err != nil {
			return
		}
		if again, err := CanonicalNumber(c); err != nil || again != c {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", lit, c, again, err)
		}
		if enc, err := Encode(json.Number(lit)); err != nil || string(enc) != c {
			t.Fatalf("Encode %s, %v; CanonicalNumber %s", enc, err, c)
		}
		want, _ := strconv.ParseFloat(lit, 64)
		if got, err := strconv.ParseFloat(c, 64); err != nil || got != want {
			t.Fatalf("value changed: %q (%v) -> %q (%v)", lit, want, c, got)
		}
	})
}

// FuzzAppendFloat proves AppendFloat writes what encoding/json writes
// (but 0 for -0), and that its output is a canonical number.
func FuzzAppendFloat(f *testing.F) {
	for _, x := range []float64{0, 1, -1.5, 1e21, 1e20, 1e-6, 1e-7, 5e-324, math.MaxFloat64, 9.223372036854776e18} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		got := AppendFloat(nil, x)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			if string(got) != "null" {
				t.Fatalf("got %s", got)
			}
			return
		}
		want, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if x == 0 {
			want = []byte("0")
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendFloat %s, encoding/json %s", got, want)
		}
		if c, err := CanonicalNumber(string(got)); err != nil || c != string(got) {
			t.Fatalf("not canonical: %s -> %s, %v", got, c, err)
		}
	})
}

// checkASCII fails unless b is printable ASCII only.
func checkASCII(t *testing.T, b []byte) {
	t.Helper()
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			t.Fatalf("byte %#x outside printable ASCII in %q", c, b)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	v, err := decode([]byte(`{"cart":[1,2,3],"flash":"Zoë","user":{"id":42,"name":"ann","roles":["admin","dev"]},"visits":17}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendString(buf[:0], "user@example.com, Zoë")
	}
}
