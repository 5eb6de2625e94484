package faults

import (
	"bytes"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// SlowWritesToxic delays, with probability Fraction, each chunk a client
// sends that holds a MongoDB update command (an OP_MSG whose command
// document starts with the string element "update"), by Latency
// milliseconds. Everything behind it on the same connection waits too,
// as on a real stream. Handshakes, finds and inserts pass at once, so the
// driver's connections stay up while some writes reach the server long
// after their client gave up on them.
//
// With Count > 0, only the first Count picked update commands (over all
// connections of the proxy) are delayed.
type SlowWritesToxic struct {
	Latency  int64   `json:"latency"`
	Fraction float64 `json:"fraction"`
	Count    int64   `json:"count"`

	picked  atomic.Int64
	stopped atomic.Bool
}

// updateCommand is how an update command document starts after its
// length: a string element named "update".
var updateCommand = []byte("\x02update\x00")

// Pipe forwards chunks, holding back the picked update commands.
func (t *SlowWritesToxic) Pipe(stub *toxics.ToxicStub) {
	delay := time.Duration(t.Latency) * time.Millisecond
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if t.pick(c.Data) {
				select {
				case <-time.After(delay):
				case <-stub.Interrupt:
					stub.Output <- c // deliver, never drop
					return
				}
			}
			stub.Output <- c
		}
	}
}

// pick decides whether to hold back a chunk.
func (t *SlowWritesToxic) pick(data []byte) bool {
	if t.stopped.Load() || !bytes.Contains(data, updateCommand) || rand.Float64() >= t.Fraction {
		return false
	}
	return t.Count <= 0 || t.picked.Add(1) <= t.Count
}

func init() { toxics.Register("slow_writes", new(SlowWritesToxic)) }
