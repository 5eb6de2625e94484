package caddymodule

import (
	"errors"
	"strings"
	"testing"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// TestRefusalOf classifies errors made by the real checks, so a new or
// reworded error cannot drift into another reason unnoticed.
func TestRefusalOf(t *testing.T) {
	t.Parallel()
	evaluate := func(in protocol.Input, maxValue int) error {
		_, err := protocol.Evaluate([]byte(`{"a":1}`), in, maxValue)
		return err
	}
	apply := func(patch string, maxValue int) error {
		out, err := protocol.Evaluate([]byte(`{"a":1}`), protocol.Input{Patch: []string{patch}}, maxValue)
		if err != nil {
			return err
		}
		_, _, err = out.Apply([]byte(`{"a":1}`))
		return err
	}
	scoped := func(in protocol.Input) error {
		write, _ := protocol.ParsePaths([]string{"a"})
		_, err := protocol.Scope{Write: write}.Evaluate([]byte(`{"a":1}`), in, 1000)
		return err
	}
	h := &Handler{maxLine: 100, hdr: newHeaderNames("X-Session")}
	for _, c := range []struct {
		name string
		err  error
		want refusal
	}{
		{"malformed JSON", evaluate(protocol.Input{Patch: []string{`{"a":`}}, 1000), refusedJSON},
		{"not an object", evaluate(protocol.Input{Update: []string{`[1]`}}, 1000), refusedJSON},
		{"forbidden key", evaluate(protocol.Input{Patch: []string{`{"$set":1}`}}, 1000), refusedJSON},
		{"number out of range", evaluate(protocol.Input{Patch: []string{`{"n":1e999}`}}, 1000), refusedJSON},
		{"two patch headers", evaluate(protocol.Input{Patch: []string{`{}`, `{}`}}, 1000), refusedJSON},
		{"patch over the limit", evaluate(protocol.Input{Patch: []string{`{"a":"` + strings.Repeat("x", 50) + `"}`}}, 20), refusedSize},
		{"session over the limit", apply(`{"b":"`+strings.Repeat("x", 12)+`"}`, 24), refusedSize},
		{"line over the cap", h.checkInputLines(protocol.Input{Patch: []string{strings.Repeat("x", 100)}}), refusedSize},
		{"unknown control", evaluate(protocol.Input{Control: []string{"bogus"}}, 1000), refusedControl},
		{"bad max-age", evaluate(protocol.Input{Control: []string{"max-age=-1"}}, 1000), refusedControl},
		{"revoke without a subject", protocol.Bad(protocol.KindRevoke, "revoke needs the subject option"), refusedSubject},
		{"path outside write", scoped(protocol.Input{Patch: []string{`{"b":1}`}}), refusedForbidden},
		{"directive outside control", scoped(protocol.Input{Control: []string{"max-age=0"}}), refusedForbidden},
		{"something else", errors.New("other"), refusedOther},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error made")
			}
			if got := refusalOf(c.err); got != c.want {
				t.Errorf("%v: reason %v, want %v", c.err, got, c.want)
			}
			if c.want != refusedOther && !errors.Is(c.err, protocol.ErrBadUpstream) {
				t.Errorf("%v does not wrap ErrBadUpstream", c.err)
			}
		})
	}
}
