package cachestore

import (
	"context"
	"errors"
	"time"
)

// ErrNoChangeStreams is returned by Changes.Watch when the server cannot
// stream changes (a standalone server, FerretDB). The cache then stays in
// TTL mode for good.
var ErrNoChangeStreams = errors.New("the server has no change streams")

// Changes is a source of every instance's writes to the sessions, such as
// a MongoDB change stream on the collection.
type Changes interface {
	// Watch delivers changes to sink until ctx ends (it then returns
	// ctx.Err()) or the stream breaks (an error). It calls sink.Live once
	// the stream is open, sink.Changed with the key of every changed
	// session, and sink.Unreadable for an event it cannot read. A Watch
	// called again after an error resumes where the last one stopped
	// when it can.
	Watch(ctx context.Context, sink Sink) error
}

// Sink receives a change stream's events.
type Sink interface {
	// Live says the stream is open: every change from now on arrives.
	Live()
	// Changed says the session under key was written by someone.
	Changed(key string)
	// Unreadable says an event could not be read: any entry may be stale.
	Unreadable()
}

// ModeFunc is told each change of mode: live (a change stream delivers
// invalidations) or not, with the error that ended the stream, if any.
type ModeFunc func(live bool, err error)

// Follow runs src's change stream into the cache until ctx ends,
// reopening it after a pause when it breaks. While the stream is down the
// cache is flushed and serves entries for at most the TTL. It returns
// when ctx ends, or at once when src has no change streams. mode is told
// of each change of mode, once each.
func (c *Cache) Follow(ctx context.Context, src Changes, mode ModeFunc) {
	s := &sink{c: c, mode: mode}
	pause := c.ttl
	for ctx.Err() == nil {
		err := src.Watch(ctx, s)
		if s.live {
			s.live = false
			c.SetLive(false)
			pause = c.ttl
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrNoChangeStreams) {
			mode(false, err)
			return
		}
		if !s.down {
			s.down = true
			mode(false, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
}

// sink turns stream events into cache calls. One Follow loop owns it.
type sink struct {
	c    *Cache
	mode ModeFunc
	live bool
	down bool // the last mode reported was "not live" after a break
}

func (s *sink) Live() {
	if s.live {
		return
	}
	s.live, s.down = true, false
	// Entries read while the stream was down may predate changes the
	// stream will not repeat: start clean.
	s.c.Flush()
	s.c.SetLive(true)
	s.mode(true, nil)
}

func (s *sink) Changed(key string) { s.c.Invalidate(key) }

func (s *sink) Unreadable() { s.c.Flush() }
