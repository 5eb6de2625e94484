package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// evalApply evaluates in against snapshot and applies the outcome to it.
func evalApply(t *testing.T, snapshot string, in Input) (Outcome, string, bool) {
	t.Helper()
	out, err := Evaluate(json.RawMessage(snapshot), in, 0)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	data, changed, err := out.Apply(json.RawMessage(snapshot))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out, string(data), changed
}

func TestEvaluateApply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, snapshot string
		in             Input
		want           string
		changed        bool
	}{
		{"nothing", `{"a":1}`, Input{}, `{"a":1}`, false},
		{"nothing on empty", ``, Input{}, `{}`, false},
		{"update diffed", `{"change":1,"drop":true,"keep":"same"}`,
			Input{Update: []string{`{"keep":"same","change":2,"add":{"x":[1,2]}}`}},
			`{"add":{"x":[1,2]},"change":2,"keep":"same"}`, true},
		{"update same", `{"a":{"b":1}}`, Input{Update: []string{`{"a":{"b":1.0}}`}}, `{"a":{"b":1}}`, false},
		{"update keeps nulls", `{"a":1}`, Input{Update: []string{`{"a":null,"b":{"c":null}}`}}, `{"a":null,"b":{"c":null}}`, true},
		{"patch RFC 7396", `{"gone":"x","n":1,"user":{"name":"ann","roles":["a"]}}`,
			Input{Patch: []string{`{"user":{"roles":null,"age":3},"n":2,"gone":null,"new":{"a":{"b":null,"c":1}}}`}},
			`{"n":2,"new":{"a":{"c":1}},"user":{"age":3,"name":"ann"}}`, true},
		{"patch no-op", `{"n":1}`, Input{Patch: []string{`{"n":1}`}}, `{"n":1}`, false},
		{"update then patch", ``, Input{Update: []string{`{"a":1}`}, Patch: []string{`{"b":2}`}}, `{"a":1,"b":2}`, true},
		{"patch into update value", `{"a":{"x":1}}`, Input{Update: []string{`{"a":{"x":1,"y":{"z":1}}}`}, Patch: []string{`{"a":{"y":{"w":2}}}`}},
			`{"a":{"x":1,"y":{"w":2,"z":1}}}`, true},
		{"patch over removed", `{"a":{"x":1}}`, Input{Update: []string{`{}`}, Patch: []string{`{"a":{"y":null,"z":1}}`}}, `{"a":{"z":1}}`, true},
		{"ascii", ``, Input{Update: []string{`{"name":"Zoë 😀","ctl":"a\u0001b\n\u007f","q":"\"<>&"}`}},
			`{"ctl":"a\u0001b\n\u007f","name":"Zo\u00eb \ud83d\ude00","q":"\"<>&"}`, true},
		{"numbers", ``, Input{Update: []string{`{"a":[1.0,-0,1e2,1e-400,9223372036854775808,1.5e300,-0.0]}`}},
			`{"a":[1,0,100,0,9223372036854775808,1.5e+300,0]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, got, changed := evalApply(t, tc.snapshot, tc.in)
			if got != tc.want || changed != tc.changed {
				t.Fatalf("got %s (changed %v), want %s (changed %v)", got, changed, tc.want, tc.changed)
			}
		})
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	hour := time.Hour
	for _, tc := range []struct {
		name string
		in   Input
		want Outcome
	}{
		{"regenerate and max-age", Input{Control: []string{"Regenerate, max-age=3600", " "}}, Outcome{Regenerate: true, MaxAge: &hour}},
		{"max-age=0 destroys", Input{Control: []string{"max-age=0"}}, Outcome{Destroy: true}},
		{"destroy wins", Input{Control: []string{"regenerate", "destroy, max-age=3600"}, Patch: []string{`{"a":1}`}}, Outcome{Destroy: true}},
		{"update null destroys", Input{Update: []string{"null"}, Control: []string{"regenerate"}}, Outcome{Destroy: true}},
		{"revoke with regenerate", Input{Control: []string{"regenerate, revoke-others"}}, Outcome{Regenerate: true, RevokeOthers: true}},
		{"revoke-all with destroy", Input{Control: []string{"destroy,REVOKE-ALL"}}, Outcome{Destroy: true, RevokeAll: true}},
		{"revoke-others with destroy", Input{Control: []string{"destroy", "revoke-others"}}, Outcome{Destroy: true, RevokeAll: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Evaluate(nil, tc.in, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got.Destroy != tc.want.Destroy || got.Regenerate != tc.want.Regenerate ||
				got.RevokeOthers != tc.want.RevokeOthers || got.RevokeAll != tc.want.RevokeAll ||
				(got.MaxAge == nil) != (tc.want.MaxAge == nil) || (got.MaxAge != nil && *got.MaxAge != *tc.want.MaxAge) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got.Destroy && got.HasChanges() {
				t.Fatal("a destroyed session has changes")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	big := `{"a":"` + strings.Repeat("x", defaultMaxValue) + `"}`
	for _, tc := range []struct {
		name string
		in   Input
	}{
		{"malformed", Input{Update: []string{`{"a":`}}},
		{"trailing", Input{Update: []string{`{"a":1} x`}}},
		{"not object", Input{Update: []string{`[1]`}}},
		{"string patch", Input{Patch: []string{`"x"`}}},
		{"patch null", Input{Patch: []string{`null`}}},
		{"dollar key", Input{Patch: []string{`{"$set":1}`}}},
		{"dotted key", Input{Update: []string{`{"a.b":1}`}}},
		{"nested dollar", Input{Update: []string{`{"a":[{"$x":1}]}`}}},
		{"nul key", Input{Update: []string{`{"a\u0000":1}`}}},
		{"empty key", Input{Update: []string{`{"":1}`}}},
		{"number out of range", Input{Patch: []string{`{"a":[1e400]}`}}},
		{"too big", Input{Update: []string{big}}},
		{"unknown control", Input{Control: []string{"regenerate, explode"}}},
		{"bad max-age", Input{Control: []string{"max-age=soon"}}},
		{"negative max-age", Input{Control: []string{"max-age=-1"}}},
		{"max-age past ten years", Input{Control: []string{"max-age=315360001"}}},
		{"destroy value", Input{Control: []string{"destroy=1"}}},
		{"revoke value", Input{Control: []string{"revoke-all=1"}}},
		{"two updates", Input{Update: []string{`{}`, `{}`}}},
		{"two patches", Input{Patch: []string{`{}`, `{}`}}},
		{"too deep", Input{Update: []string{`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Evaluate(nil, tc.in, 0); !errors.Is(err, ErrBadUpstream) {
				t.Fatalf("want ErrBadUpstream, got %v", err)
			}
		})
	}
}

