package store_test

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sessiongate/caddy-session/store"
)

func TestCoarseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.77":             "203.0.113.0/24",
		"::ffff:203.0.113.77":      "203.0.113.0/24",
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1::/48",
		"fe80::1%eth0":             "fe80::/48",
		"127.0.0.1":                "127.0.0.0/24",
		"2001:db8:abcd:ffff::ffff": "2001:db8:abcd::/48",
	} {
		if got := store.CoarseAddr(netip.MustParseAddr(in)); got != want {
			t.Errorf("CoarseAddr(%s) = %q, want %q", in, got, want)
		}
	}
	if got := store.CoarseAddr(netip.Addr{}); got != "" {
		t.Errorf("CoarseAddr(invalid) = %q", got)
	}
}

func TestCutUserAgent(t *testing.T) {
	short := "Mozilla/5.0"
	if got := store.CutUserAgent(short); got != short {
		t.Fatalf("a short agent changed: %q", got)
	}
	long := strings.Repeat("a", 255) + "é" + strings.Repeat("b", 10) // é straddles byte 256
	got := store.CutUserAgent(long)
	if len(got) > store.MaxUserAgentLen || !utf8.ValidString(got) || got != strings.Repeat("a", 255) {
		t.Fatalf("CutUserAgent gave %d bytes %q", len(got), got)
	}
	if got := store.CutUserAgent(strings.Repeat("x", 1000)); len(got) != store.MaxUserAgentLen {
		t.Fatalf("CutUserAgent gave %d bytes, want %d", len(got), store.MaxUserAgentLen)
	}
}
