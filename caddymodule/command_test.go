package caddymodule

import (
	"bytes"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/sessiongate/caddy-session/cookie"
)

// runSessionCommand runs `caddy session <args>` as Caddy's command line
// would, and returns what it printed.
func runSessionCommand(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd, ok := caddycmd.Commands()["session"]
	if !ok {
		t.Fatal("the session command is not registered")
	}
	root := &cobra.Command{Use: cmd.Name, Short: cmd.Short}
	cmd.CobraFunc(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestCommandGenSecret checks that gen-secret prints 32 random bytes in
// hex, in a form the secret option accepts, and a new one each time.
func TestCommandGenSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		out, err := runSessionCommand(t, "gen-secret")
		if err != nil {
			t.Fatal(err)
		}
		s, ok := strings.CutSuffix(out, "\n")
		if !ok || strings.Contains(s, "\n") {
			t.Fatalf("want one line, got %q", out)
		}
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != 32 || s != strings.ToLower(s) {
			t.Fatalf("want 32 bytes in lower-case hex, got %q", s)
		}
		if _, err := cookie.NewSigner([]byte(s)); err != nil {
			t.Fatalf("the secret option would refuse %q: %v", s, err)
		}
		if seen[s] {
			t.Fatal("the same secret twice")
		}
		seen[s] = true
	}
}

// TestCommandBadArguments checks the arguments the commands refuse before
// calling the admin API.
func TestCommandBadArguments(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"list without subject", []string{"list"}, "--subject or --subject-json is required"},
		{"revoke without target", []string{"revoke"}, "exactly one of --subject, --subject-json and --id"},
		{"revoke with both", []string{"revoke", "--subject", "alice", "--id", "0123456789ab"}, "exactly one of --subject, --subject-json and --id"},
		{"revoke bad id", []string{"revoke", "--id", "XYZ"}, "12 lower-case hex digits"},
		{"stray argument", []string{"list", "--subject", "alice", "bob"}, "unknown command"},
		{"gen-secret argument", []string{"gen-secret", "x"}, "unknown command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runSessionCommand(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %v, want one saying %q", err, c.msg)
			}
		})
	}
}

// TestCommandAgainstCaddy runs list and revoke against a running Caddy
// whose store has no subject index: the admin API's error comes through.
func TestCommandAgainstCaddy(t *testing.T) {
	up := upstream(t)
	options, admin := opsOptions(t)
	startGateway(t, options, plainSession, up)
	for _, args := range [][]string{
		{"list", "--subject", "alice", "--address", admin},
		{"revoke", "--subject", "alice", "--address", admin},
		{"revoke", "--id", "0123456789ab", "--address", admin},
	} {
		_, err := runSessionCommand(t, args...)
		if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "can find sessions by subject") {
			t.Fatalf("%v: error %v, want the admin API's 404", args, err)
		}
	}
	_, err := runSessionCommand(t, "list", "--subject", "alice", "--address", admin, "--store", "nope")
	if err == nil || !strings.Contains(err.Error(), `no session store named \"nope\"`) {
		t.Fatalf("--store nope: %v", err)
	}
}