// TestConcurrentChangesMerge evaluates two responses against the same
// snapshot and applies them one after the other, as the gateway does after
// a compare-and-set conflict: both changes survive, at any depth.
func TestConcurrentChangesMerge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, snapshot string
		first, second  Input
		want           string
	}{
		{"patches of a.b and a.c", `{"a":{"x":0}}`,
			Input{Patch: []string{`{"a":{"b":1}}`}}, Input{Patch: []string{`{"a":{"c":2}}`}},
			`{"a":{"b":1,"c":2,"x":0}}`},
		{"update touches only what it changed", `{"a":{"b":0,"c":0},"n":1}`,
			Input{Update: []string{`{"a":{"b":1,"c":0},"n":1}`}}, Input{Update: []string{`{"a":{"b":0,"c":2},"n":1}`}},
			`{"a":{"b":1,"c":2},"n":1}`},
		{"update removal and patch", `{"a":1,"b":1}`,
			Input{Update: []string{`{"b":1}`}}, Input{Patch: []string{`{"c":{"d":[1]}}`}},
			`{"b":1,"c":{"d":[1]}}`},
		{"patch removal and update", `{"a":{"b":1,"c":1}}`,
			Input{Patch: []string{`{"a":{"b":null}}`}}, Input{Update: []string{`{"a":{"b":1,"c":1},"z":null}`}},
			`{"a":{"c":1},"z":null}`},
		{"update of an object replaced meanwhile", `{"a":{"x":1,"y":2}}`,
			Input{Patch: []string{`{"a":5}`}}, Input{Update: []string{`{"a":{"x":1,"y":3}}`}},
			`{"a":{"x":1,"y":3}}`},
		{"update of an object removed meanwhile", `{"a":{"b":{"x":1,"y":2}}}`,
			Input{Update: []string{`{}`}}, Input{Update: []string{`{"a":{"b":{"x":1,"y":3}}}`}},
			`{"a":{"b":{"x":1,"y":3}}}`},
		{"update and patch of an object replaced meanwhile", `{"a":{"x":1,"y":2}}`,
			Input{Patch: []string{`{"a":[]}`}}, Input{Update: []string{`{"a":{"x":1,"y":3}}`}, Patch: []string{`{"a":{"x":null,"z":{"w":4}}}`}},
			`{"a":{"y":3,"z":{"w":4}}}`},
		{"patch of an object replaced meanwhile", `{"a":{"x":1}}`,
			Input{Patch: []string{`{"a":"s"}`}}, Input{Patch: []string{`{"a":{"y":2,"z":null}}`}},
			`{"a":{"y":2}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			snap := json.RawMessage(tc.snapshot)
			first, err := Evaluate(snap, tc.first, 0)
			if err != nil {
				t.Fatal(err)
			}
			second, err := Evaluate(snap, tc.second, 0)
			if err != nil {
				t.Fatal(err)
			}
			afterFirst, _, err := first.Apply(snap)
			if err != nil {
				t.Fatal(err)
			}
			got, changed, err := second.Apply(afterFirst) // the conflict retry
			if err != nil || !changed || string(got) != tc.want {
				t.Fatalf("got %s (changed %v, %v), want %s", got, changed, err, tc.want)
			}
			if again, _, _ := second.Apply(afterFirst); string(again) != tc.want {
				t.Fatalf("a second retry gave %s", again)
			}
			if string(snap) != tc.snapshot {
				t.Fatal("snapshot modified")
			}
		})
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	patch := Input{Patch: []string{`{"b":"` + strings.Repeat("y", 60) + `"}`}}
	t.Run("no change returns base", func(t *testing.T) {
		t.Parallel()
		for _, base := range []string{"", `{"a":1}`, `{ "a" : 1 }`} {
			out, err := Evaluate(json.RawMessage(`{"a":1}`), Input{Control: []string{"regenerate"}}, 0)
			if err != nil || out.HasChanges() {
				t.Fatalf("%+v %v", out, err)
			}
			got, changed, err := out.Apply(json.RawMessage(base))
			want := base
			if base == "" {
				want = "{}"
			}
			if err != nil || changed || string(got) != want {
				t.Fatalf("Apply(%q) = %s, %v, %v", base, got, changed, err)
			}
		}
	})
	t.Run("no-op update has changes", func(t *testing.T) {
		t.Parallel()
		out, data, changed := evalApply(t, `{"a":1}`, Input{Update: []string{`{"a":1}`}})
		if !out.HasChanges() || changed || data != `{"a":1}` {
			t.Fatalf("%+v %s %v", out, data, changed)
		}
	})
	t.Run("base in another spelling is rewritten", func(t *testing.T) {
		t.Parallel()
		out, err := Evaluate(nil, Input{Patch: []string{`{"b":null}`}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, changed, err := out.Apply(json.RawMessage("{\"é\": 1.0,\n\"a\":[-0]}"))
		if err != nil || !changed || string(got) != `{"a":[0],"\u00e9":1}` {
			t.Fatalf("%s %v %v", got, changed, err)
		}
	})
	t.Run("cap on the canonical result", func(t *testing.T) {
		t.Parallel()
		out, err := Evaluate(nil, patch, 80)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := out.Apply(nil)
		if err != nil || len(got) > 80 {
			t.Fatalf("%s %v", got, err)
		}
		if _, _, err := out.Apply(json.RawMessage(`{"a":"` + strings.Repeat("x", 20) + `"}`)); !errors.Is(err, ErrBadUpstream) {
			t.Fatalf("over the cap after merge: %v", err)
		}
	})
	t.Run("cap holds under concurrency", func(t *testing.T) {
		t.Parallel()
		first, err1 := Evaluate(nil, Input{Patch: []string{`{"a":"` + strings.Repeat("x", 50) + `"}`}}, 100)
		second, err2 := Evaluate(nil, Input{Patch: []string{`{"b":"` + strings.Repeat("y", 50) + `"}`}}, 100)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		afterFirst, _, err := first.Apply(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := second.Apply(nil); err != nil {
			t.Fatalf("alone it fits: %v", err)
		}
		if _, _, err := second.Apply(afterFirst); !errors.Is(err, ErrBadUpstream) {
			t.Fatalf("together they do not: %v", err)
		}
	})
	t.Run("base that is not an object", func(t *testing.T) {
		t.Parallel()
		out, err := Evaluate(nil, patch, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, base := range []string{`[1]`, `{"a":`, `null`, `{"a":1e400}`} {
			if _, _, err := out.Apply(json.RawMessage(base)); err == nil || errors.Is(err, ErrBadUpstream) {
				t.Fatalf("Apply(%s): %v", base, err)
			}
		}
	})
	t.Run("bad snapshot", func(t *testing.T) {
		t.Parallel()
		_, err := Evaluate(json.RawMessage(`[1]`), Input{Update: []string{`{}`}}, 0)
		if err == nil || errors.Is(err, ErrBadUpstream) {
			t.Fatalf("want a store-side error, got %v", err)
		}
	})
}

// TestErrorsNeverShowData puts a marker in the keys and values of every
// kind of bad input: no error message, which the gateway logs, contains it.
func TestErrorsNeverShowData(t *testing.T) {
	t.Parallel()
	const m = "SeCrEtMaRk"
	deep := strings.Repeat(`{"`+m+`":`, 40) + `"` + m + `"` + strings.Repeat("}", 40)
	inputs := map[string]Input{
		"syntax":           {Update: []string{`{"` + m + `":` + m + `}`}},
		"truncated":        {Patch: []string{`{"` + m + `":"` + m}},
		"trailing":         {Update: []string{`{"` + m + `":1} ` + m}},
		"array":            {Update: []string{`["` + m + `"]`}},
		"string":           {Patch: []string{`"` + m + `"`}},
		"dollar":           {Patch: []string{`{"$` + m + `":"` + m + `"}`}},
		"dot":              {Update: []string{`{"a":{"` + m + `.x":"` + m + `"}}`}},
		"nul":              {Update: []string{`{"` + m + `\u0000":"` + m + `"}`}},
		"empty key":        {Update: []string{`{"":"` + m + `","` + m + `":1}`}},
		"number range":     {Update: []string{`{"` + m + `":[1e400,"` + m + `"]}`}},
		"too big":          {Update: []string{`{"` + m + `":"` + strings.Repeat(m, 1000) + `"}`}},
		"too deep":         {Update: []string{deep}},
		"two":              {Update: []string{`{"` + m + `":1}`, `{"` + m + `":2}`}},
		"control":          {Control: []string{m}},
		"control value":    {Control: []string{"destroy=" + m}},
		"control max-age":  {Control: []string{"max-age=" + m}},
		"control unknown=": {Control: []string{m + "=" + m}},
	}
	for name, in := range inputs {
		_, err := Evaluate(nil, in, 0)
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(m)) {
			t.Errorf("%s: error shows data: %v", name, err)
		}
	}
	var errs []error
	_, err := Evaluate(json.RawMessage(`{"`+m+`":`), Input{Update: []string{`{}`}}, 0)
	errs = append(errs, err)
	out, _ := Evaluate(nil, Input{Patch: []string{`{"` + m + `":"` + m + `"}`}}, 30)
	for _, base := range []string{`{"` + m + `":`, `["` + m + `"]`, `{"` + m + `":"` + m + `","b":"` + m + `"}`, `{"b":["` + m + `",1e999]}`} {
		_, _, err := out.Apply(json.RawMessage(base))
		errs = append(errs, err)
	}
	_, err = CanonicalNumber(m)
	errs = append(errs, err)
	_, err = Encode(map[string]any{m: json.Number(m)})
	errs = append(errs, err)
	_, err = Encode(map[string]any{m: []any{json.Number("1e999")}})
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
		} else if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(m)) {
			t.Errorf("case %d: error shows data: %v", i, err)
		}
	}
}

