package wiretest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Proxy forwards connections to a real MongoDB-wire server and hands every
// command that passes through it to an observer: tests count what a
// request through Caddy costs in MongoDB commands without any hook in the
// code under test. Point the config at URI instead of the server's URI;
// a URI of its own also gives the config a MongoDB client of its own.
//
//	p := wiretest.NewProxy(t, uri)
//	p.Observe(func(c wiretest.Command) { ... c.Name, c.Database, c.Body, c.Documents ... })
//	... a config with `store mongodb ` + p.URI() ...
//
// Handshakes and heartbeats pass through too (commands named hello or
// isMaster, on database admin); observers filter by database and name.
type Proxy struct {
	ln       net.Listener
	upstream string // host:port
	uri      string
	observe  atomic.Pointer[func(Command)]
	accepted atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to the server of uri, which must name one host
// (mongodb://host:port/...), and closes it when the test ends.
func NewProxy(t testing.TB, uri string) *Proxy {
	t.Helper()
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		t.Fatalf("wiretest: the proxy needs a mongodb:// URI with one host")
	}
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	hosts := rest[:hostEnd]
	creds := ""
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		creds, hosts = hosts[:at+1], hosts[at+1:]
	}
	if strings.Contains(hosts, ",") {
		t.Fatalf("wiretest: the proxy needs a URI with one host, not a seed list")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("wiretest: proxy listen: %v", err)
	}
	tail := rest[hostEnd:]
	if tail == "" {
		tail = "/"
	}
	sep := "?"
	if strings.Contains(tail, "?") {
		sep = "&"
	}
	p := &Proxy{
		ln:       ln,
		upstream: hosts,
		// A direct connection: the driver must not go around the proxy to
		// the members the server names.
		uri:   "mongodb://" + creds + ln.Addr().String() + tail + sep + "directConnection=true",
		conns: map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// URI is the connection string to give the code under test.
func (p *Proxy) URI() string { return p.uri }

// Observe sets the function every command is handed to (nil: none). It is
// called on the connection's goroutine, before the command is forwarded.
func (p *Proxy) Observe(f func(Command)) {
	if f == nil {
		p.observe.Store(nil)
		return
	}
	p.observe.Store(&f)
}

// Connections returns how many connections the proxy has accepted: a
// client that opens a new connection pool shows up here.
func (p *Proxy) Connections() int { return int(p.accepted.Load()) }

// Close stops the proxy and closes every connection. It is safe to call
// twice.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c) || !p.track(up) {
			c.Close()
			up.Close()
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, up)
			c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.forward(c, up)
			up.Close()
		}()
	}
}

// forward copies the client's messages to the server, one at a time,
// handing each command to the observer.
func (p *Proxy) forward(c, up net.Conn) {
	r := bufio.NewReader(c)
	for {
		msg, err := readMessage(r)
		if err != nil {
			return
		}
		if f := p.observe.Load(); f != nil {
			if cmd, ok := parseCommand(msg); ok {
				(*f)(cmd)
			}
		}
		if _, err := up.Write(msg); err != nil {
			return
		}
	}
}

// parseCommand reads the command of an OP_MSG or OP_QUERY message.
func parseCommand(msg []byte) (Command, bool) {
	_, _, _, op, rest, ok := wiremessage.ReadHeader(msg)
	if !ok {
		return Command{}, false
	}
	var cmd Command
	var err error
	switch op {
	case wiremessage.OpMsg:
		cmd, err = parseMsg(rest)
	case opQuery:
		cmd, err = parseQuery(rest)
	default:
		return Command{}, false
	}
	return cmd, err == nil
}
