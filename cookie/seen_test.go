package cookie

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestEncodedLengths(t *testing.T) {
	t.Parallel()
	if tokenLen != base64.RawURLEncoding.EncodedLen(TokenBytes) || sigLen != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		t.Fatalf("tokenLen %d, sigLen %d do not match the encoder", tokenLen, sigLen)
	}
	if len(NewToken()) != tokenLen {
		t.Fatal("a new token is not tokenLen long")
	}
}

func TestVerifyKeyRemembersWhatVerified(t *testing.T) {
	t.Parallel()
	s, _ := NewSigner(key1)
	tok := NewToken()
	value := s.Sign("session", tok)
	line := "a=1; session=" + value
	fromLine := line[len("a=1; session="):]
	if _, ok := s.seen.find("session", fromLine); ok {
		t.Fatal("remembered before it verified")
	}
	got, key, ok := s.VerifyKey("session", fromLine)
	if !ok || got != tok || key != Key(tok) {
		t.Fatalf("VerifyKey = %v %v %v", got == tok, key == Key(tok), ok)
	}
	remembered, ok := s.seen.find("session", value)
	if !ok || remembered != key {
		t.Fatal("a value that verified was not remembered with its key")
	}
	if got, key2, ok := s.VerifyKey("session", value); !ok || got != tok || key2 != key {
		t.Fatal("a remembered value answered differently")
	}
}

// A value that lands in the slot of a remembered one, and differs from it
// in one or two neighbouring characters only, is checked by its
// signature, not taken for it.
func TestVerifyKeyNeighbourInTheSameSlot(t *testing.T) {
	t.Parallel()
	s, _ := NewSigner(key1)
	value := verified(t, s)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	slot := s.seen.slot(value)
	found := 0
	// About 85 x 64 x 64 neighbours, one in 2048 in the slot: many.
	for i := 0; i+1 < len(value) && found < 3; i++ {
		for _, c1 := range alphabet {
			for _, c2 := range alphabet {
				near := value[:i] + string(c1) + string(c2) + value[i+2:]
				if near == value || s.seen.slot(near) != slot {
					continue
				}
				found++
				if _, _, ok := s.VerifyKey("session", near); ok {
					t.Fatalf("a value differing at %d verified from the cache", i)
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("no neighbour found in the slot")
	}
}

func TestVerifyKeyIsPerName(t *testing.T) {
	t.Parallel()
	s, _ := NewSigner(key1)
	value := verified(t, s)
	if _, _, ok := s.VerifyKey("other", value); ok {
		t.Fatal("a value remembered for one cookie name verified for another")
	}
	if _, _, ok := s.VerifyKey("session", value[:len(value)-1]); ok {
		t.Fatal("a truncated value verified")
	}
}

func TestVerifyKeyConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := NewSigner(key1)
	values := make([]string, 64)
	for i := range values {
		values[i] = s.Sign("session", NewToken())
	}
	forged := strings.Repeat("A", tokenLen) + "." + strings.Repeat("B", sigLen)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				v := values[(i*7+g)%len(values)]
				if tok, key, ok := s.VerifyKey("session", v); !ok || key != Key(tok) || v[:tokenLen] != tok {
					errs <- fmt.Errorf("value %d: ok %v", i, ok)
					return
				}
				if _, _, ok := s.VerifyKey("session", forged); ok {
					errs <- fmt.Errorf("forged value verified")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func BenchmarkVerifyKey(b *testing.B) {
	s, _ := NewSigner(key1)
	value := s.Sign("session", NewToken())
	b.Run("remembered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := s.VerifyKey("session", value); !ok {
				b.Fatal("did not verify")
			}
		}
	})
	b.Run("Verify+Key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tok, ok := s.Verify("session", value)
			if !ok || Key(tok) == "" {
				b.Fatal("did not verify")
			}
		}
	})
}

// verified signs a new token's value and verifies it once, so s remembers
// it.
func verified(t *testing.T, s *Signer) string {
	t.Helper()
	value := s.Sign("session", NewToken())
	if _, _, ok := s.VerifyKey("session", value); !ok {
		t.Fatal("did not verify")
	}
	return value
}
