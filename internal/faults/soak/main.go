// Command soak runs a built Caddy with the session handler under a mixed
// load for a while and watches it for growth: it samples Caddy's RSS, its
// goroutines (the admin endpoint's /debug/pprof/goroutine?debug=1) and
// its open file descriptors every interval, prints a table, and fails
// when, after the warm-up, any of them grew by more than 10%.
//
// The load mixes reads, patches, logins that regenerate, logouts,
// anonymous requests and bad cookies. The store is the memory store, or
// MongoDB when -mongodb is given. scripts/soak.sh builds what it needs
// and runs both.
//
// Linux only (it reads /proc).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/caddy-session/internal/faults"
)

func main() {
	caddyBin := flag.String("caddy", "./caddy", "the Caddy binary (built with ./xcaddy.sh)")
	mongoURI := flag.String("mongodb", "", "MongoDB URI for the mongodb store; memory store when empty (never printed)")
	maxSessions := flag.Int("max-sessions", 2000, "the memory store's max_sessions")
	duration := flag.Duration("duration", 5*time.Minute, "how long to run the load")
	interval := flag.Duration("interval", 10*time.Second, "sampling interval")
	warmup := flag.Duration("warmup", time.Minute, "growth is measured against the highest sample up to this")
	workers := flag.Int("clients", 16, "concurrent clients")
	flag.Parse()
	if err := run(*caddyBin, *mongoURI, *maxSessions, *duration, *interval, *warmup, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(caddyBin, mongoURI string, maxSessions int, duration, interval, warmup time.Duration, workers int) error {
	up := httptest.NewServer(faults.Upstream(nil))
	defer up.Close()
	dir, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, admin := freePort(), freePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	storeName := "memory"
	// A bound the mix reaches during the warm-up: logins keep creating
	// sessions, so without it the store (rightly) grows to its default
	// 100 000 and the RSS with it. The soak checks the bound holds.
	storeBlock := fmt.Sprintf("store memory {\n\t\t\tmax_sessions %d\n\t\t}", maxSessions)
	if mongoURI != "" {
		storeName = "mongodb"
		storeBlock = fmt.Sprintf("store mongodb {\n\t\t\turi {env.SOAK_MONGODB_URI}\n\t\t\tdatabase soak_%d\n\t\t}", time.Now().UnixNano())
	}
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output file %s
		level WARN
	}
}
http://127.0.0.1:%d {
	session {
		%s
		secret 0123456789abcdef0123456789abcdef
	}
	reverse_proxy %s
}
`, admin, filepath.Join(dir, "storage"), filepath.Join(dir, "caddy.log"), port, storeBlock, strings.TrimPrefix(up.URL, "http://"))
	cfPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(caddyBin, "run", "--config", cfPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "SOAK_MONGODB_URI="+mongoURI, "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logf, err := os.Create(filepath.Join(dir, "caddy.out"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", caddyBin, err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	}()
	if err := waitUp(base); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%v\n%s", err, out)
	}

	var st stats
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(ctx, base, int64(i), &st)
		}()
	}

	fmt.Printf("soak: %s store, %d clients, %v, sampling every %v\n", storeName, workers, duration, interval)
	fmt.Printf("%8s %10s %10s %6s %8s %10s %8s %8s\n", "time", "rss_kB", "goroutines", "fds", "active", "requests", "5xx", "errors")
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		s, err := take(cmd.Process.Pid, admin)
		if err != nil {
			return err
		}
		s.at = time.Since(start)
		samples = append(samples, s)
		fmt.Printf("%8v %10d %10d %6d %8d %10d %8d %8d\n", s.at.Round(time.Second), s.rssKB, s.goroutines, s.fds, s.active, st.requests.Load(), st.s5xx.Load(), st.errs.Load())
		if ctx.Err() != nil {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	fmt.Printf("soak: %d requests: %d 2xx, %d 503, %d other 5xx, %d 4xx, %d transport errors\n",
		st.requests.Load(), st.s2xx.Load(), st.s503.Load(), st.s5xx.Load()-st.s503.Load(), st.s4xx.Load(), st.errs.Load())
	bound := int64(maxSessions)
	if mongoURI != "" {
		bound = 0 // caddy_session_active covers memory stores only
	}
	return verdict(samples, warmup, bound, &st)
}

// verdict fails the run when a sample after the warm-up exceeds the
// warm-up's highest sample by more than 10%, or when requests failed.
// The warm-up's highest sample is the baseline because goroutines and
// fds move with the requests in flight at the sampling instant.
func verdict(samples []sample, warmup time.Duration, bound int64, st *stats) error {
	var b sample
	rest := samples
	for i, s := range samples {
		if s.at > warmup+time.Second { // a sample is taken a little after its tick
			rest = samples[i:]
			break
		}
		if i == 0 {
			continue // before the load started
		}
		b.rssKB, b.goroutines, b.fds = max(b.rssKB, s.rssKB), max(b.goroutines, s.goroutines), max(b.fds, s.fds)
		rest = nil
	}
	var bad []string
	if len(rest) == 0 || b.rssKB == 0 {
		bad = append(bad, "not enough samples: run longer than the warm-up plus one interval")
	}
	for _, s := range rest {
		check := func(name string, v, base int64) {
			if float64(v) > float64(base)*1.10 {
				bad = append(bad, fmt.Sprintf("%s %d at %v is more than 10%% above the warm-up's %d", name, v, s.at.Round(time.Second), base))
			}
		}
		check("rss_kB", s.rssKB, b.rssKB)
		check("goroutines", s.goroutines, b.goroutines)
		check("fds", s.fds, b.fds)
	}
	for _, s := range samples {
		if bound > 0 && s.active > bound {
			bad = append(bad, fmt.Sprintf("%d active sessions at %v, over max_sessions %d", s.active, s.at.Round(time.Second), bound))
		}
	}
	if st.s5xx.Load() > 0 || st.errs.Load() > 0 {
		bad = append(bad, fmt.Sprintf("%d 5xx answers and %d transport errors", st.s5xx.Load(), st.errs.Load()))
	}
	if st.s2xx.Load() == 0 {
		bad = append(bad, "no request succeeded")
	}
	if len(bad) > 0 {
		return fmt.Errorf("FAIL:\n  %s", strings.Join(bad, "\n  "))
	}
	fmt.Printf("soak: PASS (warm-up %v: rss %d kB, %d goroutines, %d fds at most; nothing grew above 10%% of that after it)\n",
		warmup, b.rssKB, b.goroutines, b.fds)
	return nil
}

type stats struct {
	requests, s2xx, s4xx, s503, s5xx, errs atomic.Int64
}

// worker loops over a mix of requests with its own browser.
func worker(ctx context.Context, base string, seed int64, st *stats) {
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 15 * time.Second}
	anon := &http.Client{Timeout: 15 * time.Second}
	var n int64
	for ctx.Err() == nil {
		var req *http.Request
		c := hc
		switch p := rng.IntN(100); {
		case p < 40: // read
			req, _ = http.NewRequest(http.MethodGet, base+"/", nil)
		case p < 65: // patch
			n++
			req, _ = http.NewRequest(http.MethodPost, base+"/?n="+strconv.FormatInt(n, 10), nil)
		case p < 75: // login: change and regenerate
			req, _ = http.NewRequest(http.MethodPost, base+"/?inc=1&control=regenerate", nil)
		case p < 80: // logout
			req, _ = http.NewRequest(http.MethodPost, base+"/?control=destroy", nil)
			n = 0
		case p < 90: // anonymous
			c = anon
			req, _ = http.NewRequest(http.MethodGet, base+"/", nil)
		default: // a bad cookie
			c = anon
			req, _ = http.NewRequest(http.MethodGet, base+"/", nil)
			req.Header.Set("Cookie", "session="+strings.Repeat("A", 43)+"."+strings.Repeat("B", 43))
		}
		st.requests.Add(1)
		resp, err := c.Do(req)
		if err != nil {
			st.errs.Add(1)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			st.s2xx.Add(1)
		case resp.StatusCode < 500:
			st.s4xx.Add(1)
		default:
			st.s5xx.Add(1)
			if resp.StatusCode == 503 {
				st.s503.Add(1)
			}
		}
	}
}

type sample struct {
	at                     time.Duration
	rssKB, goroutines, fds int64
	active                 int64 // caddy_session_active (memory store), -1 without it
}

// take reads the process's RSS and fd count from /proc and its goroutine
// count from the admin endpoint.
func take(pid, admin int) (sample, error) {
	var s sample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fmt.Sscan(strings.TrimSpace(rest), &s.rssKB)
		}
	}
	f.Close()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = int64(len(fds))
	if s.active, err = activeSessions(admin); err != nil {
		return s, err
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", admin))
	if err != nil {
		return s, fmt.Errorf("goroutine profile: %v", err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	// "goroutine profile: total 42"
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &s.goroutines); err != nil {
		return s, fmt.Errorf("goroutine profile: unexpected first line %q", line)
	}
	return s, nil
}

// activeSessions reads caddy_session_active from the admin endpoint's
// /metrics; -1 when no store reports it.
func activeSessions(admin int) (int64, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	if err != nil {
		return 0, fmt.Errorf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "caddy_session_active{"); ok {
			var v float64
			if _, err := fmt.Sscan(rest[strings.IndexByte(rest, '}')+1:], &v); err == nil {
				return int64(v), nil
			}
		}
	}
	return -1, sc.Err()
}

func waitUp(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy does not answer on %s: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
