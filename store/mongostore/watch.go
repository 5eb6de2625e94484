package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessiongate/caddy-session/store/cachestore"
)

// Server error codes that mean "this deployment has no change streams":
// a standalone server (40573), a server that does not know the stage
// (40324, FerretDB) or the command (59, 115), or refuses it (238).
var noStreamCodes = map[int32]bool{40573: true, 40324: true, 59: true, 115: true, 238: true}

// Codes after which the saved resume token is useless: the history it
// points into is gone (286) or the stream cannot go on (280).
var lostTokenCodes = map[int32]bool{280: true, 286: true}

// watchPipeline keeps only what invalidation needs: the key and the kind
// of change (the event's _id, the resume token, always stays).
var watchPipeline = mongo.Pipeline{{{Key: "$project", Value: bson.D{
	{Key: "documentKey", Value: 1},
	{Key: "operationType", Value: 1},
}}}}

// Watch streams the keys of changed sessions to sink until ctx ends or
// the stream breaks (cachestore.Changes). A later call resumes after the
// last event seen. It returns cachestore.ErrNoChangeStreams when the
// deployment has none: only replica sets and sharded clusters do.
func (s *Store) Watch(ctx context.Context, sink cachestore.Sink) error {
	opts := options.ChangeStream().SetMaxAwaitTime(time.Second)
	if tok := s.resumeToken.Load(); tok != nil {
		opts.SetResumeAfter(*tok)
	}
	open, cancel := context.WithTimeout(ctx, s.opTimeout)
	cs, err := s.coll.Watch(open, watchPipeline, opts)
	cancel()
	if err != nil {
		return s.watchError("open", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opTimeout)
		defer cancel()
		cs.Close(ctx)
	}()
	sink.Live()
	for cs.Next(ctx) {
		if key, ok := eventKey(cs.Current); ok {
			sink.Changed(key)
		} else {
			sink.Unreadable()
		}
		s.saveToken(cs.ResumeToken())
	}
	s.saveToken(cs.ResumeToken())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.watchError("next", cs.Err())
}

func (s *Store) saveToken(tok bson.Raw) {
	if len(tok) > 0 {
		tok = append(bson.Raw(nil), tok...)
		s.resumeToken.Store(&tok)
	}
}

// watchError classifies a change stream error, and forgets the resume
// token when it can no longer be used.
func (s *Store) watchError(op string, err error) error {
	var se mongo.ServerError
	if errors.As(err, &se) {
		for code := range noStreamCodes {
			if se.HasErrorCode(int(code)) {
				return fmt.Errorf("mongostore: change stream: %w", cachestore.ErrNoChangeStreams)
			}
		}
		for code := range lostTokenCodes {
			if se.HasErrorCode(int(code)) {
				s.resumeToken.Store(nil)
			}
		}
	}
	if err == nil {
		err = errors.New("closed by the server")
	}
	return s.opError("change stream "+op, err)
}

// eventKey is the session key a change event names. Events without one
// (drop, rename, invalidate, or anything unreadable) report false: the
// cache must then forget everything.
func eventKey(ev bson.Raw) (string, bool) {
	key, ok := ev.Lookup("documentKey", fieldID).StringValueOK()
	return key, ok
}
