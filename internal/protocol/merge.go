package protocol

import (
	"encoding/json"
	"maps"
)

// patch is a change to a JSON object, in the spirit of an RFC 7396 merge
// patch, with "remove" and "set to null" kept apart. Each member is one of:
//   - remove{}: delete the key;
//   - a patch: merge into the object under the key (an object made from {}
//     when the key holds something else or nothing);
//   - any other decoded value, null and objects included: set the key to
//     it, as it is.
type patch map[string]any

// remove marks a key to delete.
type remove struct{}

// fromMergePatch turns a decoded RFC 7396 merge patch into a patch: null
// members remove, object members merge.
func fromMergePatch(m map[string]any) patch {
	p := make(patch, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			p[k] = remove{}
		case map[string]any:
			p[k] = fromMergePatch(v)
		default:
			p[k] = v
		}
	}
	return p
}

// diff returns the patch that turns old into new, at every depth: keys
// gone from new are removed, objects in both are diffed, other values that
// differ are set. Values equal in both are left out.
func diff(old, new map[string]any) patch {
	p := patch{}
	for k := range old {
		if _, ok := new[k]; !ok {
			p[k] = remove{}
		}
	}
	for k, nv := range new {
		ov, had := old[k]
		om, oIsObj := ov.(map[string]any)
		nm, nIsObj := nv.(map[string]any)
		switch {
		case had && oIsObj && nIsObj:
			if d := diff(om, nm); len(d) > 0 {
				p[k] = d
			}
		case !had || !equal(ov, nv):
			p[k] = nv
		}
	}
	return p
}

// compose returns the patch that applies a and then b. It may reuse a and b.
func compose(a, b patch) patch {
	if a == nil {
		return b
	}
	for k, bv := range b {
		bp, isPatch := bv.(patch)
		av, had := a[k]
		if !isPatch || !had {
			a[k] = bv
			continue
		}
		switch av := av.(type) {
		case patch:
			a[k] = compose(av, bp)
		case map[string]any:
			a[k] = bp.applyTo(av)
		default: // remove{} or a value that is not an object
			a[k] = bp.applyTo(map[string]any{})
		}
	}
	return a
}

// applyTo applies p to target in place and returns target. Values of p
// are put in target as they are, not copied.
func (p patch) applyTo(target map[string]any) map[string]any {
	for k, v := range p {
		switch v := v.(type) {
		case remove:
			delete(target, k)
		case patch:
			obj, ok := target[k].(map[string]any)
			if !ok {
				obj = map[string]any{}
			}
			target[k] = v.applyTo(obj)
		default:
			target[k] = v
		}
	}
	return target
}

// equal reports whether two decoded values with canonical numbers are the
// same JSON value.
func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		return ok && maps.EqualFunc(a, b, equal)
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number, string, bool, nil:
		return a == b
	}
	return false
}
