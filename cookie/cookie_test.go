package cookie

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

var (
	key1 = bytes.Repeat([]byte("a"), 32)
	key2 = bytes.Repeat([]byte("b"), 32)
)

func TestNewTokenIsRandomAndLongEnough(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := NewToken()
		if len(tok) != 43 {
			t.Fatalf("token length %d, want 43 (256 bits base64url)", len(tok))
		}
		if seen[tok] {
			t.Fatal("token repeated")
		}
		seen[tok] = true
	}
}

func TestKeyIsSHA256HexAndNotTheToken(t *testing.T) {
	tok := NewToken()
	k := Key(tok)
	if len(k) != 64 || strings.Contains(k, tok) {
		t.Fatalf("bad key %q", k)
	}
	if Key(tok) != k {
		t.Fatal("key not deterministic")
	}
	if Handle(k) != k[:12] {
		t.Fatal("handle is not the key prefix")
	}
}

func TestSignVerifyAndRotation(t *testing.T) {
	old, err := NewSigner(key1)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewSigner(key2, key1)
	if err != nil {
		t.Fatal(err)
	}
	tok := NewToken()
	v := old.Sign("session", tok)
	if len(v) != ValueLen {
		t.Fatalf("value length %d, want %d", len(v), ValueLen)
	}
	if got, ok := rotated.Verify("session", v); !ok || got != tok {
		t.Fatal("rotated signer must accept values signed by an older key")
	}
	nv := rotated.Sign("session", tok)
	if nv == v {
		t.Fatal("rotated signer must sign with its first key")
	}
	if _, ok := old.Verify("session", nv); ok {
		t.Fatal("signer without the new key must refuse its signature")
	}
	if _, ok := old.Verify("other", v); ok {
		t.Fatal("a value must not verify under another cookie name")
	}
}

func TestVerifyRejectsForgeries(t *testing.T) {
	s, _ := NewSigner(key1)
	tok := NewToken()
	v := s.Sign("session", tok)
	flip := func(i int) string {
		b := []byte(v)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for name, bad := range map[string]string{
		"empty":          "",
		"token only":     tok,
		"flipped token":  flip(3),
		"flipped sig":    flip(len(v) - 3),
		"no dot":         strings.Replace(v, ".", "x", 1),
		"extra":          v + "A",
		"client chosen":  strings.Repeat("A", 43) + "." + strings.Repeat("A", 43),
		"padding char":   v[:len(v)-1] + "=",
		"non-base64 tok": "!" + v[1:],
	} {
		if _, ok := s.Verify("session", bad); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNewSignerRefusesShortSecrets(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("want a clear error, got %v", err)
	}
	if _, err := NewSigner(); err == nil {
		t.Fatal("no secret must be an error")
	}
}

func TestAttributes(t *testing.T) {
	a := Attributes{Name: "session", SameSite: http.SameSiteLaxMode, Secure: SecureAuto}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	c := a.New("v", false, 90*time.Minute)
	if !c.HttpOnly || c.Secure || c.Path != "/" || c.MaxAge != 5400 || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("plain HTTP cookie: %+v", c)
	}
	if !a.New("v", true, 0).Secure {
		t.Fatal("auto must set Secure over TLS")
	}
	if a.New("v", true, 0).MaxAge != 0 {
		t.Fatal("zero max age must make a browser-session cookie")
	}
	e := a.Expired(false).String()
	if !strings.Contains(e, "Max-Age=0") {
		t.Fatalf("expired cookie %q", e)
	}
	for _, bad := range []Attributes{
		{Name: ""},
		{Name: "a b", Secure: SecureAuto},
		{Name: "__Host-s", Secure: SecureAuto},
		{Name: "__Host-s", Secure: SecureAlways, Domain: "example.com"},
		{Name: "__Host-s", Secure: SecureAlways, Path: "/app"},
		{Name: "__host-s", Secure: SecureAuto},
		{Name: "__Secure-s", Secure: SecureAuto},
		{Name: "__SECURE-s", Secure: SecureNever},
		{Name: "s", Secure: "sometimes"},
		{Name: "s", Secure: SecureAuto, SameSite: http.SameSiteNoneMode},
		{Name: "s", Secure: SecureAuto, Path: "x"},
	} {
		if bad.Validate() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(key1, key2)
	f.Add(s.Sign("session", strings.Repeat("T", tokenLen-1)+"Q")) // fixed: workers rebuild the set-up
	f.Add("")
	f.Add(strings.Repeat("A", ValueLen))
	f.Fuzz(func(t *testing.T, v string) {
		tok, ok := s.Verify("session", v)
		if !ok {
			return
		}
		// A value that verifies must be exactly one we could have signed
		// with one of the keys: anything else is a forgery that got through.
		k2, _ := NewSigner(key2)
		if s.Sign("session", tok) != v && k2.Sign("session", tok) != v {
			t.Fatalf("accepted a value not signed by any key: %q", v)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	s, _ := NewSigner(key1)
	v := s.Sign("session", NewToken())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Verify("session", v); !ok {
			b.Fatal("rejected")
		}
	}
}
