package protocol

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func raw(m map[string]string) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range m {
		out[k] = json.RawMessage(v)
	}
	return out
}

func obj(t *testing.T, data map[string]json.RawMessage) string {
	t.Helper()
	return string(AppendObject(nil, data))
}

func TestEvaluateNothing(t *testing.T) {
	snap := raw(map[string]string{"a": "1"})
	out, err := Evaluate(snap, Input{}, 0)
	if err != nil || out.Changed() || out.Destroy || out.Regenerate || obj(t, out.Data) != `{"a":1}` {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestUpdateIsDiffedAgainstSnapshot(t *testing.T) {
	snap := raw(map[string]string{"keep": `"same"`, "change": "1", "drop": "true"})
	out, err := Evaluate(snap, Input{Update: []string{`{"keep":"same","change":2,"add":{"x":[1,2]}}`}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Set) != 2 || string(out.Set["change"]) != "2" || string(out.Set["add"]) != `{"x":[1,2]}` {
		t.Fatalf("set %v", out.Set)
	}
	if !slices.Equal(out.Unset, []string{"drop"}) {
		t.Fatalf("unset %v", out.Unset)
	}
	if got := obj(t, out.Data); got != `{"add":{"x":[1,2]},"change":2,"keep":"same"}` {
		t.Fatalf("data %s", got)
	}
	if obj(t, snap) != `{"change":1,"drop":true,"keep":"same"}` {
		t.Fatal("snapshot modified")
	}
}

func TestUpdateNullDestroys(t *testing.T) {
	out, err := Evaluate(raw(map[string]string{"a": "1"}), Input{Update: []string{"null"}, Control: []string{"regenerate"}}, 0)
	if err != nil || !out.Destroy || out.Regenerate {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestPatchMergesRFC7396(t *testing.T) {
	snap := raw(map[string]string{"user": `{"name":"ann","roles":["a"]}`, "n": "1", "gone": `"x"`})
	out, err := Evaluate(snap, Input{Patch: []string{`{"user":{"roles":null,"age":3},"n":2,"gone":null,"new":{"a":{"b":null,"c":1}}}`}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := obj(t, out.Data); got != `{"n":2,"new":{"a":{"c":1}},"user":{"age":3,"name":"ann"}}` {
		t.Fatalf("data %s", got)
	}
	if len(out.Set) != 3 || !slices.Equal(out.Unset, []string{"gone"}) {
		t.Fatalf("set %v unset %v", out.Set, out.Unset)
	}
}

func TestPatchOnlyUnchangedKeysCostNothing(t *testing.T) {
	snap := raw(map[string]string{"n": "1"})
	out, err := Evaluate(snap, Input{Patch: []string{`{"n":1}`}}, 0)
	if err != nil || out.Changed() {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestUpdateThenPatch(t *testing.T) {
	out, err := Evaluate(nil, Input{Update: []string{`{"a":1}`}, Patch: []string{`{"b":2}`}}, 0)
	if err != nil || obj(t, out.Data) != `{"a":1,"b":2}` {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestControl(t *testing.T) {
	out, err := Evaluate(nil, Input{Control: []string{"Regenerate, max-age=3600", " "}}, 0)
	if err != nil || !out.Regenerate || out.MaxAge == nil || *out.MaxAge != time.Hour {
		t.Fatalf("%+v %v", out, err)
	}
	out, err = Evaluate(nil, Input{Control: []string{"max-age=0"}}, 0)
	if err != nil || !out.Destroy {
		t.Fatalf("max-age=0 must destroy: %+v %v", out, err)
	}
}

func TestBadInput(t *testing.T) {
	big := `{"a":"` + strings.Repeat("x", DefaultMaxSize) + `"}`
	for name, in := range map[string]Input{
		"malformed":        {Update: []string{`{"a":`}},
		"trailing":         {Update: []string{`{"a":1} x`}},
		"not object":       {Update: []string{`[1]`}},
		"string":           {Patch: []string{`"x"`}},
		"patch null":       {Patch: []string{`null`}},
		"dollar key":       {Patch: []string{`{"$set":1}`}},
		"dotted key":       {Update: []string{`{"a.b":1}`}},
		"nested dollar":    {Update: []string{`{"a":[{"$x":1}]}`}},
		"nul key":          {Update: []string{`{"a\u0000":1}`}},
		"empty key":        {Update: []string{`{"":1}`}},
		"too big":          {Update: []string{big}},
		"unknown control":  {Control: []string{"regenerate, explode"}},
		"bad max-age":      {Control: []string{"max-age=soon"}},
		"negative max-age": {Control: []string{"max-age=-1"}},
		"destroy value":    {Control: []string{"destroy=1"}},
		"two updates":      {Update: []string{`{}`, `{}`}},
		"too deep":         {Update: []string{`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`}},
	} {
		if _, err := Evaluate(nil, in, 0); !errors.Is(err, ErrBadUpstream) {
			t.Errorf("%s: want ErrBadUpstream, got %v", name, err)
		}
	}
	// Many small patches must not grow a session past the limit either.
	snap := raw(map[string]string{"a": `"` + strings.Repeat("x", 5000) + `"`})
	if _, err := Evaluate(snap, Input{Patch: []string{`{"b":"` + strings.Repeat("y", 5000) + `"}`}}, 0); !errors.Is(err, ErrBadUpstream) {
		t.Errorf("oversized result: %v", err)
	}
}

func TestAppendObjectIsASCII(t *testing.T) {
	out, err := Evaluate(nil, Input{Update: []string{`{"name":"Zoë 😀","ctl":"a\u0001b\n","q":"\"<>"}`}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := obj(t, out.Data)
	want := `{"ctl":"a\u0001b\n","name":"Zo\u00eb \ud83d\ude00","q":"\"<>"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Values a store hands back in another spelling are normalised too.
	got = obj(t, raw(map[string]string{"k": "{\"b\": \"é\",\n \"a\": 1}"}))
	if got != `{"k":{"a":1,"b":"\u00e9"}}` {
		t.Fatalf("got %s", got)
	}
}

func FuzzEvaluate(f *testing.F) {
	f.Add(`{"a":1}`, `{"b":{"c":null}}`, "regenerate")
	f.Add(`null`, `{}`, "destroy, max-age=5")
	f.Add(`{"a":"é"}`, `{"a":{"x":[1,{"y":2}]}}`, "")
	snap := raw(map[string]string{"a": `{"x":1}`, "b": `"s"`})
	f.Fuzz(func(t *testing.T, update, patch, control string) {
		in := Input{Update: []string{update}, Patch: []string{patch}, Control: []string{control}}
		out, err := Evaluate(snap, in, 0)
		if err != nil {
			if !errors.Is(err, ErrBadUpstream) {
				t.Fatalf("error not marked as upstream's fault: %v", err)
			}
			return
		}
		enc := AppendObject(nil, out.Data)
		for _, c := range enc {
			if c < 0x20 || c >= 0x7f {
				t.Fatalf("non-ASCII or control byte in %q", enc)
			}
		}
		var back map[string]any
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("encoded data is not JSON: %v", err)
		}
		for _, k := range out.Unset {
			if _, ok := out.Set[k]; ok {
				t.Fatalf("key %q both set and unset", k)
			}
		}
	})
}

func BenchmarkAppendObject(b *testing.B) {
	data := raw(map[string]string{"user": `{"id":42,"name":"ann"}`, "visits": "17", "cart": `[1,2,3]`})
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendObject(buf[:0], data)
	}
}
