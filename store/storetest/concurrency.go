package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/store"
)

// increments is how many increments each goroutine of the counter test
// lands.
const increments = 4

// maxAttempts bounds a compare-and-set retry loop, so a store that always
// answers ErrConflict fails the test instead of spinning.
const maxAttempts = 1000

// rounds is how often the race tests repeat, each on a fresh key, to see
// more interleavings.
const rounds = 4

// parallel runs fn(0) … fn(n-1) in goroutines released together, and fails
// the test with every error they return.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start // release all goroutines together to maximise overlap
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// versionLog records the version each successful compare-and-set was
// based on; two successes on one version are a lost update.
type versionLog struct {
	mu   sync.Mutex
	seen map[int64]bool
}

func (l *versionLog) add(v int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[v] {
		return fmt.Errorf("two Updates based on version %d both succeeded", v)
	}
	l.seen[v] = true
	return nil
}

// increment reads the counter session under key, adds one and writes it
// back with compare-and-set, retrying on ErrConflict as the gateway does.
func increment(ctx context.Context, s store.Store, key string, now time.Time, log *versionLog) error {
	for range maxAttempts {
		rec, err := s.Find(ctx, key, now)
		if err != nil {
			return fmt.Errorf("find: %w", err)
		}
		var counter struct{ N int64 }
		if err := json.Unmarshal(rec.Data, &counter); err != nil {
			return fmt.Errorf("counter data %q: %w", rec.Data, err)
		}
		next := *rec
		next.Data = raw(fmt.Sprintf(`{"n":%d}`, counter.N+1))
		switch err := s.Update(ctx, key, &next, now); {
		case err == nil:
			return log.add(rec.Version)
		case !errors.Is(err, store.ErrConflict):
			return fmt.Errorf("update: %w", err)
		}
	}
	return fmt.Errorf("no Update succeeded in %d attempts", maxAttempts)
}

// testConcurrentCASCounter runs read-modify-write increments of one
// counter from many goroutines: every successful write must count, so
// the final counter equals the number of successes (no lost update).
func testConcurrentCASCounter(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	mustCreate(t, s, key, newRecord(c, `{"n":0}`, c.at(time.Hour)))
	log := &versionLog{seen: map[int64]bool{}}
	now := c.at(time.Second)
	parallel(t, concurrency, func(int) error {
		for range increments {
			// Each increment (its retries included) gets the call budget:
			// under contention a server that serialises writes (FerretDB
			// on SQLite) needs rounds proportional to the racers.
			ctx, cancel := callCtx(t)
			err := increment(ctx, s, key, now, log)
			cancel()
			if err != nil {
				return err
			}
		}
		return nil
	})
	writes := concurrency * increments
	got := mustFind(t, s, key, now)
	if want := fmt.Sprintf(`{"n":%d}`, writes); string(got.Data) != want {
		t.Fatalf("after %d successful increments: Data = %s, want %s (lost update)", writes, got.Data, want)
	}
	if got.Version != int64(1+writes) {
		t.Fatalf("Version = %d, want %d", got.Version, 1+writes)
	}
}

// raceResult is what one racer of testConcurrentUpdateRotate did.
type raceResult struct {
	won       bool
	successor string // for a rotator
	data      string // for an updater
}

// raceUpdateRotate races Updates and Rotates, all based on version 1, and
// with del a Delete, on a fresh session. It returns what each racer did.
func raceUpdateRotate(t *testing.T, s store.Store, c clock, key string, del bool) []raceResult {
	mustCreate(t, s, key, newRecord(c, `{"v":1}`, c.at(time.Hour)))
	results := make([]raceResult, concurrency)
	parallel(t, concurrency+1, func(i int) error {
		ctx, cancel := callCtx(t)
		defer cancel()
		var err error
		switch {
		case i == concurrency:
			if del {
				return s.Delete(ctx, key)
			}
			return nil
		case i%2 == 0:
			results[i].data = fmt.Sprintf(`{"updater":%d}`, i)
			rec := update(c, 1, results[i].data, "", 0, c.at(time.Hour))
			err = s.Update(ctx, key, rec, c.at(time.Second))
		default:
			results[i].successor = fmt.Sprintf("successor%02d", i)
			err = s.Rotate(ctx, key, 1, results[i].successor, c.at(time.Minute), c.at(time.Second))
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("racer %d: %w", i, err)
		}
		results[i].won = err == nil
		return nil
	})
	return results
}

