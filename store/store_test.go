package store_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/store"
)

func TestCanonicalSubject(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{nil, ""},
		{"", ""},
		{"42", "42"},
		{"alice", "alice"},
		{"true", "true"},
		{"..", ".."},
		{json.Number("42"), "\x0042"},
		{json.Number("42.0"), "\x0042"},
		{json.Number("4.2e1"), "\x0042"},
		{json.Number("-0"), "\x000"},
		{json.Number("12345678901234567890"), "\x0012345678901234567890"},
		{float64(42), "\x0042"},
		{int64(42), "\x0042"},
		{42, "\x0042"},
		{true, "\x00true"},
		{false, "\x00false"},
		{strings.Repeat("a", store.MaxSubjectLen), strings.Repeat("a", store.MaxSubjectLen)},
	} {
		got, err := store.CanonicalSubject(c.v)
		if err != nil || got != c.want {
			t.Errorf("CanonicalSubject(%#v) = %q, %v; want %q", c.v, got, err, c.want)
		}
	}
}

// TestCanonicalSubjectNoCollision is the rule issue 17 item 3 asks for:
// values of different JSON types never share a subject.
func TestCanonicalSubjectNoCollision(t *testing.T) {
	values := []any{"42", json.Number("42"), "true", true, "false", false, "0", json.Number("0"), "null"}
	seen := map[string]int{}
	for i, v := range values {
		s, err := store.CanonicalSubject(v)
		if err != nil {
			t.Fatalf("CanonicalSubject(%#v): %v", v, err)
		}
		if j, ok := seen[s]; ok {
			t.Errorf("%#v and %#v share the subject %q", values[j], v, s)
		}
		seen[s] = i
	}
}

func TestCanonicalSubjectRefuses(t *testing.T) {
	for _, v := range []any{
		map[string]any{"id": "1"},
		[]any{"1"},
		"a\x00b",
		"\x0042",
		strings.Repeat("a", store.MaxSubjectLen+1),
		json.Number("1e400"),
		json.Number("not a number"),
	} {
		got, err := store.CanonicalSubject(v)
		if !errors.Is(err, store.ErrBadSubject) {
			t.Errorf("CanonicalSubject(%.40q) = %q, %v; want ErrBadSubject", v, got, err)
		}
	}
}
