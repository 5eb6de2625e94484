package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Load is N concurrent clients, each a browser with its own cookie jar
// and session, looping: read the session, then write the next value of a
// counter the client keeps itself (X-Session-Patch {"n":acked+1}).
//
// An acknowledged write is a 2xx answer to a write. A write answered
// otherwise (503, or no answer) has an unknown outcome: it may have been
// applied, now or later. Because a client writes acked+1 again after an
// unknown write, an unknown write can only ever store the value of the
// next acknowledged write, so the one ambiguity left at the end is the
// trailing unknown writes after a client's last acknowledged one: the
// stored counter is then acked or acked+1. Everything else is exact: a
// stored or read counter below acked is an acknowledged write lost.
type Load struct {
	// Base is the gateway's URL, such as http://127.0.0.1:8080.
	Base string
	// Clients is the number of concurrent clients.
	Clients int
	// RequestTimeout bounds each request on the client side, so a hang
	// shows as an error instead of stalling the load. Default 15s.
	RequestTimeout time.Duration
	// DestroyAfter makes each client log out (destroy its session) once,
	// after that many acknowledged writes, then start a new session; the
	// destroyed cookie is checked at the end. 0: never.
	DestroyAfter int64
	// Pause is slept between a client's iterations. Default 0.
	Pause time.Duration
	// Hold makes the upstream wait this long before answering a write,
	// so more writes are in flight at any moment (Upstream's hold=).
	Hold time.Duration
	// HTTP2 makes the clients speak HTTP/2 without TLS (h2c with prior
	// knowledge, as browsers speak HTTP/2 over TLS); the gateway's server
	// must allow h2c. Default: HTTP/1.1 with keep-alive.
	HTTP2 bool
}

// Event is one request of the load.
type Event struct {
	Client     int
	Kind       string // read, write, destroy
	Start, End time.Time
	Status     int    // 0 when there was no answer
	Proto      string // the answer's protocol, such as HTTP/2.0
	RetryAfter bool
	Err        string
}

// OK reports a 2xx answer.
func (e Event) OK() bool { return e.Status >= 200 && e.Status < 300 }

// client is one browser of the load.
type client struct {
	id        int
	base      string
	hc        *http.Client
	acked     int64    // acknowledged writes on the current session
	unknown   int      // unknown writes since the last acknowledged one
	unknowns  int      // unknown writes in all
	destroyed []string // cookies of sessions this client destroyed
	stale     int      // reads that saw a counter below acked
	deficit   int64    // the most acknowledged writes a read found missing
	lostSess  int      // reads that found the session gone while acked > 0
	// destroyUnknown: a logout went unanswered since the last
	// acknowledged write. Like any write that timed out it may still have
	// been applied, so the session may be gone by the client's own
	// request; that is not a lost session.
	destroyUnknown bool
	events         []Event
}

// Result is what a load run saw.
type Result struct {
	Events  []Event
	clients []*client
}

// Run runs the load until ctx is done and returns what happened.
func (l *Load) Run(ctx context.Context) *Result {
	timeout := l.RequestTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	tr := &http.Transport{MaxIdleConnsPerHost: l.Clients, MaxConnsPerHost: 0}
	if l.HTTP2 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	res := &Result{}
	var wg sync.WaitGroup
	for i := range l.Clients {
		jar, _ := cookiejar.New(nil)
		c := &client{id: i, base: l.Base, hc: &http.Client{Jar: jar, Timeout: timeout, Transport: tr}}
		res.clients = append(res.clients, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop(ctx, l)
		}()
	}
	wg.Wait()
	tr.CloseIdleConnections()
	for _, c := range res.clients {
		res.Events = append(res.Events, c.events...)
	}
	slices.SortFunc(res.Events, func(a, b Event) int { return a.Start.Compare(b.Start) })
	return res
}

func (c *client) loop(ctx context.Context, l *Load) {
	destroyedOnce := false
	for ctx.Err() == nil {
		c.read(ctx)
		if ctx.Err() != nil {
			return
		}
		if l.DestroyAfter > 0 && !destroyedOnce && c.acked >= l.DestroyAfter {
			if c.destroy(ctx) {
				destroyedOnce = true
			}
			continue
		}
		c.write(ctx, l.Hold)
		if l.Pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(l.Pause):
			}
		}
	}
}

