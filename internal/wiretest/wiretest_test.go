package wiretest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func connect(t *testing.T, s *Server) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()).SetServerSelectionTimeout(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	return c
}

// TestHandshakeAndScript: the driver connects (OP_QUERY handshake, then
// OP_MSG), scripted replies reach it as the driver's own error values, and
// the server records what it was sent.
func TestHandshakeAndScript(t *testing.T) {
	t.Parallel()
	s := New(t)
	s.Handle("find", func(Command) Reply { return Error(50, "MaxTimeMSExpired") })
	s.Handle("insert", func(c Command) Reply { return OK(bson.E{Key: "n", Value: int32(len(c.Documents["documents"]))}) })
	c := connect(t, s)
	ctx := t.Context()
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
	coll := c.Database("app").Collection("sessions")
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "k"}}).Err()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 50 || !mongo.IsTimeout(err) {
		t.Fatalf("find: %v, want the scripted MaxTimeMSExpired", err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	finds := s.CommandsNamed("find")
	if len(finds) != 1 || finds[0].Database != "app" || finds[0].Body.Lookup("find").StringValue() != "sessions" {
		t.Fatalf("recorded finds %v", finds)
	}
	ins := s.CommandsNamed("insert")
	if len(ins) != 1 || len(ins[0].Documents["documents"]) != 1 || ins[0].Documents["documents"][0].Lookup("_id").StringValue() != "x" {
		t.Fatalf("recorded inserts %+v", ins)
	}
	if len(s.CommandsNamed("hello")) != 0 {
		t.Fatal("handshakes recorded as commands")
	}
}

// TestUnscripted: a command without a script gets CommandNotFound.
func TestUnscripted(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := connect(t, s)
	err := c.Database("x").RunCommand(t.Context(), bson.D{{Key: "fsync", Value: 1}}).Err()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 59 {
		t.Fatalf("unscripted command: %v, want code 59", err)
	}
}

// TestStallAndClose: a stalled command times out on the caller's
// deadline; a closed connection is a network error.
func TestStallAndClose(t *testing.T) {
	t.Parallel()
	s := New(t)
	s.Handle("find", func(Command) Reply { return Reply{Stall: true} })
	s.Handle("delete", func(Command) Reply { return Reply{Close: true} })
	c := connect(t, s)
	coll := c.Database("app").Collection("sessions")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := coll.FindOne(ctx, bson.D{}).Err(); !mongo.IsTimeout(err) {
		t.Fatalf("stalled find: %v, want a timeout", err)
	}
	_, err := coll.DeleteOne(t.Context(), bson.D{})
	if !mongo.IsNetworkError(err) {
		t.Fatalf("closed delete: %v, want a network error", err)
	}
}

// TestHelloFields: the handshake can describe a mongos.
func TestHelloFields(t *testing.T) {
	t.Parallel()
	s := New(t)
	s.HelloFields(bson.E{Key: "msg", Value: "isdbgrid"})
	c := connect(t, s)
	raw, err := c.Database("admin").RunCommand(t.Context(), bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil || raw.Lookup("msg").StringValue() != "isdbgrid" {
		t.Fatalf("hello: %v %v", raw, err)
	}
}
