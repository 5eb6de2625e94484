package caddymodule

// Sealed sessions through a real Caddy and the test MongoDB (issue 21):
// nothing an upstream writes is stored in the clear, a ciphertext moved
// between documents opens for neither, the rotation steps keep every
// live session, a removed key logs its users out cleanly, and a wrong key
// is reported at start-up.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store/mongostore"
)

// Keys as `caddy session gen-secret` prints them (64 hex digits).
var (
	sealKey1   = strings.Repeat("1a", 32)
	sealKey2   = strings.Repeat("2b", 32)
	sealKey3   = strings.Repeat("3c", 32)
	subjectKey = strings.Repeat("5e", 32)
)

// keyID is the key id documents and logs name a hex key by.
func keyID(t *testing.T, hexKey string) string {
	k, err := mongostore.ParseKey(hexKey)
	if err != nil {
		t.Fatal(err)
	}
	return mongostore.KeyID(k)
}

// sealedBody is a session with the MongoDB store sealing under keys (the
// first seals) and the subject at "user".
func sealedBody(uri, db string, keys ...string) string {
	return mongoSessionBody(uri, db,
		"\t\t\tencryption_key "+strings.Join(keys, " ")+"\n\t\t\tsubject_key "+subjectKey+"\n",
		"\t\tsubject user\n")
}

// rawSessions returns every document of db's sessions collection.
func rawSessions(t *testing.T, db string) []bson.Raw {
	t.Helper()
	cur, err := mongotest.Client(t).Database(db).Collection("sessions").Find(t.Context(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var out []bson.Raw
	for cur.Next(t.Context()) {
		out = append(out, bytes.Clone(cur.Current))
	}
	return out
}

// docOf returns the stored document of g's session.
func docOf(t *testing.T, g *gateway, db string) bson.Raw {
	t.Helper()
	r := g.get("/")
	for _, d := range rawSessions(t, db) {
		if id, _ := d.Lookup("_id").StringValueOK(); strings.HasPrefix(id, r.Meta.ID) && r.Meta.ID != "" {
			return d
		}
	}
	t.Fatalf("no document for session %q", r.Meta.ID)
	return nil
}

// metricValue reads one series from the admin endpoint's /metrics.
func metricValue(t *testing.T, admin, series string) float64 {
	t.Helper()
	status, body := adminDo(t, admin, http.MethodGet, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}

func patch(data string) string { return "/?patch=" + url.QueryEscape(data) }

// TestSealedMarkerNowhere: a marker value the upstream writes, in the data
// and as the subject (and a User-Agent), appears in no stored document;
// the upstream reads it back, and revoke-others finds the sessions by the
// clear subject through the hashed index.
func TestSealedMarkerNowhere(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	g := startGateway(t, globalOptions(t), sealedBody(uri, db, sealKey1), up)
	waitMongoReady(t)
	const marker = "marker-c0ffee"
	req, _ := http.NewRequest(http.MethodGet, g.base+patch(`{"user":"`+marker+`","note":"`+marker+` again","n":[1,{"deep":"`+marker+`"}]}`), nil)
	req.Header.Set("User-Agent", marker+"-agent")
	if r := g.do(req); r.Status != 200 {
		t.Fatalf("create: %d", r.Status)
	}
	other := g.visitor()
	other.get(patch(`{"user":"` + marker + `"}`))
	docs := rawSessions(t, db)
	if len(docs) < 3 { // two sessions and the check document
		t.Fatalf("%d documents", len(docs))
	}
	for _, d := range docs {
		if bytes.Contains(d, []byte(marker)) || bytes.Contains(d, []byte(url.QueryEscape(marker))) {
			t.Fatalf("the marker is stored in the clear: %s", d)
		}
	}
	if r := g.get("/"); r.Session["user"] != marker || r.Session["note"] != marker+" again" {
		t.Fatalf("read back: %s", r.RawSession)
	}
	// revoke-others hashes the clear subject inside the store.
	if r := g.get("/?control=revoke-others"); r.Status != 200 {
		t.Fatalf("revoke-others: %d", r.Status)
	}
	if r := other.get("/"); !r.Meta.New {
		t.Fatalf("the other session of the subject survived revoke-others: %s", r.RawSession)
	}
	if r := g.get("/"); r.Meta.New {
		t.Fatal("revoke-others ended its own session")
	}
}

// TestSealedSwappedCiphertext: data swapped between two stored sessions
// opens for neither: both visitors continue without a session (200,
// never 500), and the store logs it at error level.
func TestSealedSwappedCiphertext(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	opts, logPath := loggingOptions(t)
	g := startGateway(t, opts, sealedBody(uri, db, sealKey1), up)
	waitMongoReady(t)
	// One subject for both, so only the _id tells the ciphertexts apart.
	g.get(patch(`{"user":"ann","role":"admin"}`))
	v := g.visitor()
	v.get(patch(`{"user":"ann","role":"guest"}`))
	a, b := docOf(t, g, db), docOf(t, v, db)
	coll := mongotest.Client(t).Database(db).Collection("sessions")
	for _, sw := range []struct{ to, from bson.Raw }{{a, b}, {b, a}} {
		if _, err := coll.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: sw.to.Lookup("_id")}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "data", Value: sw.from.Lookup("data")}}}}); err != nil {
			t.Fatal(err)
		}
	}
	for name, who := range map[string]*gateway{"admin": g, "guest": v} {
		if r := who.get("/"); r.Status != 200 || !r.Meta.New || r.RawSession != "{}" {
			t.Fatalf("%s after the swap: status %d, session %s", name, r.Status, r.RawSession)
		}
	}
	waitLog(t, logPath, "does not open")
}

