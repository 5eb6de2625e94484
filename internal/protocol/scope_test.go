package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // the path joined with "/", or the start of the error
		ok   bool
	}{
		{"user", "user", true},
		{"user.name", "user/name", true},
		{"a-b.c_d.Éx", "a-b/c_d/Éx", true},
		{"items.0", "looks like an array index", false},
		{"items[0]", "looks like an array index", false},
		{"items[]", "looks like an array index", false},
		{"0", "looks like an array index", false},
		{"", "empty key path", false},
		{".user", "empty key", false},
		{"user.", "empty key", false},
		{"a..b", "keys that contain dots cannot be named", false},
		{"user.*", "wildcards", false},
		{"$where", "start with $", false},
		{"a.\x00", "contain NUL", false},
		{"a b", "white space", false},
	} {
		p, err := ParsePath(tc.in)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.ok && strings.Join(p, "/") != tc.want:
			t.Errorf("%q: got %q, want %q", tc.in, p, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want an error about %q", tc.in, err, tc.want)
		}
	}
}

func TestParsePaths(t *testing.T) {
	t.Parallel()
	if s, err := ParsePaths(nil); s != nil || err != nil {
		t.Fatalf("nil: %v, %v; want every path", s, err)
	}
	if s, err := ParsePaths([]string{"none"}); err != nil || s == nil || len(s.List()) != 0 {
		t.Fatalf("none: %v, %v; want no path", s, err)
	}
	s, err := ParsePaths([]string{"user.name", "user", "a.b.c", "a.b.d", "a.x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.List(), " "); got != "a.b.c a.b.d a.x user" {
		t.Fatalf("got %s", got)
	}
	for _, bad := range [][]string{{}, {"none", "a"}, {"a", "items.3"}, {"a..b"}} {
		if _, err := ParsePaths(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseControls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []string
		want Controls
		ok   bool
	}{
		{nil, AllControls, true},
		{[]string{"none"}, 0, true},
		{[]string{"Destroy", "max-age"}, ControlDestroy | ControlMaxAge, true},
		{[]string{"regenerate", "revoke-others", "revoke-all"}, ControlRegenerate | ControlRevokeOthers | ControlRevokeAll, true},
		{[]string{}, 0, false},
		{[]string{"none", "destroy"}, 0, false},
		{[]string{"logout"}, 0, false},
		{[]string{"max-age=0"}, 0, false},
	} {
		got, err := ParseControls(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: got %b, %v", tc.in, got, err)
		}
	}
}

func TestProject(t *testing.T) {
	t.Parallel()
	const data = `{"cart":[{"id":1},{"id":2}],"n":null,"token":"secret","user":{"id":7,"name":"ann","prefs":{},"role":"user"}}`
	for _, tc := range []struct {
		name string
		data string
		read []string // nil: every path
		want string
	}{
		{"everything", data, nil, data},
		{"everything, no data", ``, nil, `{}`},
		{"none", data, []string{"none"}, `{}`},
		{"one leaf with its parent", data, []string{"user.name"}, `{"user":{"name":"ann"}}`},
		{"two leaves share a parent", data, []string{"user.name", "user.id"}, `{"user":{"id":7,"name":"ann"}}`},
		{"an object whole", data, []string{"user"}, `{"user":{"id":7,"name":"ann","prefs":{},"role":"user"}}`},
		{"under a listed path adds nothing", data, []string{"user", "user.name"}, `{"user":{"id":7,"name":"ann","prefs":{},"role":"user"}}`},
		{"an array whole", data, []string{"cart"}, `{"cart":[{"id":1},{"id":2}]}`},
		{"a path through an array shows nothing", data, []string{"cart.id"}, `{}`},
		{"a path through a string shows nothing", data, []string{"token.x"}, `{}`},
		{"a path through null shows nothing", data, []string{"n.x"}, `{}`},
		{"null is a value", data, []string{"n"}, `{"n":null}`},
		{"an absent key", data, []string{"user.email"}, `{}`},
		{"an absent key beside a present one", data, []string{"user.email", "user.id"}, `{"user":{"id":7}}`},
		{"an empty object listed", data, []string{"user.prefs"}, `{"user":{"prefs":{}}}`},
		{"a parent left empty is not shown", data, []string{"user.prefs.theme"}, `{}`},
		{"deep", `{"a":{"b":{"c":{"d":1,"e":2},"f":3}}}`, []string{"a.b.c.d"}, `{"a":{"b":{"c":{"d":1}}}}`},
		{"unicode stays canonical", `{"u":{"n":"Zo\u00eb"},"x":1}`, []string{"u.n"}, `{"u":{"n":"Zo\u00eb"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set, err := ParsePaths(tc.read)
			if err != nil {
				t.Fatal(err)
			}
			got, err := set.Project(json.RawMessage(tc.data))
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// scopeOf builds a scope from option specs (nil: unrestricted).
func scopeOf(t testing.TB, read, write, control []string) Scope {
	t.Helper()
	r, err := ParsePaths(read)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParsePaths(write)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseControls(control)
	if err != nil {
		t.Fatal(err)
	}
	return Scope{Read: r, Write: w, Control: c}
}

// The session of the scoped tests: the main app's data.
const full = `{"cart":[1,2],"prefs":null,"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`

// TestScopedEvaluate runs upstream answers through Scope.Evaluate against
// the projected snapshot, then applies them to the full data (base, or
// the snapshot itself): what each write set lets through, at depth, with
// arrays, nulls and keys absent from the view.
func TestScopedEvaluate(t *testing.T) {
	t.Parallel()
	blog := [3][]string{{"user.name"}, {"none"}, {"none"}}
	reports := [3][]string{{"user.id"}, {"reports"}, nil}
	for _, tc := range []struct {
		name    string
		scope   [3][]string // read, write, control
		data    string      // the snapshot; empty means full
		base    string      // the data Apply meets (a concurrent write); empty means data
		in      Input
		want    string // the result, when allowed
		refused string // the refused path or directive, when refused
		late    bool   // refused by Apply, not Evaluate
	}{
		// The blog: read user.name, write none, control none.
		{name: "blog patches user.role", scope: blog, in: Input{Patch: []string{`{"user":{"role":"admin"}}`}}, refused: "user.role"},
		{name: "blog updates the whole session", scope: blog, in: Input{Update: []string{`{"token":"x","user":{"name":"ann","role":"admin"}}`}}, refused: "token"},
		{name: "blog renames", scope: blog, in: Input{Update: []string{`{"user":{"name":"bob"}}`}}, refused: "user.name"},
		{name: "blog drops its view", scope: blog, in: Input{Update: []string{`{}`}}, refused: "user.name"},
		{name: "blog drops the parent", scope: blog, in: Input{Update: []string{`{"user":{}}`}}, refused: "user.name"},
		{name: "blog echoes its view", scope: blog, in: Input{Update: []string{`{"user":{"name":"ann"}}`}}, want: full},
		{name: "blog sends an empty patch", scope: blog, in: Input{Patch: []string{`{}`}}, want: full},
		{name: "blog patches a removal of an absent key", scope: blog, in: Input{Patch: []string{`{"gone":null}`}}, refused: "gone"},
		{name: "blog destroys", scope: blog, in: Input{Control: []string{"destroy"}}, refused: "destroy"},
		{name: "blog destroys by update null", scope: blog, in: Input{Update: []string{`null`}}, refused: "destroy"},
		{name: "blog destroys by max-age=0", scope: blog, in: Input{Control: []string{"max-age=0"}}, refused: "destroy"},
		{name: "blog regenerates", scope: blog, in: Input{Control: []string{"regenerate"}}, refused: "regenerate"},
		{name: "blog revokes others", scope: blog, in: Input{Control: []string{"revoke-others"}}, refused: "revoke-others"},
		{name: "blog revokes all", scope: blog, in: Input{Control: []string{"revoke-all"}}, refused: "revoke-all"},
		{name: "blog sets max-age", scope: blog, in: Input{Control: []string{"max-age=60"}}, refused: "max-age"},

		// The reports tool: read user.id, write reports, every control.
		{name: "reports replaces reports", scope: reports, in: Input{Update: []string{`{"reports":{"next":"q2"},"user":{"id":7}}`}},
			want: `{"cart":[1,2],"prefs":null,"reports":{"next":"q2"},"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`},
		{name: "reports patches into reports", scope: reports, in: Input{Patch: []string{`{"reports":{"last":null,"n":{"x":[1]}}}`}},
			want: `{"cart":[1,2],"prefs":null,"reports":{"n":{"x":[1]}},"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`},
		{name: "reports removes reports", scope: reports, in: Input{Patch: []string{`{"reports":null}`}},
			want: `{"cart":[1,2],"prefs":null,"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`},
		{name: "reports changes user.id", scope: reports, in: Input{Patch: []string{`{"reports":{"a":1},"user":{"id":8}}`}}, refused: "user.id"},
		{name: "reports drops user.id", scope: reports, in: Input{Update: []string{`{"reports":{}}`}}, refused: "user.id"},
		{name: "reports writes a key it cannot see or write", scope: reports, in: Input{Update: []string{`{"cart":[],"user":{"id":7}}`}}, refused: "cart"},
		{name: "reports regenerates", scope: reports, in: Input{Control: []string{"regenerate"}, Patch: []string{`{"reports":{"a":1}}`}},
			want: `{"cart":[1,2],"prefs":null,"reports":{"a":1,"last":"q1"},"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`},

		// Keys absent from the view, dropped objects, nulls.
		{name: "keys the view did not show are kept", scope: [3][]string{{"user.name"}, {"user"}, nil},
			in:   Input{Update: []string{`{"user":{"name":"bob"}}`}},
			want: `{"cart":[1,2],"prefs":null,"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"name":"bob","role":"user"}}`},
		{name: "a dropped object loses what it showed", scope: [3][]string{{"user.name"}, {"user"}, nil},
			in:   Input{Update: []string{`{}`}},
			want: `{"cart":[1,2],"prefs":null,"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"role":"user"}}`},
		{name: "a dropped object left empty goes", scope: [3][]string{{"a.b"}, {"a.b"}, nil},
			data: `{"a":{"b":1},"k":1}`, in: Input{Update: []string{`{}`}}, want: `{"k":1}`},
		{name: "a dropped object is left alone when it is no longer one", scope: [3][]string{{"a.b"}, {"a.b"}, nil},
			data: `{"a":{"b":1}}`, base: `{"a":[1]}`, in: Input{Update: []string{`{}`}}, want: `{"a":[1]}`},
		{name: "an object kept empty stays", scope: [3][]string{{"a.b"}, {"a.b"}, nil},
			data: `{"a":{"b":1}}`, in: Input{Update: []string{`{"a":{}}`}}, want: `{"a":{}}`},
		{name: "dropping a shown null", scope: [3][]string{{"a.b"}, {"a.b"}, nil},
			data: `{"a":{"b":null,"c":2}}`, in: Input{Update: []string{`{}`}}, want: `{"a":{"c":2}}`},
		{name: "an update sets null", scope: [3][]string{{"prefs"}, {"prefs"}, nil},
			in:   Input{Update: []string{`{"prefs":{"theme":null}}`}},
			want: `{"cart":[1,2],"prefs":{"theme":null},"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`},
		{name: "an update nulls a listed path", scope: [3][]string{{"user.name"}, {"user.name"}, nil},
			in:   Input{Update: []string{`{"user":{"name":null}}`}},
			want: `{"cart":[1,2],"prefs":null,"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"name":null,"role":"user"}}`},
		{name: "an update's object on the way is merged", scope: [3][]string{{"none"}, {"prefs.theme", "x.y.z"}, nil},
			data: `{"prefs":{"lang":"en"}}`, in: Input{Update: []string{`{"prefs":{"theme":"dark"},"x":{"y":{"z":null}}}`}},
			want: `{"prefs":{"lang":"en","theme":"dark"},"x":{"y":{"z":null}}}`},
		{name: "an update's object on the way names a key outside", scope: [3][]string{{"none"}, {"prefs.theme"}, nil},
			data: `{"prefs":{"lang":"en"}}`, in: Input{Update: []string{`{"prefs":{"lang":"fr","theme":"dark"}}`}}, refused: "prefs.lang"},
		{name: "a patch creates the objects on the way", scope: [3][]string{{"none"}, {"prefs.theme"}, nil},
			data: `{}`, in: Input{Patch: []string{`{"prefs":{"theme":"dark"}}`}}, want: `{"prefs":{"theme":"dark"}}`},
		{name: "a patch removes an object on the way", scope: [3][]string{{"none"}, {"prefs.theme"}, nil},
			data: `{"prefs":{"lang":"en","theme":"x"}}`, in: Input{Patch: []string{`{"prefs":null}`}}, refused: "prefs"},
		{name: "a patch sets a value on the way", scope: [3][]string{nil, {"prefs.theme"}, nil},
			data: `{"prefs":{"theme":"x"}}`, in: Input{Patch: []string{`{"prefs":"dark"}`}}, refused: "prefs"},
		{name: "an update replaces an object on the way", scope: [3][]string{{"prefs"}, {"prefs.theme"}, nil},
			data: `{"prefs":{"lang":"en"}}`, in: Input{Update: []string{`{"prefs":[]}`}}, refused: "prefs"},
		{name: "an update drops a path listed whole for read, not for write", scope: [3][]string{{"prefs"}, {"prefs.theme"}, nil},
			data: `{"prefs":{"lang":"en","theme":"x"}}`, in: Input{Update: []string{`{}`}}, refused: "prefs"},
		{name: "writing into null refused", scope: [3][]string{{"none"}, {"prefs.theme"}, nil},
			in: Input{Patch: []string{`{"prefs":{"theme":"dark"}}`}}, refused: "prefs", late: true},
		{name: "writing into an array refused", scope: [3][]string{{"none"}, {"cart.size"}, nil},
			in: Input{Patch: []string{`{"cart":{"size":1}}`}}, refused: "cart", late: true},
		{name: "arrays are written whole", scope: [3][]string{{"cart"}, {"cart"}, nil},
			in:   Input{Update: []string{`{"cart":[1,{"a":null}]}`}},
			want: `{"cart":[1,{"a":null}],"prefs":null,"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"name":"ann","role":"user"}}`},
		{name: "read none, update empty", scope: [3][]string{{"none"}, {"none"}, {"none"}}, in: Input{Update: []string{`{}`}}, want: full},
		{name: "read none, update a key", scope: [3][]string{{"none"}, {"none"}, {"none"}}, in: Input{Update: []string{`{"a":1}`}}, refused: "a"},
		{name: "a refused key is quoted", scope: [3][]string{{"none"}, {"none"}, nil}, in: Input{Patch: []string{`{"a\"b":1}`}}, refused: `"a\"b"`},
		{name: "a long refused key is cut", scope: [3][]string{{"none"}, {"none"}, nil},
			in: Input{Patch: []string{`{"` + strings.Repeat("k", 100) + `":1}`}}, refused: `"` + strings.Repeat("k", 64) + `"...`},
		{name: "update and patch together", scope: [3][]string{{"user.name"}, {"user.name", "n"}, nil},
			in:   Input{Update: []string{`{"user":{"name":"bob"}}`}, Patch: []string{`{"n":{"x":1}}`}},
			want: `{"cart":[1,2],"n":{"x":1},"prefs":null,"reports":{"last":"q1"},"token":"t0k","user":{"id":7,"name":"bob","role":"user"}}`},
		{name: "a patch outside write after an allowed update", scope: [3][]string{{"user.name"}, {"user.name"}, nil},
			in: Input{Update: []string{`{"user":{"name":"bob"}}`}, Patch: []string{`{"user":{"id":1}}`}}, refused: "user.id"},

		// Concurrency: the difference is applied to fresh data.
		{name: "a concurrent write to another key is kept", scope: [3][]string{{"user.name"}, {"user.name"}, nil},
			data: `{"n":1,"user":{"name":"ann"}}`, base: `{"n":2,"other":"x","user":{"name":"ann","role":"r"}}`,
			in: Input{Update: []string{`{"user":{"name":"bob"}}`}}, want: `{"n":2,"other":"x","user":{"name":"bob","role":"r"}}`},
		{name: "a concurrent replacement of a parent refuses", scope: [3][]string{{"user.name"}, {"user.name"}, nil},
			data: `{"user":{"name":"ann"}}`, base: `{"user":"gone"}`,
			in: Input{Update: []string{`{"user":{"name":"bob"}}`}}, refused: "user", late: true},
		{name: "a concurrent removal of a parent", scope: [3][]string{{"user.name"}, {"user.name"}, nil},
			data: `{"user":{"name":"ann"}}`, base: `{}`,
			in: Input{Update: []string{`{"user":{"name":"bob"}}`}}, want: `{"user":{"name":"bob"}}`},

		// Controls allowed.
		{name: "destroy allowed in every spelling", scope: [3][]string{nil, {"none"}, {"destroy"}}, in: Input{Update: []string{`null`}, Control: []string{"max-age=0"}}, want: "destroy"},
		{name: "max-age=0 needs destroy, not max-age", scope: [3][]string{nil, nil, {"max-age"}}, in: Input{Control: []string{"max-age=0"}}, refused: "destroy"},
		{name: "revoke-others with destroy needs both", scope: [3][]string{nil, nil, {"destroy"}}, in: Input{Control: []string{"destroy, revoke-others"}}, refused: "revoke-others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := scopeOf(t, tc.scope[0], tc.scope[1], tc.scope[2])
			data := tc.data
			if data == "" {
				data = full
			}
			base := tc.base
			if base == "" {
				base = data
			}
			view, err := s.Read.Project(json.RawMessage(data))
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.Evaluate(view, tc.in, 0)
			if err == nil && !out.Destroy {
				var got json.RawMessage
				got, _, err = out.Apply(json.RawMessage(base))
				if err == nil && tc.refused == "" && string(got) != tc.want {
					t.Fatalf("got %s, want %s", got, tc.want)
				}
				if err != nil && !tc.late {
					t.Fatalf("refused by Apply, not Evaluate: %v", err)
				}
			}
			if err == nil && out.Destroy && tc.want != "destroy" {
				t.Fatalf("destroyed, want %s", tc.want)
			}
			checkRefused(t, err, tc.refused)
		})
	}
}

// checkRefused checks err is the refusal of refused, or nil when it is "".
func checkRefused(t *testing.T, err error, refused string) {
	t.Helper()
	var bad *BadInput
	switch {
	case refused == "" && err != nil:
		t.Fatalf("refused: %v", err)
	case refused == "":
	case !errors.As(err, &bad) || bad.Kind != KindForbidden || !errors.Is(err, ErrBadUpstream):
		t.Fatalf("got %v, want the refusal of %s", err, refused)
	case bad.Refused != refused || !strings.Contains(err.Error(), refused):
		t.Fatalf("refused %q (%v), want %q", bad.Refused, err, refused)
	}
}

// TestUnscopedUnchanged: Unrestricted.Evaluate is Evaluate.
func TestUnscopedUnchanged(t *testing.T) {
	t.Parallel()
	in := Input{Update: []string{`{"user":{"name":"bob"}}`}, Control: []string{"regenerate, revoke-others"}}
	out, err := Unrestricted.Evaluate(json.RawMessage(full), in, 0)
	if err != nil || !out.Regenerate || !out.RevokeOthers {
		t.Fatalf("%+v, %v", out, err)
	}
	got, _, err := out.Apply(json.RawMessage(full))
	if err != nil || string(got) != `{"user":{"name":"bob"}}` {
		t.Fatalf("got %s, %v", got, err)
	}
	if (&Unrestricted).Restricted() {
		t.Fatal("Unrestricted is restricted")
	}
}

// outside returns v without the paths of w, and without the objects on
// the way to them that are left empty: what a change under w must leave
// as it was. Objects on the way to a write path exist for what they
// hold, so creating or removing an empty one is not a change outside.
func outside(v map[string]any, w *Paths) map[string]any {
	out := map[string]any{}
	for k, e := range v {
		next := w.keys[k]
		m, isObj := e.(map[string]any)
		switch {
		case next == nil:
			out[k] = e
		case next.whole:
		case isObj:
			if sub := outside(m, next); len(sub) > 0 {
				out[k] = sub
			}
		default:
			out[k] = e
		}
	}
	return out
}

// specs splits a comma-separated list of option values; "*" is nil
// (everything).
func specs(s string) []string {
	if s == "*" {
		return nil
	}
	return strings.Split(s, ",")
}

// FuzzScope checks, for any data, read and write paths and headers, that
// a projection shows only read paths, and that no change a scoped
// upstream sends, applied to the snapshot or to data a concurrent request
// wrote, ever changes a path outside its write paths: it is refused
// (502) or it leaves everything outside write as it was.
func FuzzScope(f *testing.F) {
	f.Add(full, `{"user":"x","n":1}`, "user.name", "none", `{"user":{"name":"bob"}}`, `{"user":{"role":"admin"}}`, "destroy")
	f.Add(full, ``, "user.id", "reports", `{"reports":{"a":[1]},"user":{"id":7}}`, `{"reports":{"last":null}}`, "regenerate")
	f.Add(`{"a":{"b":{"c":1,"d":[1,{"e":2}]},"f":null}}`, `{"a":{"b":{"c":2}}}`, "a.b.c,a.f", "a.b,a.f.g", `{"a":{"b":{}}}`, `{"a":{"f":{"g":1}}}`, "")
	f.Add(`{"p":{"x":1}}`, `{"p":[1]}`, "p.x", "p.x", `{}`, ``, "max-age=0")
	f.Add(`{"p":{"x":1}}`, `{"p":null}`, "none", "p.x,q", `{"p":{"x":2},"q":{"z":1}}`, `{"p":{"y":null}}`, "")
	f.Add(`{"a":1}`, ``, "*", "a.b", `{"a":{"b":1}}`, ``, "")
	f.Fuzz(func(t *testing.T, data, base, read, write, update, patch, control string) {
		snap, fresh := canonicalSnapshot(data), canonicalSnapshot(base)
		r, rerr := ParsePaths(specs(read))
		w, werr := ParsePaths(specs(write))
		if rerr != nil || werr != nil {
			return
		}
		view, err := r.Project(snap)
		if err != nil {
			t.Fatalf("Project: %v", err)
		}
		checkData(t, view, len(view))
		if r != nil {
			if v, _ := decodeObject(view); len(outside(v, r)) > 0 {
				t.Fatalf("view %s shows paths outside %v", view, r.List())
			}
		}
		in := Input{Control: []string{control}}
		if update != "" {
			in.Update = []string{update}
		}
		if patch != "" {
			in.Patch = []string{patch}
		}
		out, err := (Scope{Read: r, Write: w, Control: AllControls}).Evaluate(view, in, 0)
		if err != nil {
			if !errors.Is(err, ErrBadUpstream) {
				t.Fatalf("error not marked as upstream's fault: %v", err)
			}
			return
		}
		for _, b := range []json.RawMessage{snap, fresh} {
			got, _, err := out.Apply(b)
			if err != nil {
				if !errors.Is(err, ErrBadUpstream) {
					t.Fatalf("Apply: %v", err)
				}
				continue
			}
			checkData(t, got, defaultMaxValue+len(b))
			if w == nil || out.Destroy {
				continue
			}
			before, _ := decodeObject(b)
			after, _ := decodeObject(got)
			if !equal(outside(before, w), outside(after, w)) {
				t.Fatalf("write %v: %s became %s", w.List(), b, got)
			}
		}
	})
}
