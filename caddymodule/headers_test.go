package caddymodule

import (
	"net/http"
	"testing"
)

func TestMakePrivate(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "private",
		"public, max-age=60":               "private, max-age=60",
		"max-age=60, s-maxage=600, public": "private, max-age=60",
		"no-store":                         "no-store",
		"private, max-age=5":               "private, max-age=5",
	} {
		h := http.Header{}
		if in != "" {
			h.Set("Cache-Control", in)
		}
		makePrivate(h)
		if got := h.Get("Cache-Control"); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestAddVary(t *testing.T) {
	h := http.Header{"Vary": {"Accept-Encoding"}}
	addVary(h)
	addVary(h)
	if got := h.Values("Vary"); len(got) != 2 || got[1] != "Cookie" {
		t.Fatalf("Vary %q", got)
	}
	h = http.Header{"Vary": {"*"}}
	if addVary(h); len(h.Values("Vary")) != 1 {
		t.Fatal("Vary: * already covers Cookie")
	}
}

func TestHasHeaderPrefix(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Session": true, "x_session_update": true, "X_SESSION-meta": true, "X-Sessio": false, "Session": false, "X-Sessions": true,
	} {
		if hasHeaderPrefix(name, "x-session") != want {
			t.Errorf("%s: want %v", name, want)
		}
	}
}
