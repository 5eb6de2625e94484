package adopt

import (
	"encoding/base64"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	keys := []string{"{env.KOA_KEY}"}
	for _, c := range []struct {
		name string
		cfg  Config
		err  string // "" means valid
	}{
		{"koa cookie-only", Config{Kind: KindKoa, Keys: keys}, ""},
		{"koa store", Config{Kind: KindKoa, Keys: keys, Collection: "sessions", Database: "legacy"}, ""},
		{"koa old name", Config{Kind: KindKoa, Keys: keys, Cookie: "koa:sess", Algorithm: "sha256"}, ""},
		{"express", Config{Kind: KindExpress, Keys: keys, Path: "/app", Domain: "example.com", Grace: caddy.Duration(time.Minute)}, ""},
		{"unknown kind", Config{Kind: "php", Keys: keys}, "unknown source"},
		{"no keys", Config{Kind: KindKoa}, "no keys"},
		{"bad cookie name", Config{Kind: KindKoa, Keys: keys, Cookie: "a b"}, "cookie name"},
		{"cookie name with ;", Config{Kind: KindExpress, Keys: keys, Cookie: "a;b"}, "cookie name"},
		{"unknown algorithm", Config{Kind: KindKoa, Keys: keys, Algorithm: "md5"}, "unknown algorithm"},
		{"algorithm for express", Config{Kind: KindExpress, Keys: keys, Algorithm: "sha256"}, "koa's keygrip only"},
		{"bad collection", Config{Kind: KindExpress, Keys: keys, Collection: "a$b"}, "collection name"},
		{"bad database", Config{Kind: KindExpress, Keys: keys, Database: "a.b"}, "database name"},
		{"database without store", Config{Kind: KindKoa, Keys: keys, Database: "legacy"}, "database without collection"},
		{"relative path", Config{Kind: KindKoa, Keys: keys, Path: "app"}, "must start with /"},
		{"path with ;", Config{Kind: KindKoa, Keys: keys, Path: "/a;b"}, "must start with /"},
		{"domain with ;", Config{Kind: KindKoa, Keys: keys, Domain: "a;b"}, "not a domain"},
		{"negative grace", Config{Kind: KindKoa, Keys: keys, Grace: -1}, "grace"},
		{"long grace", Config{Kind: KindKoa, Keys: keys, Grace: caddy.Duration(time.Hour)}, "grace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one saying %q", err, c.err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Kind: KindExpress, Keys: []string{"k"}}, [][]byte{[]byte("s")}, nil, nil); err == nil || !strings.Contains(err.Error(), "needs the mongodb session store") {
		t.Errorf("express without a database: %v", err)
	}
	if _, err := New(Config{Kind: KindKoa, Keys: []string{"k"}}, [][]byte{{}}, nil, nil); err == nil || !strings.Contains(err.Error(), "key 1 is empty") {
		t.Errorf("empty resolved key: %v", err)
	}
	if _, err := New(Config{Kind: KindKoa, Keys: []string{"k"}}, nil, nil, nil); err == nil {
		t.Error("no resolved keys accepted")
	}
	s, err := New(Config{Kind: KindKoa, Keys: []string{"k"}}, [][]byte{[]byte("s")}, nil, nil)
	if err != nil || s.Name() != "koa" || s.name != "koa.sess" {
		t.Fatalf("koa defaults: %v", err)
	}
	if (&Config{Kind: KindExpress}).name() != "connect.sid" || (&Config{Kind: KindExpress}).collection() != "sessions" {
		t.Error("express defaults")
	}
	if (&Config{Kind: KindKoa}).NeedsDatabase() || !(&Config{Kind: KindExpress}).NeedsDatabase() {
		t.Error("NeedsDatabase")
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[Outcome]string{OutcomeNone: "none", OutcomeRefused: "refused", OutcomeAdopted: "adopted", OutcomeJoined: "joined"} {
		if o.String() != want {
			t.Errorf("%d: %q", o, o.String())
		}
	}
}

func TestBSONToJSON(t *testing.T) {
	t.Parallel()
	oid := bson.NewObjectID()
	when := time.Date(2026, 11, 27, 1, 2, 3, 456e6, time.UTC)
	dec, _ := bson.ParseDecimal128("1.5")
	for _, c := range []struct {
		name string
		in   bson.D
		want string // "" means refused
	}{
		{"scalars", bson.D{{Key: "s", Value: "é<&>"}, {Key: "i", Value: int32(3)}, {Key: "l", Value: int64(1) << 40}, {Key: "f", Value: 0.5}, {Key: "b", Value: true}, {Key: "n", Value: nil}},
			`{"s":"\u00e9<&>","i":3,"l":1099511627776,"f":0.5,"b":true,"n":null}`},
		{"nested", bson.D{{Key: "a", Value: bson.A{int32(1), bson.D{{Key: "b", Value: bson.A{}}}}}}, `{"a":[1,{"b":[]}]}`},
		{"date as JSON.stringify writes it", bson.D{{Key: "at", Value: bson.NewDateTimeFromTime(when)}}, `{"at":"2026-11-27T01:02:03.456Z"}`},
		{"object id as hex", bson.D{{Key: "id", Value: oid}}, `{"id":"` + oid.Hex() + `"}`},
		{"NaN and infinity as null", bson.D{{Key: "x", Value: math.NaN()}, {Key: "y", Value: math.Inf(-1)}}, `{"x":null,"y":null}`},
		{"decimal128 refused", bson.D{{Key: "d", Value: dec}}, ""},
		{"binary refused", bson.D{{Key: "b", Value: bson.Binary{Data: []byte{1}}}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := bson.Marshal(c.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendBSONDocument(nil, raw, 0)
			if c.want == "" {
				if err == nil || !strings.HasPrefix(err.Error(), "unsupported BSON type") {
					t.Fatalf("got %s, %v; want refused", got, err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Fatalf("got %s, %v; want %s", got, err, c.want)
			}
		})
	}
	deep := bson.D{{Key: "x", Value: int32(1)}}
	for range maxDepth + 1 {
		deep = bson.D{{Key: "x", Value: deep}}
	}
	raw, _ := bson.Marshal(deep)
	if _, err := appendBSONDocument(nil, raw, 0); err == nil {
		t.Error("nesting past maxDepth accepted")
	}
}

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	data := []byte(`{"a":"??>>"}`) // encodes with + and / in standard base64
	for name, enc := range map[string]string{
		"std padded":   base64.StdEncoding.EncodeToString(data),
		"std unpadded": base64.RawStdEncoding.EncodeToString(data),
		"url":          base64.RawURLEncoding.EncodeToString(data),
	} {
		got, err := decodeBase64(enc)
		if err != nil || string(got) != string(data) {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	if _, err := decodeBase64("!!!"); err == nil {
		t.Error("garbage decoded")
	}
}

func TestClaimTable(t *testing.T) {
	t.Parallel()
	ct := newClaimTable()
	now := time.Now()
	if owner, ok := ct.claim("v", "k1", now, time.Minute); !ok || owner != "k1" {
		t.Fatal("first claim")
	}
	if owner, ok := ct.claim("v", "k2", now.Add(time.Second), time.Minute); ok || owner != "k1" {
		t.Fatal("second claim within grace must join the first")
	}
	ct.release("v", "k2") // not the owner: no effect
	if _, ok := ct.claim("v", "k3", now.Add(2*time.Second), time.Minute); ok {
		t.Fatal("release by a non-owner removed the claim")
	}
	if n := ct.prune(now.Add(time.Second)); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if _, ok := ct.claim("v", "k4", now, time.Minute); !ok {
		t.Fatal("claim after prune")
	}
}

func BenchmarkPresentWithoutLegacyCookie(b *testing.B) {
	k, _ := New(Config{Kind: KindKoa, Keys: []string{"k"}}, [][]byte{[]byte("s")}, nil, nil)
	h := http.Header{"Cookie": {"session=" + strings.Repeat("x", 87) + "; theme=dark; _ga=GA1.2.3"}}
	b.ReportAllocs()
	for b.Loop() {
		if k.Present(h) {
			b.Fatal("present")
		}
	}
}

func TestExpireCookies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  Config
		tls  bool
		want []string
	}{
		{"koa defaults", Config{Kind: KindKoa}, false, []string{
			"koa.sess=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly",
			"koa.sess.sig=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly",
		}},
		{"express path and domain over TLS", Config{Kind: KindExpress, Path: "/app", Domain: "example.com"}, true, []string{
			"connect.sid=; Path=/app; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure",
		}},
		{"prefixed name behind a plain-HTTP hop", Config{Kind: KindExpress, Cookie: "__Host-sid"}, false, []string{
			"__Host-sid=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Keys = []string{"k"}
			c.cfg.Collection = "sessions"
			if c.cfg.Kind == KindKoa {
				c.cfg.Collection = ""
			}
			s := &Source{cfg: c.cfg, name: c.cfg.name()}
			if c.cfg.Kind == KindKoa {
				s.koa = &keygrip{}
			}
			h := http.Header{"Cookie": {s.name + "=v; theme=dark; " + s.name + ".sig=x"}}
			got := s.Discard(h, c.tls)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			left := strings.Join(h["Cookie"], "; ")
			if c.cfg.Kind == KindKoa && left != "theme=dark" {
				t.Errorf("left %q", left)
			}
		})
	}
}
