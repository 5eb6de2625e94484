package mongostore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/store"
)

// checkServer runs the start-up checks against the server: whether the
// write concern can be met at all (hello), and whether the server takes
// Decimal128 values. It returns an error only for an outage (retried).
func (s *Store) checkServer(ctx context.Context) error {
	hello, err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil {
		if isUnavailable(err) {
			return err
		}
		s.log.Warn("MongoDB refused the hello command; the write concern is not checked", zap.Error(s.redact.wrap(err)))
	} else if problem := writeConcernProblem(hello, s.w); problem != "" {
		err := fmt.Errorf("%w: the write_concern option (w: %v) cannot be met: %s", store.ErrUnavailable, s.w, problem)
		s.wcErr.Store(&err)
		s.log.Error("the MongoDB session store's write_concern cannot be met by this server; every write answers 503 until the option is changed",
			zap.String("option", "write_concern"), zap.Any("w", s.w), zap.String("reason", problem))
	}
	return s.probeDecimal(ctx)
}

// writeConcernProblem says why w cannot be met by the server that sent
// hello, or "" if it can (or cannot be told: tags on a replica set, any w
// through mongos).
func writeConcernProblem(hello bson.Raw, w any) string {
	if msg, _ := hello.Lookup("msg").StringValueOK(); msg == "isdbgrid" {
		return "" // mongos: the shards' replica sets decide
	}
	_, replSet := hello.Lookup("setName").StringValueOK()
	n, isNumber := w.(int)
	switch {
	case !replSet && isNumber && n > 1:
		return fmt.Sprintf("a standalone server acknowledges with itself only (w: %d needs a replica set)", n)
	case !replSet && !isNumber && w != DefaultWriteConcern:
		return "a standalone server has no replica-set tags"
	case replSet && isNumber:
		members := arrayLen(hello, "hosts") + arrayLen(hello, "passives")
		if n > members {
			return fmt.Sprintf("the replica set has %d data-bearing members", members)
		}
	}
	return ""
}

func arrayLen(doc bson.Raw, key string) int {
	arr, ok := doc.Lookup(key).ArrayOK()
	if !ok {
		return 0
	}
	vals, _ := arr.Values()
	return len(vals)
}

// writeConcernProblem returns the error every write answers when the
// start-up check found the write concern cannot be met.
func (s *Store) writeConcernProblem() error {
	if p := s.wcErr.Load(); p != nil {
		return *p
	}
	return nil
}

// probeDecimal finds out whether the server takes Decimal128 values (the
// stored form of integers outside int64). FerretDB 1.x does not: it drops
// the connection on any message holding one, which looks like an outage,
// so the store asks buildInfo instead of trying. FerretDB says who it is
// there (ferretdbVersion); from version 2 on it keeps Decimal128. Without
// it, the store writes such integers as {"%n": "<digits>"}.
func (s *Store) probeDecimal(ctx context.Context) error {
	err := s.askDecimal(ctx)
	if err == nil {
		close(s.probed) // retry calls again only after an outage
	}
	return err
}

func (s *Store) askDecimal(ctx context.Context) error {
	info, err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Raw()
	if err != nil {
		if isUnavailable(err) {
			return err
		}
		return nil // not worth a log line: MongoDB proper always answers
	}
	v, isFerret := info.Lookup("ferretdbVersion").StringValueOK()
	if !isFerret || ferretMajor(v) >= 2 {
		return nil
	}
	s.noDecimal.Store(true)
	s.log.Info("server without Decimal128 (FerretDB 1.x): integers outside int64 are stored as {\"%n\": \"<digits>\"} documents",
		zap.String("collection", s.coll.Name()))
	return nil
}

// ferretMajor returns the major version of a FerretDB version string such
// as "v1.24.2", or 0 when it cannot tell ("unknown" in source builds).
func ferretMajor(v string) int {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexByte(v, '.'); i > 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return n
}