// FuzzEvaluate checks, for any headers against any valid snapshot, that
// errors are the upstream's, and that Apply gives what the protocol says
// (the update, or the snapshot, with the patch merged in as RFC 7396 says)
// as valid, ASCII-only, canonical JSON within maxValue whose keys obey the
// rules, on the snapshot and on other data alike.
func FuzzEvaluate(f *testing.F) {
	f.Add(`{"a":{"x":1},"b":"s"}`, `{"a":1}`, `{"b":{"c":null}}`, "regenerate", uint16(0))
	f.Add(`{}`, `null`, `{}`, "destroy, max-age=5", uint16(100))
	f.Add(`{"a":"é"}`, `{"a":"é","n":[1.0,-0,1e-400]}`, `{"a":{"x":[1,{"y":2}]}}`, "revoke-others", uint16(40))
	f.Add(`{"a":{"b":{"c":1}}}`, `{"a":{"b":{"c":null,"d":2}}}`, `{"a":{"b":{"e":3},"f":null}}`, "", uint16(7000))
	f.Fuzz(func(t *testing.T, snapshot, update, patch, control string, size uint16) {
		snap := canonicalSnapshot(snapshot)
		in := Input{Control: []string{control}}
		if update != "" {
			in.Update = []string{update}
		}
		if patch != "" {
			in.Patch = []string{patch}
		}
		maxValue := int(size)
		out, err := Evaluate(snap, in, maxValue)
		if err != nil {
			if !errors.Is(err, ErrBadUpstream) {
				t.Fatalf("error not marked as upstream's fault: %v", err)
			}
			return
		}
		if maxValue == 0 {
			maxValue = defaultMaxValue
		}
		got, changed, err := out.Apply(snap)
		if err != nil {
			if !errors.Is(err, ErrBadUpstream) || !strings.Contains(err.Error(), "limit") {
				t.Fatalf("Apply on the snapshot: %v", err)
			}
			return
		}
		limit := maxValue
		if !changed { // an unchanged snapshot is returned as it is, whatever its size
			limit = len(snap)
		}
		checkData(t, got, limit)
		if changed != !bytes.Equal(got, snap) || (!out.HasChanges() && changed) {
			t.Fatalf("changed %v, HasChanges %v, %s -> %s", changed, out.HasChanges(), snap, got)
		}
		if !out.Destroy && out.HasChanges() {
			if want := reference(t, snap, in); !bytes.Equal(got, want) {
				t.Fatalf("Apply gave %s, the protocol says %s", got, want)
			}
		}
		if again, _, _ := out.Apply(snap); !bytes.Equal(again, got) {
			t.Fatalf("second Apply gave %s, first %s", again, got)
		}
		other := json.RawMessage(`{"a":[1],"b":{"c":{"d":"e"}},"z":null}`)
		if got, _, err := out.Apply(other); err == nil {
			checkData(t, got, max(maxValue, len(other)))
		} else if !errors.Is(err, ErrBadUpstream) {
			t.Fatalf("Apply on other data: %v", err)
		}
	})
}

