package mongostore

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/mongotest"
	"github.com/sessiongate/caddy-session/store"
)

// TestSSORoundTrips asserts with the driver's command monitor what the
// single sign-on calls cost: LimitSubject one find and one delete (only the
// find when nothing is over the limit), DeleteBySid one delete, FirstUse one
// insert (and one update for an id seen before).
func TestSSORoundTrips(t *testing.T) {
	uri, db := mongotest.Database(t)
	counter := &commandCounter{db: db}
	s, err := Open(Options{URI: uri, Database: db, Monitor: counter.monitor()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	waitReady(t, s)
	now := time.Now().Truncate(time.Millisecond)
	ctx := t.Context()
	for i := range 3 {
		at := now.Add(time.Duration(i) * time.Second)
		rec := &store.Record{Data: raw(`{}`), Subject: "carol", Sid: "sid-c", Created: at, Updated: at, Expires: now.Add(time.Hour)}
		if err := s.Create(ctx, strings.Repeat(string(rune('a'+i)), 64), rec); err != nil {
			t.Fatal(err)
		}
	}
	counter.take()
	steps := []struct {
		name string
		want []string
		call func() error
	}{
		{"LimitSubject over the limit", []string{"find", "delete"}, func() error {
			n, err := s.LimitSubject(ctx, "carol", 1, now)
			if err == nil && n != 2 {
				t.Errorf("LimitSubject ended %d, want 2", n)
			}
			return err
		}},
		{"LimitSubject within the limit", []string{"find"}, func() error { _, err := s.LimitSubject(ctx, "carol", 1, now); return err }},
		{"DeleteBySid", []string{"delete"}, func() error {
			n, err := s.DeleteBySid(ctx, "sid-c")
			if err == nil && n != 1 {
				t.Errorf("DeleteBySid deleted %d, want 1 (the survivor of the limit)", n)
			}
			return err
		}},
		{"FirstUse", []string{"insert"}, func() error { _, err := s.FirstUse(ctx, "id-1", now.Add(time.Hour), now); return err }},
		{"FirstUse again", []string{"insert", "update"}, func() error {
			fresh, err := s.FirstUse(ctx, "id-1", now.Add(time.Hour), now)
			if err == nil && fresh {
				t.Error("a second use was first")
			}
			return err
		}},
	}
	for _, st := range steps {
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if names, _ := counter.take(); !slices.Equal(names, st.want) {
			t.Fatalf("%s sent commands %v, want exactly %v", st.name, names, st.want)
		}
	}
}
