package faults

import (
	"bytes"
	"math/rand/v2"
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
type SlowWritesToxic struct {
	Latency  int64   `json:"latency"`
	Fraction float64 `json:"fraction"`
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
			if bytes.Contains(c.Data, updateCommand) && rand.Float64() < t.Fraction {
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

func init() { toxics.Register("slow_writes", new(SlowWritesToxic)) }
