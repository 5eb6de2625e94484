package examples

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserCrossOrigin is a cross-site request forgery in a real browser:
// while the browser holds the Python example's session cookie, a page served
// from another port of 127.0.0.1 auto-submits a form that POSTs to the
// demo's logout endpoints. Two ports of one host are the same site (so
// SameSite=Lax still sends the cookie) but different origins, which is the
// case that SameSite cannot catch and the gateway's cross-origin protection
// (Go's http.CrossOriginProtection, on Sec-Fetch-Site) does: each POST is
// answered 403 with the gateway's JSON body before the app runs, and the
// session goes on unchanged.
func TestBrowserCrossOrigin(t *testing.T) {
	t.Parallel()
	base := example(t, "python").base

	// The other origin: a tiny server whose page posts to ?target= on load.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := base + r.URL.Query().Get("target")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Win a prize</title>
<form id="f" method="post" action="%s"><input type="hidden" name="x" value="1"></form>
<script>window.addEventListener('load', () => document.getElementById('f').submit());</script>`, html.EscapeString(target))
	}))
	t.Cleanup(evil.Close)

	statuses := &responses{m: map[string]int{}}
	browser := newBrowser(t)
	tb := newTab(t, browser, false, chromedp.WithListener(statuses.listen))
	tb.loginAs(base, "Ada") // lands on /account: visit 1

	for i, target := range []string{"/logout", "/logout-everywhere"} {
		body := tb.landOn(evil.URL+"/?target="+target, base+target)
		if !strings.Contains(body, `{"error":"cross-origin request refused"}`) {
			// Without the cookie the app would have logged nobody out and
			// redirected home: this body proves the cookie was sent.
			t.Errorf("cross-origin POST %s: page shows %q, want the gateway's 403 body", target, body)
		}
		if got := statuses.get(base + target); got != http.StatusForbidden {
			t.Errorf("cross-origin POST %s: status %d, want 403", target, got)
		}
		// Still logged in, and the session data is as it was: the counter
		// goes on from where it stood.
		tb.expectCounter(base, 2+i)
	}
}

// responses records the HTTP status of each URL a tab loaded.
type responses struct {
	mu sync.Mutex
	m  map[string]int
}

func (rs *responses) listen(ev any) {
	if e, ok := ev.(*network.EventResponseReceived); ok {
		rs.mu.Lock()
		rs.m[e.Response.URL] = int(e.Response.Status)
		rs.mu.Unlock()
	}
}

func (rs *responses) get(url string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[url]
}

// newBrowser starts headless Chromium for the test and returns the context
// of its first tab, already running.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	chromium := need(t, "/usr/bin/chromium", "chromium", "chromium-browser")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // CI containers often run as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), // a fresh profile: no cookies from earlier runs
	)
	// One deadline for the whole test, browser included: a hung browser
	// fails the test instead of stalling the run.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelTab) // closes the browser and waits for it (cleanups run last-in first-out)
	if _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens a tab in the browser; with fresh, in a new browser context
// (its own cookie jar, as another person's browser would have).
func newTab(t *testing.T, browser context.Context, fresh bool, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	if fresh {
		opts = append(opts, chromedp.WithNewBrowserContext())
	}
	ctx, cancel := chromedp.NewContext(browser, opts...)
	t.Cleanup(cancel)
	return &tab{t: t, ctx: ctx}
}

// loginAs logs the tab in through the login form and checks that it lands
// on the account page.
func (tb *tab) loginAs(base, name string) {
	tb.t.Helper()
	tb.do("open /account", chromedp.Navigate(base+"/account"))
	tb.expectLoginPage()
	tb.do("log in as "+name,
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#counter")),
	)
	if got := tb.text("#user"); got != name {
		tb.t.Fatalf("after login #user = %q, want %q", got, name)
	}
	if got := tb.text("#counter"); got != "1" {
		tb.t.Errorf("after login #counter = %q, want 1", got)
	}
}

// expectCounter opens the account page and checks the user is still logged
// in with the visit counter at want.
func (tb *tab) expectCounter(base string, want int) {
	tb.t.Helper()
	tb.do("open /account", chromedp.Navigate(base+"/account"))
	if u := tb.location(); u.Path != "/account" {
		tb.t.Fatalf("at %s, want /account (still logged in)", u)
	}
	if got := tb.text("#counter"); got != fmt.Sprint(want) {
		tb.t.Errorf("#counter = %q, want %d", got, want)
	}
}

// landOn opens from, whose script navigates on by itself, waits until the
// tab has loaded the page at want, and returns its text.
func (tb *tab) landOn(from, want string) string {
	tb.t.Helper()
	tb.do("open "+from, chromedp.Navigate(from))
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
		state, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`location.href + ' ' + document.readyState + ' ' + (document.body ? document.body.innerText : '')`))
		cancel()
		// An evaluation during the navigation fails (its page is gone):
		// ask again.
		if err == nil && strings.HasPrefix(state, want+" complete ") {
			return strings.TrimPrefix(state, want+" complete ")
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("the tab did not reach %s: last state %q, error %v", want, state, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