// waitLog waits until Caddy's JSON log at path has a line holding want.
func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, want) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSealedRotation walks docs/operations.md's rotation on a running
// Caddy: the new key added as an older key, then made first, sessions
// resealed at their next write, then the old key dropped. Every session
// written since lives on; one never written since is logged out cleanly
// (a new session, 200), with an error line naming the dropped key's id.
func TestSealedRotation(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	opts, logPath := loggingOptions(t)
	g := startGateway(t, opts, sealedBody(uri, db, sealKey1), up)
	var port int
	fmt.Sscan(strings.TrimPrefix(g.base, "http://127.0.0.1:"), &port)
	reload := func(keys ...string) {
		t.Helper()
		if err := loadCaddyfile(t, siteCaddyfile(opts, port, sealedBody(uri, db, keys...), up)); err != nil {
			t.Fatalf("reload with %d keys: %v", len(keys), err)
		}
		waitMongoReady(t)
	}
	waitMongoReady(t)
	ann, bob, cat := g, g.visitor(), g.visitor()
	ann.get(patch(`{"user":"ann"}`))
	bob.get(patch(`{"user":"bob"}`))
	cat.get(patch(`{"user":"cat"}`)) // never written again
	live := func(step string, who ...*gateway) {
		t.Helper()
		for _, v := range who {
			if r := v.get("/"); r.Status != 200 || r.Meta.New || r.Session["user"] == nil {
				t.Fatalf("%s: a session was lost: %d %s", step, r.Status, r.RawSession)
			}
		}
	}
	keyOf := func(v *gateway) string { return docOf(t, v, db).Lookup("k").StringValue() }

	reload(sealKey1, sealKey2) // 1. the new key as an older key
	live("new key added", ann, bob, cat)
	reload(sealKey2, sealKey1) // 2. the new key first
	live("new key first", ann, bob, cat)
	ann.get(patch(`{"seen":1}`)) // 3. written again: resealed
	bob.get(patch(`{"seen":1}`))
	if k := keyOf(ann); k != keyID(t, sealKey2) {
		t.Fatalf("a write after the switch sealed under %s, want the new key %s", k, keyID(t, sealKey2))
	}
	if k := keyOf(cat); k != keyID(t, sealKey1) {
		t.Fatalf("an unwritten session moved to key %s", k)
	}
	reload(sealKey2) // 4. the old key dropped
	live("old key dropped", ann, bob)
	if r := ann.get("/"); r.Session["seen"] != float64(1) {
		t.Fatalf("after the rotation: %s", r.RawSession)
	}
	// cat's session was sealed under the dropped key: logged out cleanly.
	if r := cat.get("/"); r.Status != 200 || !r.Meta.New {
		t.Fatalf("a session under a removed key: status %d, %s", r.Status, r.RawSession)
	}
	if r := cat.get(patch(`{"user":"cat"}`)); r.Status != 200 {
		t.Fatalf("logging in again: %d", r.Status)
	}
	line := waitLog(t, logPath, "not configured")
	if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, keyID(t, sealKey1)) {
		t.Fatalf("the removed key's line: %s", line)
	}
}