// do sends one request; the load's context does not cancel a request
// already sent (the load ends after its last answers). Reads are GETs;
// writes and logouts are POSTs, which Go's transport never resends on
// its own, so every failure of a write shows.
func (c *client) do(kind, query string) (Event, []byte) {
	ev := Event{Client: c.id, Kind: kind, Start: time.Now()}
	method := http.MethodPost
	if kind == "read" {
		method = http.MethodGet
	}
	req, _ := http.NewRequest(method, c.base+"/"+query, nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		ev.End, ev.Err = time.Now(), err.Error()
		c.events = append(c.events, ev)
		return ev, nil
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ev.End, ev.Status, ev.Proto = time.Now(), resp.StatusCode, resp.Proto
	ev.RetryAfter = resp.Header.Get("Retry-After") != ""
	c.events = append(c.events, ev)
	return ev, b
}

func (c *client) read(ctx context.Context) {
	ev, b := c.do("read", "?r=1")
	if !ev.OK() {
		return
	}
	s, ok := parseBody(b)
	if !ok {
		return
	}
	switch {
	case c.acked > 0 && s.New && c.destroyUnknown:
		c.acked, c.unknown, c.destroyUnknown = 0, 0, false // the logout was applied
	case c.acked > 0 && s.New:
		c.lostSess++
	case s.N < c.acked:
		c.stale++
		c.deficit = max(c.deficit, c.acked-s.N)
	}
}

func (c *client) write(ctx context.Context, hold time.Duration) {
	q := "?n=" + strconv.FormatInt(c.acked+1, 10)
	if hold > 0 {
		q += "&hold=" + strconv.FormatInt(hold.Milliseconds(), 10)
	}
	ev, _ := c.do("write", q)
	if ev.OK() {
		c.acked++
		c.unknown = 0
		c.destroyUnknown = false // a logout that lands later fails its compare-and-set
		return
	}
	c.unknown++
	c.unknowns++
}

// destroy logs out; it reports whether the logout was acknowledged. An
// unacknowledged one is retried by the loop (destroy is idempotent).
func (c *client) destroy(ctx context.Context) bool {
	cookie := c.cookie()
	ev, _ := c.do("destroy", "?control=destroy")
	if !ev.OK() {
		c.destroyUnknown = true
		return false
	}
	if cookie != "" {
		c.destroyed = append(c.destroyed, cookie)
	}
	c.acked, c.unknown, c.destroyUnknown = 0, 0, false
	return true
}

// cookie is the session cookie's value in the client's jar, or "".
func (c *client) cookie() string {
	u, _ := url.Parse(c.base)
	for _, k := range c.hc.Jar.Cookies(u) {
		if k.Name == "session" {
			return k.Value
		}
	}
	return ""
}

// Check is the end-of-run verdict for one client.
type Check struct {
	Client   int
	Acked    int64 // acknowledged writes on the client's current session
	Unknown  int   // unknown writes after the last acknowledged one
	Stored   int64 // the counter read back at the end; -1 if unreadable
	Lost     int64 // acknowledged writes missing from the stored counter
	MaxLost  int64 // the most acknowledged writes missing at any read, the end included
	Phantom  bool  // stored counter above anything the client may have written
	Stale    int   // reads during the run that saw a counter below acked
	LostSess int   // reads during the run that found the session gone
	Revived  int   // destroyed sessions that read back as alive
	Err      string
}

// Verify reads every client's session back (retrying until deadline
// while the gateway does not answer 2xx) and checks its counter and its
// destroyed sessions.
func (r *Result) Verify(deadline time.Time) []Check {
	out := make([]Check, len(r.clients))
	var wg sync.WaitGroup
	for i, c := range r.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.verify(deadline)
		}()
	}
	wg.Wait()
	return out
}

func (c *client) verify(deadline time.Time) Check {
	ck := Check{Client: c.id, Acked: c.acked, Unknown: c.unknown, Stale: c.stale, LostSess: c.lostSess, Stored: -1}
	s, err := c.readUntil(deadline, "")
	if err != nil {
		ck.Err = err.Error()
		return ck
	}
	ck.Stored = s.N
	if s.New && c.destroyUnknown {
		ck.Acked = 0 // the unanswered logout was applied
	}
	if s.N < ck.Acked {
		ck.Lost = ck.Acked - s.N
	}
	ck.MaxLost = max(ck.Lost, c.deficit)
	max := c.acked
	if c.unknown > 0 {
		max++
	}
	ck.Phantom = s.N > max
	for _, old := range c.destroyed {
		s, err := c.readUntil(deadline, old)
		if err != nil {
			ck.Err = "reading a destroyed session: " + err.Error()
			return ck
		}
		if !s.New || s.N != 0 {
			ck.Revived++
		}
	}
	return ck
}

// readUntil reads the session (with the jar's cookie, or with cookie if
// given) until it gets a 2xx answer or the deadline passes.
func (c *client) readUntil(deadline time.Time, cookie string) (parsedSession, error) {
	for {
		req, _ := http.NewRequest(http.MethodGet, c.base+"/?final=1", nil)
		hc := c.hc
		if cookie != "" {
			req.Header.Set("Cookie", "session="+cookie)
			hc = &http.Client{Timeout: c.hc.Timeout, Transport: c.hc.Transport}
		}
		resp, err := hc.Do(req)
		var status int
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
			if status/100 == 2 {
				s, ok := parseBody(b)
				if !ok {
					return s, fmt.Errorf("unreadable answer %q", b)
				}
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return parsedSession{}, fmt.Errorf("no 2xx before the deadline (last status %d, error %v)", status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
