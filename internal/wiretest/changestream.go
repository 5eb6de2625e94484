package wiretest

import (
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ChangeStream scripts enough of a replica-set primary's change streams
// for a driver to follow one: aggregate with $changeStream opens a
// cursor, getMore delivers the events a test pushes (waiting a little
// for them, like an awaitData cursor), killCursors closes it. Every
// event carries a resume token; an aggregate with resumeAfter starts
// after the token it names.
type ChangeStream struct {
	srv *Server

	mu     sync.Mutex
	events []bson.D // every event pushed, in order; the token is its index
	broken *Reply   // the next getMore's answer, once
	wake   chan struct{}
	cursor int64
	pos    map[int64]int // cursor id -> index of its next event
}

// ChangeStreams makes s a replica-set primary with change streams.
func (s *Server) ChangeStreams() *ChangeStream {
	cs := &ChangeStream{srv: s, wake: make(chan struct{}), pos: map[int64]int{}}
	s.HelloFields(
		bson.E{Key: "setName", Value: "rs0"},
		bson.E{Key: "hosts", Value: bson.A{s.ln.Addr().String()}},
		bson.E{Key: "isWritablePrimary", Value: true},
	)
	s.Handle("aggregate", cs.aggregate)
	s.Handle("getMore", cs.getMore)
	s.Handle("killCursors", func(Command) Reply { return OK() })
	return cs
}

// Push delivers an update event for the document with _id key.
func (cs *ChangeStream) Push(key string) {
	cs.PushEvent(bson.D{
		{Key: "operationType", Value: "update"},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: key}}},
	})
}

// PushEvent delivers ev (without _id: the stream adds the token).
func (cs *ChangeStream) PushEvent(ev bson.D) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.events = append(cs.events, ev)
	close(cs.wake)
	cs.wake = make(chan struct{})
}

// Break makes the next getMore that has no event to deliver answer r
// (an error).
func (cs *ChangeStream) Break(r Reply) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.broken = &r
	close(cs.wake)
	cs.wake = make(chan struct{})
}

// Opens returns the aggregate commands that opened a stream.
func (cs *ChangeStream) Opens() []Command { return cs.srv.CommandsNamed("aggregate") }

func token(i int) bson.D { return bson.D{{Key: "_data", Value: fmt.Sprintf("%08d", i)}} }

func (cs *ChangeStream) aggregate(cmd Command) Reply {
	start := len(cs.snapshot())
	stage := cmd.Body.Lookup("pipeline", "0", "$changeStream")
	if tok, ok := stage.Document().Lookup("resumeAfter", "_data").StringValueOK(); ok {
		if _, err := fmt.Sscanf(tok, "%d", &start); err != nil {
			return Error(280, "ChangeStreamFatalError")
		}
		start++
	}
	cs.mu.Lock()
	cs.cursor++
	id := cs.cursor
	cs.pos[id] = start
	cs.mu.Unlock()
	return OK(bson.E{Key: "cursor", Value: cs.batch(cmd, id, "firstBatch", nil, start)})
}

func (cs *ChangeStream) snapshot() []bson.D {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.events
}

func (cs *ChangeStream) getMore(cmd Command) Reply {
	id, _ := cmd.Body.Lookup("getMore").Int64OK()
	deadline := time.After(200 * time.Millisecond)
	for {
		cs.mu.Lock()
		pos, events, wake := cs.pos[id], cs.events, cs.wake
		if pos < len(events) {
			cs.pos[id] = len(events)
			cs.mu.Unlock()
			return OK(bson.E{Key: "cursor", Value: cs.batch(cmd, id, "nextBatch", events[pos:], len(events)-1)})
		}
		if cs.broken != nil {
			r := *cs.broken
			cs.broken = nil
			cs.mu.Unlock()
			return r
		}
		cs.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			return OK(bson.E{Key: "cursor", Value: cs.batch(cmd, id, "nextBatch", nil, len(events)-1)})
		case <-cs.srv.closed:
			return Reply{Close: true}
		}
	}
}

// batch is a cursor document holding events (numbered from the first
// one's index), with the post-batch resume token of event last.
func (cs *ChangeStream) batch(cmd Command, id int64, field string, events []bson.D, last int) bson.D {
	first := last - len(events) + 1
	docs := bson.A{}
	for i, ev := range events {
		docs = append(docs, append(bson.D{{Key: "_id", Value: token(first + i)}}, ev...))
	}
	ns := cmd.Database + "." + collection(cmd)
	return bson.D{
		{Key: "id", Value: id},
		{Key: "ns", Value: ns},
		{Key: field, Value: docs},
		{Key: "postBatchResumeToken", Value: token(last)},
	}
}

func collection(cmd Command) string {
	if c, ok := cmd.Body.Lookup("aggregate").StringValueOK(); ok {
		return c
	}
	c, _ := cmd.Body.Lookup("collection").StringValueOK()
	return c
}
