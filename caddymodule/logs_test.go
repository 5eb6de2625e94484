package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// documentedLogFilter is the global options block docs/operations.md
// gives for running with DEBUG logs (section "Logs"), as written there.
func documentedLogFilter(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, logs, ok := strings.Cut(string(b), "\n## Logs\n")
	if !ok {
		t.Fatal(`docs/operations.md has no "## Logs" section`)
	}
	_, block, ok := strings.Cut(logs, "```caddyfile\n")
	if !ok {
		t.Fatal("the Logs section of docs/operations.md has no caddyfile block")
	}
	block, _, _ = strings.Cut(block, "```")
	if !strings.HasPrefix(block, "{\n\tlog {\n") || !strings.Contains(block, "level DEBUG") {
		t.Fatalf("the Logs section's block is not a global log at DEBUG:\n%s", block)
	}
	return block
}

// debugOptions are the test's global options with the global log block
// (DEBUG, any format) written to path. block is a global options block
// holding `log {`; the test's own options and the output are added.
func debugOptions(t *testing.T, block, path string) string {
	t.Helper()
	own := fmt.Sprintf("\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n", t.TempDir())
	block = strings.Replace(block, "\tlog {\n", "\tlog {\n\t\toutput file "+path+"\n", 1)
	return strings.Replace(block, "{\n", "{\n"+own, 1)
}

// TestDebugLogFilter runs a real Caddy with the global log filter that
// docs/operations.md documents, at DEBUG, in front of an upstream that
// answers with every response protocol header (and one under the prefix
// that no filter could name in advance), and checks that no protocol
// header, name or value, request or response, reaches the log, while
// reverse_proxy's round-trip lines are there. The same run without the
// filter shows them, so the check can see a leak.
func TestDebugLogFilter(t *testing.T) {
	const (
		dataMark   = "datamark7f3a"   // in the session data: X-Session
		patchMark  = "patchmark9c1e"  // X-Session-Patch
		updateMark = "updatemark2b8d" // X-Session-Update
		futureMark = "futuremark5e0f" // a protocol header added later
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			w.Header().Set("X-Session-Update", `{"user":"`+dataMark+`","note":"`+updateMark+`"}`)
			w.Header().Set("X-Session-Control", "regenerate, max-age=4321")
		default:
			w.Header().Set("X-Session-Patch", `{"seen":"`+patchMark+`"}`)
		}
		w.Header().Set("X-Session-Later", futureMark)
		w.Header().Set("X_Session_Other", futureMark)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)

	leaks := func(log string) []string {
		var found []string
		for _, s := range []string{dataMark, patchMark, updateMark, futureMark, "4321",
			`"X-Session"`, "X-Session-Meta", "X-Session-Update", "X-Session-Patch", "X-Session-Control",
			"X-Session-Assertion", "X-Session-Later", "X_Session_Other", "eyJhbGciOi" /* a JWS header: the signed assertion */} {
			// Without regard to case: Go spells a received X_Session_Other
			// as X_session_other.
			if strings.Contains(strings.ToLower(log), strings.ToLower(s)) {
				found = append(found, s)
			}
		}
		return found
	}
	run := func(t *testing.T, block string) string {
		path := filepath.Join(t.TempDir(), "caddy.log")
		g := startGateway(t, debugOptions(t, block, path), "\tsession {\n\t\tsecret "+testSecret+"\n\t\tassertion {\n\t\t\taudience a\n\t\t}\n\t}\n", up)
		for _, p := range []string{"/login", "/", "/"} {
			if r := g.get(p); r.Status != http.StatusOK {
				t.Fatalf("GET %s: status %d", p, r.Status)
			}
		}
		if g.sessionCookie("session") == "" {
			t.Fatal("no session was created: the upstream's headers were not applied")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		if n := strings.Count(log, "upstream roundtrip"); n != 3 {
			t.Fatalf("%d upstream roundtrip lines in the DEBUG log, want 3: the test sees nothing", n)
		}
		return log
	}

	t.Run("unfiltered DEBUG log shows them", func(t *testing.T) {
		log := run(t, "{\n\tlog {\n\t\tlevel DEBUG\n\t}\n}\n")
		if found := leaks(log); len(found) < 14 {
			t.Fatalf("only %v in the unfiltered DEBUG log: the check could not see a leak", found)
		}
	})
	t.Run("documented filter drops them", func(t *testing.T) {
		log := run(t, documentedLogFilter(t))
		if found := leaks(log); len(found) > 0 {
			t.Fatalf("the DEBUG log with the filter of docs/operations.md holds %v", found)
		}
	})
}

// logLine is one line of Caddy's JSON log, with the fields the gateway's
// lines carry.
type logLine struct {
	Level, Logger, Msg string
	Session, Successor string
	Bytes, Limit       int
	raw                string
}

// logLines reads Caddy's JSON log at path.
func logLines(t *testing.T, path string) []logLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logLine
	for _, l := range strings.Split(string(b), "\n") {
		var e logLine
		if json.Unmarshal([]byte(l), &e) == nil {
			e.raw = l
			out = append(out, e)
		}
	}
	return out
}

// TestLogDroppedWriteNamesBothHandles: a write through a cookie whose
// session was regenerated away (a request that started before a login,
// or a stale tab) is dropped, and the info line says so naming the old
// session and its successor by their handles, as protocol.md promises.
func TestLogDroppedWriteNamesBothHandles(t *testing.T) {
	up := upstream(t)
	opts, logPath := loggingOptions(t)
	g := startGateway(t, opts, basicSession, up)
	g.get("/?" + patchQuery(`{"user":"alice"}`))
	old := g.get("/").Meta.ID
	oldCookie := g.sessionCookie("session")
	g.get("/?control=regenerate")
	successor := g.get("/").Meta.ID
	if old == "" || successor == "" || old == successor {
		t.Fatalf("handles before and after the login: %q, %q", old, successor)
	}

	stale := g.visitor()
	stale.setCookie("session", oldCookie)
	r := stale.get("/?" + patchQuery(`{"user":"mallory"}`))
	if r.Status != http.StatusOK || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("write through the old cookie: status %d, Set-Cookie %q; want 200 and no cookie", r.Status, r.Header.Get("Set-Cookie"))
	}
	if got := g.get("/").Session["user"]; got != "alice" {
		t.Fatalf("the new session's user is %v after the dropped write", got)
	}
	var dropped []logLine
	for _, l := range logLines(t, logPath) {
		if strings.Contains(l.Msg, "dropped") {
			dropped = append(dropped, l)
		}
	}
	if len(dropped) != 1 {
		t.Fatalf("%d log lines about dropped changes, want 1: %v", len(dropped), dropped)
	}
	if l := dropped[0]; l.Level != "info" || l.Session != old || l.Successor != successor {
		t.Fatalf("the dropped-write line names session %q and successor %q at %s, want %q and %q:\n%s",
			l.Session, l.Successor, l.Level, old, successor, l.raw)
	}
}