// canonicalSnapshot turns fuzz input into a snapshot a store could hold.
func canonicalSnapshot(s string) json.RawMessage {
	v, err := decode([]byte(s))
	if err == nil {
		if _, ok := v.(map[string]any); ok {
			if v, err = check(v, 0); err == nil {
				if enc, err := Encode(v); err == nil {
					return enc
				}
			}
		}
	}
	return json.RawMessage(`{"a":{"x":1},"b":"s"}`)
}

// reference works the result out the plain way: the update (or the
// snapshot), then the patch merged in as RFC 7396 says.
func reference(t *testing.T, snap json.RawMessage, in Input) json.RawMessage {
	t.Helper()
	data := snap
	if len(in.Update) == 1 {
		data = json.RawMessage(in.Update[0])
	}
	v, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(map[string]any)
	if len(in.Patch) == 1 {
		p, err := decode([]byte(in.Patch[0]))
		if err != nil {
			t.Fatal(err)
		}
		obj = mergeRFC7396(obj, p.(map[string]any))
	}
	enc, err := Encode(obj)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func mergeRFC7396(target, patch map[string]any) map[string]any {
	for k, p := range patch {
		switch p := p.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			t, ok := target[k].(map[string]any)
			if !ok {
				t = map[string]any{}
			}
			target[k] = mergeRFC7396(t, p)
		default:
			target[k] = p
		}
	}
	return target
}

