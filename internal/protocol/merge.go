package protocol

import (
	"encoding/json"
	"maps"
)

// patch is a change to a JSON object, in the spirit of an RFC 7396 merge
// patch, with "remove" and "set to null" kept apart.
type patch struct {
	// members maps each key the change touches to one of:
	//   - remove{}: delete the key;
	//   - a *patch: merge into the object under the key;
	//   - any other decoded value, null and objects included: set the key
	//     to it, as it is.
	members map[string]any
	// whole, for an update's diff, is the object the update wrote where
	// this patch applies: it is set as it is when the target is not an
	// object (a concurrent request replaced or removed it), so the update
	// still leaves its own object there. Without it (a patch header), the
	// members are merged into {} as RFC 7396 says.
	whole map[string]any
	// prune, for a projected object an update dropped, removes the object
	// when the change leaves it empty, and leaves a target that is not an
	// object alone: the change only removes what the upstream was shown.
	prune bool
	// strict, under a restricted write set, marks an object the upstream
	// may write into but not replace: a target that is present and not an
	// object refuses the change (see blocked).
	strict bool
}

// remove marks a key to delete.
type remove struct{}

// fromMergePatch turns a decoded RFC 7396 merge patch into a patch: null
// members remove, object members merge.
func fromMergePatch(m map[string]any) *patch {
	p := &patch{members: make(map[string]any, len(m))}
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			p.members[k] = remove{}
		case map[string]any:
			p.members[k] = fromMergePatch(v)
		default:
			p.members[k] = v
		}
	}
	return p
}

// diff returns the patch that turns old into new, at every depth: keys
// gone from new are removed, objects in both are diffed, other values that
// differ are set. Values equal in both are left out.
func diff(old, new map[string]any) *patch {
	p := &patch{members: map[string]any{}, whole: new}
	for k := range old {
		if _, ok := new[k]; !ok {
			p.members[k] = remove{}
		}
	}
	for k, nv := range new {
		ov, had := old[k]
		om, oIsObj := ov.(map[string]any)
		nm, nIsObj := nv.(map[string]any)
		switch {
		case had && oIsObj && nIsObj:
			if d := diff(om, nm); len(d.members) > 0 {
				p.members[k] = d
			}
		case !had || !equal(ov, nv):
			p.members[k] = nv
		}
	}
	return p
}

// compose returns the patch that applies a and then b, where b came from
// a merge patch. It may reuse a and b but never modifies their values.
func compose(a, b *patch) *patch {
	if a == nil {
		return b
	}
	for k, bv := range b.members {
		bp, isPatch := bv.(*patch)
		av, had := a.members[k]
		if !isPatch || !had {
			a.members[k] = bv
			continue
		}
		switch av := av.(type) {
		case *patch:
			a.members[k] = compose(av, bp)
		case map[string]any:
			a.members[k] = bp.applyTo(deepCopy(av).(map[string]any))
		default: // remove{} or a value that is not an object
			a.members[k] = bp.applyTo(map[string]any{})
		}
	}
	if a.whole != nil {
		a.whole = b.applyTo(deepCopy(a.whole).(map[string]any))
	}
	return a
}

// applyTo applies p to target in place and returns target. Values of p
// are put in target as they are, not copied, and never modified.
func (p *patch) applyTo(target map[string]any) map[string]any {
	for k, v := range p.members {
		switch v := v.(type) {
		case remove:
			delete(target, k)
		case *patch:
			cur, had := target[k]
			switch nv := v.applyToValue(cur); {
			case v.prune && isEmptyObject(nv):
				delete(target, k)
			case had || !v.prune:
				target[k] = nv
			}
		default:
			target[k] = v
		}
	}
	return target
}

// applyToValue applies p to the value under a key: merged into it when
// it is an object, else left alone by a prune patch, else p's whole
// object, else merged into {}.
func (p *patch) applyToValue(v any) any {
	if obj, ok := v.(map[string]any); ok {
		return p.applyTo(obj)
	}
	if p.prune {
		return v
	}
	if p.whole != nil {
		return p.whole
	}
	return p.applyTo(map[string]any{})
}

// isEmptyObject reports whether v is {}.
func isEmptyObject(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 0
}

// deepCopy copies the maps and slices of a decoded value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, e := range v {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
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