// TestSealedWrongKeyAtStartup: a configuration whose keys open none of
// the check documents (a typo) is reported at start-up, before anyone is
// logged out; the correct key then still opens every session.
func TestSealedWrongKeyAtStartup(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	opts, logPath := loggingOptions(t)
	g := startGateway(t, opts, sealedBody(uri, db, sealKey1), up)
	waitMongoReady(t)
	g.get(patch(`{"user":"ann"}`))
	var port int
	fmt.Sscan(strings.TrimPrefix(g.base, "http://127.0.0.1:"), &port)
	if err := loadCaddyfile(t, siteCaddyfile(opts, port, sealedBody(uri, db, sealKey3), up)); err != nil {
		t.Fatal(err)
	}
	line := waitLog(t, logPath, "none of the configured encryption keys opens the newest check document")
	if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, keyID(t, sealKey1)) || strings.Contains(line, sealKey3) {
		t.Fatalf("start-up line: %s", line)
	}
	if err := loadCaddyfile(t, siteCaddyfile(opts, port, sealedBody(uri, db, sealKey1), up)); err != nil {
		t.Fatal(err)
	}
	waitMongoReady(t)
	if r := g.get("/"); r.Meta.New || r.Session["user"] != "ann" {
		t.Fatalf("with the right key again: %s", r.RawSession)
	}
}

// TestSealedConfigErrors: keys of the wrong length or encoding, a missing
// subject key, and encryption_key on the memory store are config errors
// that never quote a key.
func TestSealedConfigErrors(t *testing.T) {
	up := upstream(t)
	opts := globalOptions(t)
	for _, tc := range []struct{ name, store, want string }{
		{"short", "encryption_key " + sealKey1[:62] + "\n\t\t\tsubject_key " + subjectKey, "32 random bytes"},
		{"not a key", "encryption_key correct-horse-battery-staple\n\t\t\tsubject_key " + subjectKey, "encryption_key"},
		{"second key bad", "encryption_key " + sealKey1 + " " + sealKey2 + "00\n\t\t\tsubject_key " + subjectKey, "encryption_key 2 of 2"},
		{"no subject key", "encryption_key " + sealKey1, "subject_key"},
		{"subject key bad", "encryption_key " + sealKey1 + "\n\t\t\tsubject_key " + subjectKey[:10], "subject_key"},
		{"unset variable", "encryption_key {env.CADDY_SESSION_TEST_UNSET_KEY}\n\t\t\tsubject_key " + subjectKey, "environment variable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := mongoSessionBody("mongodb://127.0.0.1:1/", "x", "\t\t\t"+tc.store+"\n", "")
			err := loadCaddyfile(t, siteCaddyfile(opts, freePort(t), body, up))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			for _, k := range []string{sealKey1, sealKey2, subjectKey, "correct-horse-battery"} {
				if strings.Contains(err.Error(), k[:16]) {
					t.Fatalf("the error quotes a key: %v", err)
				}
			}
		})
	}
	body := "\tsession {\n\t\tstore memory {\n\t\t\tencryption_key " + sealKey1 + "\n\t\t}\n\t\tsecret " + testSecret + "\n\t}\n"
	err := loadCaddyfile(t, siteCaddyfile(opts, freePort(t), body, up))
	if err == nil || !strings.Contains(err.Error(), "memory store") || !strings.Contains(err.Error(), "store mongodb") {
		t.Fatalf("encryption_key on the memory store: %v", err)
	}
}