// winners returns the racers that won.
func winners(results []raceResult) []raceResult {
	var out []raceResult
	for _, r := range results {
		if r.won {
			out = append(out, r)
		}
	}
	return out
}

// testConcurrentUpdateRotate checks that of Updates and Rotates based on
// one version exactly one wins, and the session shows that one.
func testConcurrentUpdateRotate(t *testing.T, s store.Store) {
	for round := range rounds {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			c := newClock()
			key := newKey(t)
			won := winners(raceUpdateRotate(t, s, c, key, false))
			if len(won) != 1 {
				t.Fatalf("%d racers won, want exactly 1: %+v", len(won), won)
			}
			if w := won[0]; w.successor != "" {
				wantRotated(t, s, key, c.at(time.Second), w.successor)
			} else {
				got := mustFind(t, s, key, c.at(time.Second))
				if string(got.Data) != w.data || got.Version != 2 {
					t.Fatalf("Data %s, Version %d; want the winner's %s at version 2", got.Data, got.Version, w.data)
				}
			}
		})
	}
}

// testConcurrentUpdateRotateDelete adds a Delete to the race: at most one
// Update or Rotate wins, and after the Delete nothing is left, neither a
// session nor a tombstone.
func testConcurrentUpdateRotateDelete(t *testing.T, s store.Store) {
	for round := range rounds {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			c := newClock()
			key := newKey(t)
			won := winners(raceUpdateRotate(t, s, c, key, true))
			if len(won) > 1 {
				t.Fatalf("%d racers won, want at most 1: %+v", len(won), won)
			}
			for _, now := range []time.Time{c.at(0), c.at(time.Second)} {
				wantNotFound(t, s, key, now)
			}
			fresh := newRecord(c, `{"fresh":true}`, c.at(time.Hour))
			mustCreate(t, s, key, fresh)
			checkUnchanged(t, s, key, c.at(time.Second), stored(fresh))
		})
	}
}

// testConcurrentTouch checks that racing touches leave the latest expiry
// and the latest update time, whatever order they land in.
func testConcurrentTouch(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	rec := newRecord(c, `{"a":1}`, c.at(time.Hour))
	mustCreate(t, s, key, rec)
	parallel(t, concurrency, func(i int) error {
		ctx, cancel := callCtx(t)
		defer cancel()
		d := time.Duration(i)
		return s.Touch(ctx, key, c.at(time.Hour+d*time.Minute), c.at(d*time.Second))
	})
	want := stored(rec)
	last := time.Duration(concurrency - 1)
	want.Expires = c.at(time.Hour + last*time.Minute)
	want.Updated = c.at(last * time.Second)
	checkUnchanged(t, s, key, c.at(0), want)
}

// testConcurrentCreate checks that of racing Creates of one key exactly
// one wins, and its data is what is stored.
func testConcurrentCreate(t *testing.T, s store.Store) {
	c := newClock()
	key := newKey(t)
	results := make([]error, concurrency)
	parallel(t, concurrency, func(i int) error {
		ctx, cancel := callCtx(t)
		defer cancel()
		rec := newRecord(c, fmt.Sprintf(`{"winner":%d}`, i), c.at(time.Hour))
		results[i] = s.Create(ctx, key, rec)
		return nil
	})

	winner := -1
	for i, err := range results {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("Create succeeded twice for one key (goroutines %d and %d)", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("Create #%d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent Create succeeded")
	}
	want := stored(newRecord(c, fmt.Sprintf(`{"winner":%d}`, winner), c.at(time.Hour)))
	checkUnchanged(t, s, key, c.at(0), want)
}
