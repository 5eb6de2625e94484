package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is least privilege per route: what one upstream may read,
// write and control (the read, write and control options of the gateway).
//
//   - Read projects the session data: the upstream gets only the listed
//     key paths, with the objects that hold them (Paths.Project).
//   - An X-Session-Update from a projected upstream replaces its view, not
//     the session: it is diffed against the projected snapshot, and the
//     difference is applied to the full data inside the compare-and-set.
//     Members the view did not show are left alone; a projected object
//     the update dropped loses the paths it showed, and goes when that
//     leaves it empty.
//   - Write refuses a change (from an update's diff or a patch) that names
//     a path outside the listed ones. Objects on the way to a write path
//     can be written into, never replaced or removed, and a change that
//     would write into one that holds something else (a string, an array,
//     null) is refused when it is applied.
//   - Control refuses directives outside the listed ones. A destroy in any
//     spelling (destroy, max-age=0, an update of null) is a destroy.
//
// A refusal is a BadInput of KindForbidden whose Refused field names the
// refused path or directive. Paths refused are upstream keys, so they are
// quoted and each key is cut at maxKeyShown bytes; no value is ever named.

// Path is a key path: object keys from the top of the session data down.
// It is written with dots: "user.name".
type Path []string

// String writes the path with dots.
func (p Path) String() string { return strings.Join(p, ".") }

// ParsePath parses a dotted key path. Paths name object keys only: an
// array is read and written whole, so a step that looks like an array
// index ("items.0", "items[0]") is an error, as are empty steps, wildcards
// and keys the gateway refuses in data (a leading $, or NUL). Keys that
// contain dots cannot be named: a dot always separates two keys (and the
// gateway refuses keys with dots in session data anyway).
func ParsePath(s string) (Path, error) { return parsePath(s, false) }

// ParseLookupPath parses a dotted path that Lookup follows (subject,
// require_session's key, placeholders): as ParsePath, but a step of
// digits is an array index.
func ParseLookupPath(s string) (Path, error) { return parsePath(s, true) }

func parsePath(s string, index bool) (Path, error) {
	if s == "" {
		return nil, errors.New("empty key path")
	}
	p := Path(strings.Split(s, "."))
	for i, key := range p {
		if err := pathStep(key, index); err != nil {
			return nil, fmt.Errorf("key path %q, step %d: %v", s, i+1, err)
		}
	}
	return p, nil
}

// pathStep checks one key of a path; index allows array indexes.
func pathStep(key string, index bool) error {
	switch {
	case key == "":
		return errors.New("empty key (keys that contain dots cannot be named: a dot always separates two keys)")
	case strings.ContainsAny(key, "[]") || (!index && isIndex(key)):
		return errors.New("looks like an array index: paths name object keys, and an array is projected and written whole (name the key that holds it)")
	case key == "*" || strings.Contains(key, "*"):
		return errors.New("wildcards are not supported: name each key")
	case strings.HasPrefix(key, "$") || strings.ContainsRune(key, 0):
		return errors.New("keys that start with $ or contain NUL are refused in session data, so they cannot be named")
	case strings.ContainsAny(key, " \t\r\n"):
		return errors.New("contains white space")
	}
	return nil
}

// isIndex reports whether key is all digits.
func isIndex(key string) bool {
	return key != "" && strings.Trim(key, "0123456789") == ""
}

// None is the spelling of the empty set of paths or directives in the
// configuration ("read none", "write none", "control none"). It must stand
// alone, so a top-level key named "none" cannot be named by itself.
const None = "none"

// Paths is a set of key paths, kept as a tree of keys. A nil *Paths is
// every path (no restriction); an empty one, from "none", is no path.
type Paths struct {
	whole bool              // the whole value here is in the set
	keys  map[string]*Paths // the keys below, when not whole
}

// ParsePaths parses the paths of a read or write option. nil specs give
// nil (everything); "none" alone gives the empty set. A path under
// another listed path adds nothing.
func ParsePaths(specs []string) (*Paths, error) {
	if specs == nil {
		return nil, nil
	}
	set := &Paths{}
	if len(specs) == 1 && specs[0] == None {
		return set, nil
	}
	if len(specs) == 0 {
		return nil, errors.New(`no key paths: list at least one, or write "none"`)
	}
	for _, s := range specs {
		if s == None {
			return nil, errors.New(`"none" must stand alone`)
		}
		p, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		set.add(p)
	}
	return set, nil
}

// add puts p in the set.
func (s *Paths) add(p Path) {
	for _, key := range p {
		if s.whole {
			return
		}
		if s.keys == nil {
			s.keys = map[string]*Paths{}
		}
		next := s.keys[key]
		if next == nil {
			next = &Paths{}
			s.keys[key] = next
		}
		s = next
	}
	s.whole, s.keys = true, nil
}

