package faults

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Summary counts the answers of a set of requests.
type Summary struct {
	Requests     int
	OK           int           // 2xx
	Unavailable  int           // 503
	NoRetryAfter int           // 503s without Retry-After
	ServerErrors int           // 500
	Other        int           // other non-2xx, 500 included
	NoAnswer     int           // transport errors: reset, client timeout
	Writes       int           // write requests
	AckedWrites  int           // 2xx writes
	Max          time.Duration // slowest answer
	P50, P99     time.Duration
	Statuses     map[int]int
	Errors       []string // the first few transport errors
}

// Summarize counts the events that started in [from, to); zero times
// mean no bound.
func Summarize(events []Event, from, to time.Time) Summary {
	s := Summary{Statuses: map[int]int{}}
	var lat []time.Duration
	for _, e := range events {
		if (!from.IsZero() && e.Start.Before(from)) || (!to.IsZero() && !e.Start.Before(to)) {
			continue
		}
		s.Requests++
		d := e.End.Sub(e.Start)
		lat = append(lat, d)
		s.Max = max(s.Max, d)
		if e.Kind == "write" {
			s.Writes++
			if e.OK() {
				s.AckedWrites++
			}
		}
		switch {
		case e.Status == 0:
			s.NoAnswer++
			if len(s.Errors) < 5 {
				s.Errors = append(s.Errors, e.Err)
			}
		case e.OK():
			s.OK++
		case e.Status == 503:
			s.Unavailable++
			if !e.RetryAfter {
				s.NoRetryAfter++
			}
		default:
			s.Other++
			if e.Status == 500 {
				s.ServerErrors++
			}
		}
		if e.Status != 0 {
			s.Statuses[e.Status]++
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50 = lat[len(lat)/2]
		s.P99 = lat[len(lat)*99/100]
	}
	return s
}

// String is one line for a test log.
func (s Summary) String() string {
	return fmt.Sprintf("requests %d (writes %d, acked %d): 2xx %d, 503 %d (%d without Retry-After), other non-2xx %d %v, no answer %d %q; latency p50 %v p99 %v max %v",
		s.Requests, s.Writes, s.AckedWrites, s.OK, s.Unavailable, s.NoRetryAfter, s.Other, s.Statuses, s.NoAnswer, s.Errors,
		s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond), s.Max.Round(time.Millisecond))
}

// Recovery is how long after since the last failed request that started
// at or after since ended: from then on every request answered 2xx. It
// is 0 when every such request succeeded.
func Recovery(events []Event, since time.Time) time.Duration {
	var last time.Time
	for _, e := range events {
		if e.Start.Before(since) || e.OK() {
			continue
		}
		if e.End.After(last) {
			last = e.End
		}
	}
	if last.IsZero() {
		return 0
	}
	return last.Sub(since)
}

// Totals adds up the per-client checks.
type Totals struct {
	Clients, Unreadable, LostClients int
	Lost                             int64 // acknowledged writes missing at the end
	MaxLost                          int64 // per client, the most missing at any read; summed
	Stale, LostSessions, Revived     int
	Phantom, UnknownAtEnd            int
	Errors                           []string
}

// Total adds up checks.
func Total(checks []Check) Totals {
	var t Totals
	for _, c := range checks {
		t.Clients++
		if c.Err != "" {
			t.Unreadable++
			t.Errors = append(t.Errors, fmt.Sprintf("client %d: %s", c.Client, c.Err))
		}
		if c.MaxLost > 0 {
			t.LostClients++
		}
		t.Lost += c.Lost
		t.MaxLost += c.MaxLost
		t.Stale += c.Stale
		t.LostSessions += c.LostSess
		t.Revived += c.Revived
		if c.Phantom {
			t.Phantom++
		}
		if c.Unknown > 0 {
			t.UnknownAtEnd++
		}
	}
	return t
}

// String is one line for a test log.
func (t Totals) String() string {
	return fmt.Sprintf("clients %d: acknowledged writes lost %d (on %d clients; %d still missing at the end), stale reads %d, sessions lost %d, destroyed sessions revived %d, phantom counters %d, clients ending on an unknown write %d, unreadable %d %s",
		t.Clients, t.MaxLost, t.LostClients, t.Lost, t.Stale, t.LostSessions, t.Revived, t.Phantom, t.UnknownAtEnd, t.Unreadable, strings.Join(t.Errors, "; "))
}
