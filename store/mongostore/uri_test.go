package mongostore

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store"
)

func TestURIDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ uri, want string }{
		{"mongodb://localhost:27017", ""},
		{"mongodb://localhost:27017/", ""},
		{"mongodb://localhost:27017/myapp", "myapp"},
		{"mongodb://localhost/myapp?maxPoolSize=50&minPoolSize=5", "myapp"},
		{"mongodb+srv://gateway:pw@cluster0.example.net/myapp?retryWrites=true", "myapp"},
		{"mongodb://u:p%2Fq%40r@h1:1,h2:2/my%2Dapp?replicaSet=rs0", "my-app"},
		{"mongodb://u:p@h1:1,h2:2/?authSource=admin", ""},
		{"mongodb://h/?authSource=other", ""}, // authSource is not the data's database
		{"not a uri", ""},
	} {
		if got := URIDatabase(tc.uri); got != tc.want {
			t.Errorf("URIDatabase(%q) = %q, want %q", tc.uri, got, tc.want)
		}
	}
	// Validate checks the name the URI gives too.
	if err := (Options{URI: "mongodb://h/my.app"}).Validate(); err == nil {
		t.Error("Validate accepted the URI's database my.app")
	}
}

// TestDatabaseFromURI: without Database, the store uses the database the
// URI names (as MongoDB drivers' users expect), not "caddy"; Database, when
// set, wins.
func TestDatabaseFromURI(t *testing.T) {
	t.Parallel()
	uri, db := mongotest.Database(t)
	_, other := mongotest.Database(t)
	for _, tc := range []struct {
		name     string
		opts     Options
		database string
	}{
		{"the URI's", Options{URI: mongotest.WithDatabase(uri, db)}, db},
		{"the option over the URI's", Options{URI: mongotest.WithDatabase(uri, db), Database: other}, other},
	} {
		s, err := Open(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		if got := s.Collection().Database().Name(); got != tc.database {
			t.Errorf("%s: database %q, want %q", tc.name, got, tc.database)
		}
		now := time.Now()
		rec := &store.Record{Data: []byte(`{"a":1}`), Created: now, Updated: now, Expires: now.Add(time.Hour)}
		if err := s.Create(t.Context(), tc.name, rec); err != nil {
			t.Fatal(err)
		}
		n, err := mongotest.Client(t).Database(tc.database).Collection(DefaultCollection).
			CountDocuments(t.Context(), bson.D{{Key: "_id", Value: tc.name}})
		if err != nil || n != 1 {
			t.Errorf("%s: the session is not in %s.%s (%d, %v)", tc.name, tc.database, DefaultCollection, n, err)
		}
	}
}

// TestReadyOnlyOnceTheServerAnswered: "ready" is logged when the server
// first answered, not when the store is configured. The store starts on a
// port that accepts connections but says nothing (the outage is logged,
// "ready" is not); once the port forwards to the server, "ready" follows.
func TestReadyOnlyOnceTheServerAnswered(t *testing.T) {
	t.Parallel()
	uri, db := mongotest.Database(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	core, logs := observer.New(zap.InfoLevel)
	s, err := Open(Options{
		URI:       "mongodb://" + ln.Addr().String() + "/" + db + "?directConnection=true",
		OpTimeout: 300 * time.Millisecond, Logger: zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())

	waitLog := func(snippet string) bool {
		deadline := time.Now().Add(30 * time.Second)
		for logs.FilterMessageSnippet(snippet).Len() == 0 {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
		return true
	}
	if !waitLog("unavailable") {
		t.Fatalf("no log line says the server is unavailable: %v", logs.All())
	}
	if n := logs.FilterMessageSnippet("ready").Len(); n != 0 {
		t.Fatalf("ready logged %d times before the server ever answered: %v", n, logs.All())
	}

	// Now the port forwards to the real server.
	go forward(ln, mongotest.Hosts(uri))
	if !waitLog("ready") {
		t.Fatalf("ready not logged after the server became reachable: %v", logs.All())
	}
	ready := logs.FilterMessageSnippet("ready").All()
	if len(ready) != 1 || ready[0].ContextMap()["database"] != db {
		t.Errorf("ready lines: %v, want one naming database %s", ready, db)
	}
}

// forward accepts connections on ln and copies each to and from addr,
// until ln is closed.
func forward(ln net.Listener, addr string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			_, _ = io.Copy(c, up)
		}()
	}
}
