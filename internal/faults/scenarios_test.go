package faults_test

// Fault scenarios under load (issue 10). Each runs clients concurrent
// sessions through a real Caddy with the MongoDB store, injects one fault
// between Caddy and the MongoDB-wire server, and checks the gateway's
// promises: answers are 2xx or a fast 503 with Retry-After, service
// comes back by itself, and no acknowledged write is lost. Every test
// logs a "row:" line with the numbers docs/reliability.md reports.

import (
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/faults"
	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// row logs the scenario's line for docs/reliability.md.
func row(t *testing.T, fault string, res *faults.Result, at map[string]time.Time, recovery time.Duration, tot faults.Totals) {
	s := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("row: %s | %d clients, %v | %d requests | %d | %d (%v), %d no answer | %v | %d on %d clients (%d stale reads, %d missing at the end)",
		fault, clients, at["end"].Sub(at["start"]).Round(time.Second), s.Requests, s.Unavailable, s.Other, s.Statuses, s.NoAnswer,
		recovery.Round(100*time.Millisecond), tot.MaxLost, tot.LostClients, tot.Stale, tot.Lost)
}

// TestFaultLatencySpike: every request to MongoDB is delayed by more than
// the store timeout for 3 s. Answers come within timeout + 1 s as 503
// with Retry-After, nothing else fails, and 2xx are back within 2 s.
// The late requests still reach the server after their 503: the writes
// among them must not overwrite newer acknowledged writes.
func TestFaultLatencySpike(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 5*time.Second,
		phase{2 * time.Second, "spike", func() { r.proxy.Latency(t, 2500) }},
		phase{3 * time.Second, "restore", func() { r.proxy.Clear(t) }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	t.Logf("spike: %v", faults.Summarize(res.Events, at["spike"], at["restore"]))
	noBadAnswers(t, "latency spike", all)
	if all.Max > storeTimeout+time.Second {
		t.Errorf("slowest answer %v, want at most timeout + 1 s = %v", all.Max, storeTimeout+time.Second)
	}
	if all.Unavailable == 0 {
		t.Error("no 503 during a spike above the timeout: the fault did not bite")
	}
	rec := faults.Recovery(res.Events, at["restore"].Add(2500*time.Millisecond))
	t.Logf("recovery after the delayed requests drained: %v", rec)
	if rec > 2*time.Second {
		t.Errorf("2xx only %v after the spike, want at most 2 s", rec)
	}
	row(t, "latency 2.5 s > timeout 1 s, 3 s", res, at, rec, r.verify(res))
}

// TestFaultServerStall: the MongoDB-wire server stops for 6 s (SIGSTOP)
// and goes on: the requests queued meanwhile are served late, in any
// order. This is the field report: writes that timed out (503) were
// applied later, over newer acknowledged writes.
func TestFaultServerStall(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 6*time.Second,
		phase{2 * time.Second, "freeze", func() { mongotest.Freeze(t) }},
		phase{6 * time.Second, "thaw", func() { mongotest.Thaw(t) }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	noBadAnswers(t, "server stall", all)
	rec := faults.Recovery(res.Events, at["thaw"])
	t.Logf("recovery after the thaw: %v", rec)
	if rec > 5*time.Second {
		t.Errorf("2xx only %v after the server went on, want at most 5 s", rec)
	}
	row(t, "server stalled 6 s (SIGSTOP)", res, at, rec, r.verify(res))
}

// TestFaultSlowConnections: for 6 s half of the connections to MongoDB
// are slow (3 s each way to the server), the other half fast, as with a
// congested path or a stalled server thread. A write that timed out on a
// slow connection (503) reaches the server after newer writes of the
// same client that were acknowledged on fast connections.
func TestFaultSlowConnections(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 5*time.Second,
		phase{2 * time.Second, "slow", func() { r.proxy.SlowConnections(t, 0.5, 3000) }},
		phase{6 * time.Second, "restore", func() { r.proxy.Clear(t) }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	noBadAnswers(t, "slow connections", all)
	if all.Max > storeTimeout+time.Second {
		t.Errorf("slowest answer %v, want at most timeout + 1 s = %v", all.Max, storeTimeout+time.Second)
	}
	rec := faults.Recovery(res.Events, at["restore"])
	t.Logf("recovery after the restore: %v", rec)
	if rec > 2*time.Second {
		t.Errorf("2xx only %v after the restore, want at most 2 s", rec)
	}
	row(t, "half the connections 3 s slow, 6 s", res, at, rec, r.verify(res))
}

// TestFaultSlowWrites: for 4 s, 30% of the update commands reach the
// server 5 s late (reads and handshakes are not delayed), as with a
// stalled write path. The store's write times out (503), and is applied
// later, after newer writes of the same client were acknowledged. This
// is the field report: acknowledged writes overwritten by late ones.
func TestFaultSlowWrites(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 8*time.Second,
		phase{2 * time.Second, "slow", func() { r.proxy.SlowWrites(t, 0.3, 5000, 0) }},
		phase{4 * time.Second, "stop", func() { r.proxy.StopSlowWrites() }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	noBadAnswers(t, "slow writes", all)
	if all.Unavailable == 0 {
		t.Error("no 503 while writes were slow: the fault did not bite")
	}
	row(t, "30% of writes 5 s late, 4 s", res, at, 0, r.verify(res))
}

// TestFaultLateWrite is the same fault made deterministic, with one
// client: its write n=4 reaches the server 3 s late, after the client,
// told 503, wrote n=4, 5 and 6 with success. The session must read 6.
func TestFaultLateWrite(t *testing.T) {
	r := newRig(t, nil)
	c := r.client()
	for n := 1; n <= 3; n++ {
		if st := c.write(n); st != 200 {
			t.Fatalf("write %d: %d", n, st)
		}
	}
	r.proxy.SlowWrites(t, 1, 3000, 1)
	if st := c.write(4); st != 503 {
		t.Fatalf("the delayed write answered %d, want 503", st)
	}
	for n := 4; n <= 6; n++ {
		if st := c.write(n); st != 200 {
			t.Fatalf("write %d after the 503: %d", n, st)
		}
	}
	time.Sleep(3500 * time.Millisecond) // the late write has reached the server
	if got := c.read(); got != 6 {
		t.Errorf("the session reads n=%d after acknowledged writes up to 6: a write answered 503 was applied later over %d acknowledged writes", got, 6-got)
	}
}

// TestFaultOutage: the network to MongoDB drops everything for 6 s
// (blackhole), then comes back. 503s meanwhile, recovery within 5 s
// without restarting Caddy, no acknowledged write lost and no destroyed
// session alive again.
func TestFaultOutage(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 6*time.Second,
		phase{2 * time.Second, "blackhole", func() { r.proxy.Blackhole(t) }},
		phase{6 * time.Second, "restore", func() { r.proxy.Clear(t) }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	noBadAnswers(t, "outage", all)
	if s := faults.Summarize(res.Events, at["blackhole"].Add(storeTimeout), at["restore"]); s.Unavailable == 0 {
		t.Errorf("no 503 during the outage: %v", s)
	}
	rec := faults.Recovery(res.Events, at["restore"])
	t.Logf("recovery after the restore: %v", rec)
	if rec > 5*time.Second {
		t.Errorf("2xx only %v after the restore, want at most 5 s", rec)
	}
	row(t, "blackhole 6 s", res, at, rec, r.verify(res))
}

// TestFaultResetPeer: for 4 s a fraction of the connections to MongoDB
// is reset when the server answers: the write was applied, its answer is
// lost, and the driver may retry it on another connection.
func TestFaultResetPeer(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 4*time.Second,
		phase{2 * time.Second, "reset", func() { r.proxy.ResetPeer(t, 0.3, 0) }},
		phase{4 * time.Second, "restore", func() { r.proxy.Clear(t) }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	noBadAnswers(t, "reset_peer", all)
	rec := faults.Recovery(res.Events, at["restore"])
	t.Logf("recovery after the restore: %v", rec)
	if rec > 5*time.Second {
		t.Errorf("2xx only %v after the restore, want at most 5 s", rec)
	}
	row(t, "reset_peer on 30% of connections, 4 s", res, at, rec, r.verify(res))
}

// TestFaultServerKilled: the MongoDB-wire server is killed (SIGKILL) and
// started again on the same data 2 s later.
func TestFaultServerKilled(t *testing.T) {
	r := newRig(t, nil)
	res, at := r.scenario(r.newLoad(), 5*time.Second,
		phase{2 * time.Second, "kill", func() { mongotest.Kill(t) }},
		phase{2 * time.Second, "restart", func() { mongotest.Restart(t) }},
	)
	all := faults.Summarize(res.Events, time.Time{}, time.Time{})
	t.Logf("all: %v", all)
	noBadAnswers(t, "server killed", all)
	rec := faults.Recovery(res.Events, at["restart"])
	t.Logf("recovery after the restart: %v", rec)
	if rec > 5*time.Second {
		t.Errorf("2xx only %v after the restart, want at most 5 s", rec)
	}
	row(t, "server killed, restarted after 2 s", res, at, rec, r.verify(res))
}