// TestSealedResealCommand: `caddy session reseal` reseals every session
// under the new first key through the admin API, in batches, so the old
// key can be dropped at once without logging anyone out.
func TestSealedResealCommand(t *testing.T) {
	uri, db := mongotest.Database(t)
	up := upstream(t)
	opts, admin := opsOptions(t)
	g := startGateway(t, opts, sealedBody(uri, db, sealKey1), up)
	waitMongoReady(t)
	if _, err := runSessionCommand(t, "reseal", "--address", admin, "--batch", "0"); err == nil {
		t.Fatal("--batch 0 accepted")
	}
	visitors := []*gateway{g, g.visitor(), g.visitor()}
	for i, v := range visitors {
		v.get(patch(fmt.Sprintf(`{"user":"u%d"}`, i)))
	}
	var port int
	fmt.Sscan(strings.TrimPrefix(g.base, "http://127.0.0.1:"), &port)
	reload := func(keys ...string) {
		t.Helper()
		if err := loadCaddyfile(t, siteCaddyfile(opts, port, sealedBody(uri, db, keys...), up)); err != nil {
			t.Fatal(err)
		}
		waitMongoReady(t)
	}
	// The admin API takes the clear subject and finds the hashed one.
	if out, err := runSessionCommand(t, "list", "--subject", "u1", "--address", admin); err != nil || strings.Count(out, "\n") != 2 {
		t.Fatalf("list --subject u1 on a sealed store: %q %v", out, err)
	}
	reload(sealKey2, sealKey1)
	out, err := runSessionCommand(t, "reseal", "--address", admin, "--batch", "2")
	if err != nil || !strings.HasPrefix(out, "resealed 3 session(s); passed over 0") {
		t.Fatalf("reseal: %q %v", out, err)
	}
	for _, d := range rawSessions(t, db) {
		if id, _ := d.Lookup("_id").StringValueOK(); !strings.HasPrefix(id, "seal-check:") && d.Lookup("k").StringValue() != keyID(t, sealKey2) {
			t.Fatalf("not resealed: %s", d)
		}
	}
	reload(sealKey2)
	for i, v := range visitors {
		if r := v.get("/"); r.Meta.New || r.Session["user"] != fmt.Sprintf("u%d", i) {
			t.Fatalf("visitor %d after reseal and dropping the old key: %s", i, r.RawSession)
		}
	}
	// Failures are counted in caddy_session_seal_failures_total.
	series := `caddy_session_seal_failures_total{kind="unopenable",store="` + db + `.sessions"} `
	before := metricValue(t, admin, series)
	a, b := docOf(t, visitors[0], db), docOf(t, visitors[1], db)
	coll := mongotest.Client(t).Database(db).Collection("sessions")
	for _, sw := range []struct{ to, from bson.Raw }{{a, b}, {b, a}} {
		if _, err := coll.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: sw.to.Lookup("_id")}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "data", Value: sw.from.Lookup("data")}}}}); err != nil {
			t.Fatal(err)
		}
	}
	visitors[0].get("/")
	visitors[1].get("/")
	if got := metricValue(t, admin, series); got != before+2 {
		t.Fatalf("%s went from %v to %v, want +2", series, before, got)
	}
	// A store that does not seal: the admin API says so.
	if err := loadCaddyfile(t, siteCaddyfile(opts, port, mongoSessionBody(uri, db, "", ""), up)); err != nil {
		t.Fatal(err)
	}
	if _, err := runSessionCommand(t, "reseal", "--address", admin); err == nil || !strings.Contains(err.Error(), "seals sessions") {
		t.Fatalf("reseal without encryption_key: %v", err)
	}
}
