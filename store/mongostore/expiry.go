package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
)

// Expiry says how expired documents leave the collection.
type Expiry int32

// The expiry states, in the order a store goes through them.
const (
	// ExpiryPending: the indexes are being built (or the server is not
	// reachable yet); the store sweeps meanwhile.
	ExpiryPending Expiry = iota
	// ExpiryTTLIndex: MongoDB deletes expired documents (TTL index on
	// expires); the store does not sweep.
	ExpiryTTLIndex
	// ExpirySweep: no TTL index can exist (the server refused it, or
	// DisableTTLIndex); the store sweeps every SweepInterval, on a plain
	// index on expires.
	ExpirySweep
)

func (e Expiry) String() string {
	switch e {
	case ExpiryTTLIndex:
		return "ttl-index"
	case ExpirySweep:
		return "sweep"
	}
	return "pending"
}

// Expiry reports how expired documents are removed right now.
func (s *Store) Expiry() Expiry { return Expiry(s.expiry.Load()) }

// indexBuildTimeout bounds one attempt to build an index. Building on a
// populated collection takes as long as it takes; an interrupted build is
// thrown away by MongoDB, so the store's 3 s request deadline (sent as
// maxTimeMS) would make it fail for ever.
const indexBuildTimeout = time.Hour

// Retry bounds for the start-up work while the server is unreachable.
const (
	setupRetryMin = time.Second
	setupRetryMax = time.Minute
)

// start runs the background work: the start-up checks and index builds,
// and the sweeper.
func (s *Store) start() {
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer close(s.ready)
		s.setup()
	}()
	go func() {
		defer s.wg.Done()
		s.sweeper()
	}()
}

// setup checks the server (write concern, Decimal128) and builds the
// indexes, retrying while the server is unreachable. Start-up never waits
// for it.
func (s *Store) setup() {
	if !s.retry("checking the server", s.checkServer) {
		return
	}
	// Only now: a store whose server never answered is not ready, whatever
	// its configuration says (retry logged the outage and will log the
	// recovery).
	s.log.Info("mongodb session store ready: the server answered",
		zap.String("database", s.coll.Database().Name()),
		zap.String("collection", s.coll.Name()))
	if !s.retry("checking the encryption keys", s.checkKeys) {
		return
	}
	if !s.retry("building the index on expires", s.expiresIndex) {
		return
	}
	if s.Expiry() == ExpirySweep {
		s.sweepOnce() // documents left over while nothing swept
	}
	s.retry("building the index on sub", s.subjectIndex)
	s.retry("building the index on sid", s.sidIndex)
	s.retry("building the index on isub", s.isubIndex)
}

// retry runs step until it succeeds, fails for a reason other than an
// outage, or the store is closed; it reports whether to go on. The first
// outage is logged once, and so is the recovery.
func (s *Store) retry(what string, step func(ctx context.Context) error) bool {
	wait := setupRetryMin
	for attempt := 1; ; attempt++ {
		ctx, cancel := s.stopContext(indexBuildTimeout)
		err := step(ctx)
		cancel()
		if s.stopped() {
			return false
		}
		if err == nil || !isUnavailable(err) {
			if attempt > 1 {
				s.log.Info("session store reachable again: "+what, zap.Int("attempts", attempt))
			}
			return true
		}
		if attempt == 1 {
			s.log.Warn("session store unavailable: "+what+" is retried in the background; expired sessions are swept meanwhile",
				zap.Error(s.redact.wrap(err)))
		}
		select {
		case <-s.bg.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, setupRetryMax)
	}
}

// stopContext returns a context with timeout d that Close cancels.
func (s *Store) stopContext(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.bg, d)
}

func (s *Store) stopped() bool { return s.bg.Err() != nil }

// expiresIndex creates the TTL index on expires, or, where it cannot
// exist, a plain one for the sweep, and records the state. It returns an
// error only for an outage (retried).
func (s *Store) expiresIndex(ctx context.Context) error {
	keys := bson.D{{Key: fieldExpires, Value: 1}}
	if !s.disableTTL {
		// The default name (expires_1) makes re-creating it at every
		// start a no-op.
		_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys, Options: options.Index().SetExpireAfterSeconds(0)})
		if err == nil {
			s.setExpiry(ExpiryTTLIndex, zap.String("index", "expires_1"))
			return nil
		}
		if isUnavailable(err) {
			return err
		}
		s.log.Warn("MongoDB refused the TTL index on expires; the store deletes expired sessions itself",
			zap.String("collection", s.coll.Name()),
			zap.Error(s.redact.wrap(err)))
	}
	// A plain index under its own name: it cannot clash with a TTL index
	// on expires that another instance may have built.
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys, Options: options.Index().SetName("expires_sweep")})
	if isUnavailable(err) {
		return err
	}
	if err != nil && !isIndexConflict(err) {
		s.log.Warn("could not build the index on expires; each sweep scans the collection",
			zap.Error(s.redact.wrap(err)))
	}
	s.setExpiry(ExpirySweep, zap.Duration("sweep_interval", s.sweepInterval))
	return nil
}

// isIndexConflict reports whether err says an equivalent index exists
// already under another name (85, IndexOptionsConflict; 86,
// IndexKeySpecsConflict): the sweep has its index.
func isIndexConflict(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && (se.HasErrorCode(85) || se.HasErrorCode(86))
}

// setExpiry records a state change and logs it once.
func (s *Store) setExpiry(e Expiry, fields ...zap.Field) {
	if Expiry(s.expiry.Swap(int32(e))) == e {
		return
	}
	fields = append(fields, zap.String("collection", s.coll.Name()), zap.Stringer("expiry", e))
	switch e {
	case ExpiryTTLIndex:
		s.log.Info("expired sessions are deleted by MongoDB (TTL index)", fields...)
	case ExpirySweep:
		s.log.Info("expired sessions are deleted by a periodic sweep", fields...)
	}
}

// subjectIndex builds the non-unique index on sub that FindBySubject and
// DeleteBySubject use. A refusal is logged: those calls then scan.
func (s *Store) subjectIndex(ctx context.Context) error {
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: fieldSubject, Value: 1}}})
	if err != nil && !isUnavailable(err) {
		s.log.Warn("MongoDB refused the index on sub; finding and revoking sessions by subject scans the collection",
			zap.Error(s.redact.wrap(err)))
		return nil
	}
	if err == nil {
		s.log.Debug("index on sub in place")
	}
	return err
}

// sweeper deletes expired documents every SweepInterval while there is no
// TTL index.
func (s *Store) sweeper() {
	t := time.NewTicker(s.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
			s.sweepOnceIfNeeded()
		}
	}
}

// sweepOnceIfNeeded sweeps unless MongoDB deletes expired documents
// itself.
func (s *Store) sweepOnceIfNeeded() {
	if s.Expiry() != ExpiryTTLIndex {
		s.sweepOnce()
	}
}

func (s *Store) sweepOnce() {
	ctx, cancel := s.stopContext(10 * s.opTimeout)
	defer cancel()
	n, err := s.Sweep(ctx, s.now())
	if s.stopped() {
		return
	}
	if err != nil {
		if !s.sweepFailing.Swap(true) {
			s.log.Warn("sweeping expired sessions failed; retrying every sweep interval", zap.Error(err))
		}
		return
	}
	if s.sweepFailing.Swap(false) {
		s.log.Info("sweeping expired sessions works again")
	}
	if n > 0 {
		s.log.Debug("swept expired sessions", zap.Int64("deleted", n))
	}
}