// checkData fails unless data is a JSON object in canonical ASCII form,
// within maxValue, whose keys obey the rules.
func checkData(t *testing.T, data []byte, maxValue int) {
	t.Helper()
	checkASCII(t, data)
	if len(data) > maxValue {
		t.Fatalf("%d bytes, over %d", len(data), maxValue)
	}
	v, err := decode(data)
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, data)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not an object: %s", data)
	}
	if _, ok := obj[""]; ok {
		t.Fatalf("empty top-level key in %s", data)
	}
	if _, err := check(v, 0); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	if enc, err := Encode(v); err != nil || !bytes.Equal(enc, data) {
		t.Fatalf("not canonical: %s re-encodes as %s (%v)", data, enc, err)
	}
}

func BenchmarkEvaluateApplyPatch(b *testing.B) {
	snap := json.RawMessage(`{"cart":[1,2,3],"flash":"Zo\u00eb","user":{"id":42,"name":"ann","roles":["admin","dev"]},"visits":17}`)
	in := Input{Patch: []string{`{"visits":18,"flash":null}`}}
	b.ReportAllocs()
	for b.Loop() {
		out, err := Evaluate(snap, in, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, changed, err := out.Apply(snap); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

func BenchmarkEvaluateApplyUpdate(b *testing.B) {
	snap := json.RawMessage(`{"cart":[1,2,3],"flash":"Zo\u00eb","user":{"id":42,"name":"ann","roles":["admin","dev"]},"visits":17}`)
	in := Input{Update: []string{`{"cart":[1,2,3],"user":{"id":42,"name":"ann","roles":["admin","dev"]},"visits":18}`}}
	b.ReportAllocs()
	for b.Loop() {
		out, err := Evaluate(snap, in, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, changed, err := out.Apply(snap); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}