// List returns the paths of the set, sorted; nil for every path.
func (s *Paths) List() []string {
	if s == nil {
		return nil
	}
	out := []string{}
	s.walk(nil, func(p Path) { out = append(out, p.String()) })
	slices.Sort(out)
	return out
}

func (s *Paths) walk(at Path, f func(Path)) {
	if s.whole {
		f(at)
		return
	}
	for k, next := range s.keys {
		next.walk(append(at[:len(at):len(at)], k), f)
	}
}

// Project returns the part of data (canonical session JSON; empty is {})
// the set shows: each listed path that holds a value, with the objects
// on the way to it, and nothing else. Arrays are projected whole; a path
// through a value that is not an object shows nothing. A nil set returns
// data as it is; the empty set returns {}.
func (s *Paths) Project(data json.RawMessage) (json.RawMessage, error) {
	if s == nil {
		if len(data) == 0 {
			return json.RawMessage("{}"), nil
		}
		return data, nil
	}
	if len(s.keys) == 0 && !s.whole {
		return json.RawMessage("{}"), nil
	}
	obj, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("session data: %w", err)
	}
	return Encode(s.project(obj))
}

// project returns the part of obj the set shows. It shares values with
// obj.
func (s *Paths) project(obj map[string]any) map[string]any {
	if s.whole {
		return obj
	}
	out := make(map[string]any, len(s.keys))
	for k, next := range s.keys {
		v, ok := obj[k]
		switch m, isObj := v.(map[string]any); {
		case !ok:
		case next.whole:
			out[k] = v
		case isObj:
			if sub := next.project(m); len(sub) > 0 {
				out[k] = sub
			}
		}
	}
	return out
}

// Controls is a set of control directives (see ParseControls).
type Controls uint8

// The control directives, as the control option names them.
const (
	ControlRegenerate Controls = 1 << iota
	ControlDestroy
	ControlMaxAge
	ControlRevokeOthers
	ControlRevokeAll

	// AllControls is every directive: the default.
	AllControls = ControlRegenerate | ControlDestroy | ControlMaxAge | ControlRevokeOthers | ControlRevokeAll
)

var controlNames = [...]struct {
	c    Controls
	name string
}{
	{ControlRegenerate, "regenerate"},
	{ControlDestroy, "destroy"},
	{ControlMaxAge, "max-age"},
	{ControlRevokeOthers, "revoke-others"},
	{ControlRevokeAll, "revoke-all"},
}

// ParseControls parses the directives of a control option: nil is every
// directive, "none" alone is none. Directive names are matched without
// regard to case, as in X-Session-Control.
func ParseControls(specs []string) (Controls, error) {
	if specs == nil {
		return AllControls, nil
	}
	if len(specs) == 1 && specs[0] == None {
		return 0, nil
	}
	if len(specs) == 0 {
		return 0, errors.New(`no control directives: list at least one, or write "none"`)
	}
	var set Controls
	for _, s := range specs {
		c := controlNamed(strings.ToLower(s))
		if c == 0 {
			return 0, fmt.Errorf("control directive %q: want %s, or none alone", s, strings.Join(ControlNames(AllControls), ", "))
		}
		set |= c
	}
	return set, nil
}

func controlNamed(name string) Controls {
	for _, n := range controlNames {
		if n.name == name {
			return n.c
		}
	}
	return 0
}

