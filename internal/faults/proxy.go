// Package faults is a test helper for fault injection under load: a TCP
// proxy with toxics (Shopify's toxiproxy, run in-process as a library)
// that sits between Caddy and the MongoDB-wire test server, and a load of
// concurrent session clients that each keep their own counter, so a test
// can tell exactly how many acknowledged writes a fault lost.
//
// It is test code: only tests and the soak program import it, never the
// packages Caddy is built with (check with
// `go list -deps ./caddymodule | grep toxiproxy`, which must print
// nothing).
package faults

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy forwards TCP connections from its listen address to an upstream
// address, through toxics that can be added and removed while
// connections are open. It counts the connections it accepts and those
// that end, so a test can tell whether a client kept its pool.
type Proxy struct {
	p        *toxiproxy.Proxy
	accepted atomic.Int64
	closed   atomic.Int64

	mu   sync.Mutex
	slow *SlowWritesToxic // the slow_writes toxic, while there is one
}

// zerologOnce raises zerolog's global level once, so the proxy's trace
// messages (the only place toxiproxy reports a closed connection) reach
// the counting hook. Only toxiproxy uses zerolog in this module.
var zerologOnce sync.Once

// counter is a zerolog hook that counts the proxy's connection events.
type counter struct{ p *Proxy }

// Run counts "Accepted client" and the removal of a connection's
// upstream half, which happens once per proxied connection when either
// side closes it.
func (c counter) Run(_ *zerolog.Event, _ zerolog.Level, msg string) {
	switch {
	case msg == "Accepted client":
		c.p.accepted.Add(1)
	case strings.HasPrefix(msg, "RemoveConnection ") && strings.Contains(msg, "upstream from Proxy"):
		c.p.closed.Add(1)
	}
}

// Start runs a proxy on a free loopback port in front of upstream
// (host:port) and stops it when the test ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	zerologOnce.Do(func() { zerolog.SetGlobalLevel(zerolog.TraceLevel) })
	fp := &Proxy{}
	logger := zerolog.New(io.Discard).Level(zerolog.TraceLevel).Hook(counter{fp})
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), logger)
	fp.p = toxiproxy.NewProxy(server, "mongodb", "127.0.0.1:0", upstream)
	if err := fp.p.Start(); err != nil {
		t.Fatalf("faults: starting the proxy: %v", err)
	}
	t.Cleanup(fp.p.Stop)
	return fp
}

// Addr is the host:port clients connect to.
func (p *Proxy) Addr() string { return p.p.Listen }

// Accepted is the number of connections the proxy has accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Closed is the number of proxied connections that have ended so far.
func (p *Proxy) Closed() int64 { return p.closed.Load() }

// Toxic names, one of each kind at a time.
const (
	latencyToxic    = "latency"
	blackholeUp     = "blackhole_up"
	blackholeDown   = "blackhole_down"
	resetToxic      = "reset"
	bandwidthToxic  = "bandwidth"
	slowWritesToxic = "slow_writes"
)

func (p *Proxy) add(t testing.TB, name, typ, stream string, toxicity float64, attrs string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, name, typ, stream, toxicity, attrs)
	w, err := p.p.Toxics.AddToxicJson(strings.NewReader(body))
	if err != nil {
		t.Fatalf("faults: adding toxic %s: %v", name, err)
	}
	if s, ok := w.Toxic.(*SlowWritesToxic); ok {
		p.mu.Lock()
		p.slow = s
		p.mu.Unlock()
	}
}

// Latency delays every byte from the client to the server by ms
// milliseconds. A request its client gave up on
// still reaches the server and is applied late. Requests on their way
// when the toxic is removed are delivered at once.
func (p *Proxy) Latency(t testing.TB, ms int) {
	t.Helper()
	p.SlowConnections(t, 1, ms)
}

// SlowConnections delays the client-to-server bytes of a fraction of the
// connections (each picked with that probability when the toxic is added
// or the connection opens) by ms milliseconds: a slow path to the server
// on some connections while the others are fast. A write that timed out
// on a slow connection reaches the server after writes its client sent
// later on fast connections.
func (p *Proxy) SlowConnections(t testing.TB, fraction float64, ms int) {
	t.Helper()
	p.add(t, latencyToxic, "latency", "upstream", fraction, fmt.Sprintf(`{"latency":%d,"jitter":0}`, ms))
}

// SlowWrites delays a fraction of the update commands sent to the
// server by ms milliseconds (see SlowWritesToxic): the writes a store
// makes after a successful read time out on the client, and reach the
// server later, after newer writes of the same client sent on other
// connections.
// With count > 0 only the first count picked writes are delayed.
func (p *Proxy) SlowWrites(t testing.TB, fraction float64, ms, count int) {
	t.Helper()
	p.add(t, slowWritesToxic, "slow_writes", "upstream", 1, fmt.Sprintf(`{"latency":%d,"fraction":%g,"count":%d}`, ms, fraction, count))
}

// StopSlowWrites makes the slow_writes toxic pick no more writes, and
// leaves the writes it holds to arrive late (Clear would deliver them at
// once).
func (p *Proxy) StopSlowWrites() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slow != nil {
		p.slow.stopped.Store(true)
	}
}

// Blackhole drops every byte in both directions and keeps connections
// open, as a partitioned network does. Removing it closes the connections
// that were open during it.
func (p *Proxy) Blackhole(t testing.TB) {
	t.Helper()
	p.add(t, blackholeUp, "timeout", "upstream", 1, `{"timeout":0}`)
	p.add(t, blackholeDown, "timeout", "downstream", 1, `{"timeout":0}`)
}

// ResetPeer resets a fraction of the connections (each connection is
// picked with probability fraction when the toxic is added or the
// connection opens): timeoutMs after the first bytes the client sends,
// the connection is closed with RST and unsent data is dropped.
func (p *Proxy) ResetPeer(t testing.TB, fraction float64, timeoutMs int) {
	t.Helper()
	p.add(t, resetToxic, "reset_peer", "upstream", fraction, fmt.Sprintf(`{"timeout":%d}`, timeoutMs))
}

// Bandwidth limits the server-to-client direction to rateKB kilobytes a
// second.
func (p *Proxy) Bandwidth(t testing.TB, rateKB int) {
	t.Helper()
	p.add(t, bandwidthToxic, "bandwidth", "downstream", 1, fmt.Sprintf(`{"rate":%d}`, rateKB))
}

// Clear removes every toxic; traffic flows normally again.
func (p *Proxy) Clear(t testing.TB) {
	t.Helper()
	p.p.Toxics.ResetToxics(context.Background())
	p.mu.Lock()
	p.slow = nil
	p.mu.Unlock()
}

// Disable stops the proxy: open connections are closed and new ones are
// refused, as when the server's host is down.
func (p *Proxy) Disable() { p.p.Stop() }

// Enable starts a disabled proxy again on the same address.
func (p *Proxy) Enable(t testing.TB) {
	t.Helper()
	if err := p.p.Start(); err != nil {
		t.Fatalf("faults: restarting the proxy: %v", err)
	}
}
