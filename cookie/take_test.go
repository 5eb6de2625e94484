package cookie

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// spellings returns the four strings that lenient base64 decodes to the
// same bytes as enc: the last character's two spare bits set every way.
func spellings(enc string) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, enc[len(enc)-1])
	out := make([]string, 0, 4)
	for spare := range 4 {
		out = append(out, enc[:len(enc)-1]+string(alphabet[last&^3|spare]))
	}
	return out
}

func TestVerifyIsStrict(t *testing.T) {
	t.Parallel()
	s, _ := NewSigner(key1)
	tok := NewToken()
	v := s.Sign("session", tok)
	if got, ok := s.Verify("session", v); !ok || got != tok {
		t.Fatal("the signed value must verify")
	}
	sig := v[tokenLen+1:]
	for _, alt := range spellings(sig) {
		raw, err := base64.RawURLEncoding.Decode(make([]byte, 40), []byte(alt))
		if err != nil || raw != 32 {
			t.Fatalf("test set-up: %q is not a lenient spelling", alt)
		}
		if alt == sig {
			continue
		}
		t.Run("signature "+alt[len(alt)-1:], func(t *testing.T) {
			if _, ok := s.Verify("session", tok+"."+alt); ok {
				t.Fatal("a second spelling of the signature verified")
			}
		})
	}
	for _, alt := range spellings(tok) {
		if alt == tok {
			continue
		}
		t.Run("token "+alt[len(alt)-1:], func(t *testing.T) {
			// Signed properly, but the token itself is a non-canonical
			// spelling: refused before the MAC.
			if _, ok := s.Verify("session", s.Sign("session", alt)); ok {
				t.Fatal("a non-canonical token verified")
			}
		})
	}
}

func TestTake(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		in    []string
		count int
		value string
		left  []string
	}{
		{"several lines", []string{"a=1; session=xyz; b=2", "session=second", "c=3"}, 2, "second", []string{"a=1; b=2", "c=3"}},
		{"only ours", []string{"session=only"}, 1, "only", nil},
		{"similar names", []string{"sessionx=1; xsession=2"}, 0, "", []string{"sessionx=1; xsession=2"}},
		{"comma form", []string{"x=1, session=tok"}, 1, "", nil},
		{"comma form kept neighbours", []string{"a=1; x=1, session=tok; b=2"}, 1, "", []string{"a=1; b=2"}},
		{"comma no space", []string{"x=1,session=tok; b=2"}, 1, "", []string{"b=2"}},
		{"space form", []string{"x=1 session=tok"}, 1, "", nil},
		{"tab form", []string{"x=1\tsession=tok"}, 1, "", nil},
		{"space before equals", []string{"x=1, session =tok"}, 1, "", nil},
		{"quoted value", []string{`x="a, session=tok"; b=2`}, 1, "", []string{"b=2"}},
		{"comma form then real", []string{"x=1, session=forged; session=real"}, 2, "real", nil},
		{"name inside a value only", []string{"x=mysession=1; y=a,sessions=2"}, 0, "", []string{"x=mysession=1; y=a,sessions=2"}},
		{"no cookie header", nil, 0, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.in != nil {
				h["Cookie"] = append([]string(nil), c.in...)
			}
			n, v := Take(h, "session")
			if n != c.count || v != c.value {
				t.Errorf("count %d value %q, want %d %q", n, v, c.count, c.value)
			}
			if got, want := strings.Join(h["Cookie"], " | "), strings.Join(c.left, " | "); got != want {
				t.Errorf("left %q, want %q", got, want)
			}
			if _, ok := h["Cookie"]; ok && len(c.left) == 0 {
				t.Errorf("empty Cookie header left: %q", h["Cookie"])
			}
		})
	}
}