// ControlNames lists the names of the directives in set.
func ControlNames(set Controls) []string {
	var out []string
	for _, n := range controlNames {
		if set&n.c != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// Scope is what one upstream may read, write and control. The zero value
// allows no directive; Unrestricted allows everything.
type Scope struct {
	Read    *Paths   // what the upstream is shown; nil: all the data
	Write   *Paths   // what it may change; nil: everything
	Control Controls // the directives it may send
}

// Unrestricted is the scope of an upstream without read, write or
// control options.
var Unrestricted = Scope{Control: AllControls}

// Restricted reports whether the scope limits anything.
func (s *Scope) Restricted() bool {
	return s.Read != nil || s.Write != nil || s.Control != AllControls
}

// forbidden is the refusal of a path outside write.
func forbidden(at Path) error {
	shown := make([]string, len(at))
	for i, k := range at {
		shown[i] = shownKey(k)
	}
	p := strings.Join(shown, ".")
	return &BadInput{Kind: KindForbidden, Refused: p, msg: "the change to " + p + " is outside the handler's write paths"}
}

// maxKeyShown is how many bytes of an upstream's key a refusal shows.
const maxKeyShown = 64

// shownKey is a key as a refusal names it: cut at maxKeyShown bytes and
// quoted when it is not plain.
func shownKey(k string) string {
	cut := len(k) > maxKeyShown
	if cut {
		k = k[:maxKeyShown]
	}
	if plain(k) && !cut {
		return k
	}
	q := strconv.QuoteToASCII(k)
	if cut {
		q += "..."
	}
	return q
}

// plain reports whether k is letters, digits, '_' and '-' only.
func plain(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return k != ""
}

// checkControl refuses the directives out uses that the scope does not
// allow, as the upstream spelled them (before Destroy overrides others).
func (s *Scope) checkControl(out *Outcome) error {
	used := Controls(0)
	for _, u := range [...]struct {
		on bool
		c  Controls
	}{
		{out.Regenerate, ControlRegenerate},
		{out.Destroy, ControlDestroy},
		{out.MaxAge != nil, ControlMaxAge},
		{out.RevokeOthers, ControlRevokeOthers},
		{out.RevokeAll, ControlRevokeAll},
	} {
		if u.on {
			used |= u.c
		}
	}
	if refused := used &^ s.Control; refused != 0 {
		name := ControlNames(refused)[0]
		return &BadInput{Kind: KindForbidden, Refused: name, msg: "control directive " + name + " is not allowed for the handler"}
	}
	return nil
}

// diffView is diff for an update from an upstream shown the projection
// of r: an object of the view that the update dropped, and that the
// projection made (not listed whole), loses only what the view showed.
func diffView(old, new map[string]any, r *Paths) *patch {
	if r == nil || r.whole {
		return diff(old, new)
	}
	p := &patch{members: map[string]any{}, whole: new}
	for k, ov := range old {
		if _, ok := new[k]; ok {
			continue
		}
		next := r.keys[k]
		if om, isObj := ov.(map[string]any); isObj && next != nil && !next.whole {
			d := diffView(om, map[string]any{}, next)
			d.whole, d.prune = nil, true
			p.members[k] = d
			continue
		}
		p.members[k] = remove{}
	}
	for k, nv := range new {
		ov, had := old[k]
		om, oIsObj := ov.(map[string]any)
		nm, nIsObj := nv.(map[string]any)
		switch {
		case had && oIsObj && nIsObj:
			if d := diffView(om, nm, r.keys[k]); len(d.members) > 0 {
				p.members[k] = d
			}
		case !had || !equal(ov, nv):
			p.members[k] = nv
		}
	}
	return p
}

// restrict returns p as it may be applied under the write set s, or the
// refusal of the first path (in key order) outside it. Below a listed
// path the change is kept as it is. On the way to one, members must merge
// into objects: an object set there is merged instead (what the view did
// not show is kept), and a removal or any other value is refused. These
// patches are strict: blocked refuses them over a target that is not an
// object.
func (s *Paths) restrict(p *patch, at Path) (*patch, error) {
	out := &patch{members: make(map[string]any, len(p.members)), prune: p.prune, strict: true}
	for _, k := range sortedKeys(p.members) {
		v := p.members[k]
		here := append(at[:len(at):len(at)], k)
		next := s.keys[k]
		if next == nil {
			return nil, forbidden(firstPath(v, here))
		}
		if next.whole {
			out.members[k] = v
			continue
		}
		var sub *patch
		switch v := v.(type) {
		case *patch:
			sub = v
		case map[string]any:
			sub = &patch{members: make(map[string]any, len(v))}
			for mk, mv := range v {
				sub.members[mk] = mv
			}
		default: // a removal, or a value that is not an object
			return nil, forbidden(here)
		}
		r, err := next.restrict(sub, here)
		if err != nil {
			return nil, err
		}
		out.members[k] = r
	}
	return out, nil
}

// firstPath names the first path (in key order) a change v at "at"
// touches: the change itself unless it merges into an object.
func firstPath(v any, at Path) Path {
	var members map[string]any
	switch v := v.(type) {
	case *patch:
		members = v.members
	case map[string]any:
		members = v
	}
	if len(members) == 0 {
		return at
	}
	k := sortedKeys(members)[0]
	return firstPath(members[k], append(at[:len(at):len(at)], k))
}

// sortedKeys returns the keys of m in order, so refusals are stable.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// blocked returns the first path where a strict patch of p meets a target
// that is present and not an object, or nil. Such a change would replace
// a value outside the write paths. A prune patch there is a no-op.
func (p *patch) blocked(target map[string]any, at Path) Path {
	for _, k := range sortedKeys(p.members) {
		sub, ok := p.members[k].(*patch)
		if !ok || !sub.strict {
			continue
		}
		v, present := target[k]
		if !present {
			continue
		}
		here := append(at[:len(at):len(at)], k)
		m, isObj := v.(map[string]any)
		switch {
		case isObj:
			if b := sub.blocked(m, here); b != nil {
				return b
			}
		case !sub.prune:
			return here
		}
	}
	return nil
}
