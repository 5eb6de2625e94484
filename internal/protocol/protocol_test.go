package protocol

import (
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
