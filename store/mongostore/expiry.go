package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// Retry bounds for creating the TTL index while the server is down.
const (
	indexRetryMin = time.Second
	indexRetryMax = time.Minute
)

// maintain runs in the background for the Store's life: it creates the
// TTL index, retrying while the server is unreachable (start-up must not
// wait for MongoDB), and sweeps instead if the server refuses the index.
func (s *Store) maintain() {
	defer close(s.done)
	if !s.disableTTL && s.ensureTTLIndex() {
		close(s.ready)
		return
	}
	select {
	case <-s.stop:
		return
	default:
	}
	s.sweeping.Store(true)
	// Sweep once at once, so documents left over while nothing swept go
	// now, then on the interval.
	s.sweepOnce()
	close(s.ready)
	t := time.NewTicker(s.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweepOnce()
		}
	}
}

// ensureTTLIndex creates the TTL index on expires and reports whether it
// exists. It returns false when the server refused it (the caller then
// sweeps) or the Store was closed.
func (s *Store) ensureTTLIndex() bool {
	model := mongo.IndexModel{
		// The default name (expires_1) makes re-creating it at every start
		// a no-op.
		Keys:    bson.D{{Key: "expires", Value: 1}},
		Options: options.Index().SetExpireAfterSeconds(0),
	}
	wait := indexRetryMin
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
		go func() {
			// Close interrupts a slow attempt.
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		_, err := s.coll.Indexes().CreateOne(ctx, model)
		cancel()
		select {
		case <-s.stop:
			return false
		default:
		}
		if err == nil {
			s.log.Debug("TTL index on expires is in place")
			return true
		}
		if !isUnavailable(err) {
			s.log.Warn("MongoDB refused the TTL index on expires; deleting expired sessions with a periodic sweep instead",
				zap.String("collection", s.coll.Name()),
				zap.Duration("sweep_interval", s.sweepInterval),
				zap.Error(s.redact.wrap(err)))
			return false
		}
		// Only the first failure is worth a warning: the requests that
		// fail meanwhile log their own errors.
		if attempt == 1 {
			s.log.Warn("session store unavailable: cannot create the TTL index yet, retrying in the background",
				zap.Error(s.redact.wrap(err)))
		}
		select {
		case <-s.stop:
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, indexRetryMax)
	}
}

func (s *Store) sweepOnce() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	n, err := s.Sweep(ctx, s.now())
	if err != nil {
		s.log.Warn("sweeping expired sessions failed", zap.Error(err))
		return
	}
	if n > 0 {
		s.log.Debug("swept expired sessions", zap.Int64("deleted", n))
	}
}