func TestTakeVerified(t *testing.T) {
	t.Parallel()
	s, _ := NewSigner(key1)
	other, _ := NewSigner(key2)
	tok, tok2 := NewToken(), NewToken()
	good, good2 := s.Sign("session", tok), s.Sign("session", tok2)
	forged := other.Sign("session", NewToken())
	for _, c := range []struct {
		name    string
		in      []string
		token   string
		outcome Outcome
	}{
		{"none", []string{"a=1"}, "", OutcomeNone},
		{"no header", nil, "", OutcomeNone},
		{"valid", []string{"a=1; session=" + good}, tok, OutcomeValid},
		{"invalid", []string{"session=" + forged}, "", OutcomeInvalid},
		{"garbage", []string{"session=garbage"}, "", OutcomeInvalid},
		{"tossed before", []string{"session=" + forged + "; session=" + good}, tok, OutcomeValid},
		{"tossed after", []string{"session=" + good + "; session=" + forged}, tok, OutcomeValid},
		{"tossed on another line", []string{"session=" + good, "session=x; session=" + forged}, tok, OutcomeValid},
		{"same value twice", []string{"session=" + good + "; session=" + good}, tok, OutcomeValid},
		{"two tokens", []string{"session=" + good + "; session=" + good2}, "", OutcomeAmbiguous},
		{"two tokens and a forgery", []string{"session=" + good, "session=" + forged + "; session=" + good2}, "", OutcomeAmbiguous},
		{"ambiguous stays ambiguous", []string{"session=" + good + "; session=" + good2 + "; session=" + good}, "", OutcomeAmbiguous},
		{"comma form never verifies", []string{"x=1, session=" + good}, "", OutcomeInvalid},
		{"space form never verifies", []string{"x=1 session=" + good}, "", OutcomeInvalid},
		{"comma form next to the real one", []string{"x=1, session=" + good2 + "; session=" + good}, tok, OutcomeValid},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Twice: the second time, values that verified come from the
			// Signer's cache, and must give the same answers.
			for range 2 {
				h := http.Header{}
				if c.in != nil {
					h["Cookie"] = append([]string(nil), c.in...)
				}
				token, key, outcome := TakeVerified(h, "session", s)
				if token != c.token || outcome != c.outcome {
					t.Errorf("got %v (token %v), want %v (token %v)", outcome, token != "", c.outcome, c.token != "")
				}
				if (token == "" && key != "") || (token != "" && key != Key(token)) {
					t.Errorf("key %q is not the token's", key)
				}
				for _, l := range h["Cookie"] {
					if strings.Contains(l, "session") {
						t.Errorf("session cookie left upstream: %q", l)
					}
				}
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[Outcome]string{OutcomeNone: "none", OutcomeValid: "valid", OutcomeInvalid: "invalid", OutcomeAmbiguous: "ambiguous"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", o, o.String(), want)
		}
	}
}

// leftover reports a pair of our name that a cookie parser splitting on
// semicolons, commas or white space would still find in the header.
func leftover(h http.Header, name string) string {
	for _, l := range h["Cookie"] {
		for w := range strings.FieldsFuncSeq(l, func(r rune) bool {
			return r == ';' || r == ',' || r == ' ' || r == '\t'
		}) {
			if k, _, _ := strings.Cut(w, "="); k == name {
				return l
			}
		}
	}
	return ""
}

func FuzzTake(f *testing.F) {
	f.Add("a=1; session=x; b=2")
	f.Add("session=;;;session")
	f.Add("x=1, session=tok")
	f.Add("x=1\tsession =tok")
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Cookie": {line}}
		Take(h, "session")
		if l := leftover(h, "session"); l != "" {
			t.Fatalf("session cookie left in %q", l)
		}
		for _, l := range h["Cookie"] {
			if l != line && strings.TrimSpace(l) == "" {
				t.Fatal("Take left an empty Cookie line")
			}
		}
	})
}

func FuzzTakeVerified(f *testing.F) {
	s, _ := NewSigner(key1)
	// A fixed token: fuzz workers rebuild this set-up, and the seeds must
	// mean the same cookie there.
	good := s.Sign("session", strings.Repeat("T", tokenLen-1)+"Q")
	f.Add("a=1; session="+good+"; b=2", "session=x")
	f.Add("x=1, session="+good, "session="+good)
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{"Cookie": {a, b}}
		token, _, outcome := TakeVerified(h, "session", s)
		if l := leftover(h, "session"); l != "" {
			t.Fatalf("session cookie left in %q", l)
		}
		if (outcome == OutcomeValid) != (token != "") {
			t.Fatalf("outcome %v with token %v", outcome, token != "")
		}
		if outcome == OutcomeValid && s.Sign("session", token) != good {
			t.Fatal("a token other than the signed one verified")
		}
	})
}

func BenchmarkTakeVerified(b *testing.B) {
	s, _ := NewSigner(key1)
	line := "theme=dark; session=" + s.Sign("session", NewToken()) + "; lang=en"
	h := http.Header{"Cookie": {line}}
	b.ReportAllocs()
	for b.Loop() {
		h["Cookie"][0] = line
		if _, _, o := TakeVerified(h, "session", s); o != OutcomeValid {
			b.Fatal(o)
		}
	}
}

func TestTakeAll(t *testing.T) {
	t.Parallel()
	h := http.Header{"Cookie": {"koa.sess=a; x=1, koa.sess=smuggled; koa.sess.sig=s", "koa.sess=b"}}
	got := TakeAll(h, "koa.sess")
	if strings.Join(got, ",") != "a,b" {
		t.Fatalf("values %q", got)
	}
	if l := strings.Join(h["Cookie"], " | "); l != "koa.sess.sig=s" {
		t.Fatalf("left %q", l)
	}
	if TakeAll(http.Header{}, "koa.sess") != nil {
		t.Fatal("values from no header")
	}
}
