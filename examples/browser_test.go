package examples

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowser walks the Python example in headless Chromium as a person
// would: the protected page sends them to log in, logging in brings them
// back, the counter counts reloads, the session cookie is out of reach of
// page scripts, and logging out protects the page again.
func TestBrowser(t *testing.T) {
	t.Parallel()
	chromium := need(t, "/usr/bin/chromium", "chromium", "chromium-browser")
	base := example(t, "python").base

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
	// One deadline for the whole walk, browser included: a hung browser
	// fails the test instead of stalling the run.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(ctx, chromedp.WithErrorf(t.Logf))
	defer cancelTab() // closes the browser and waits for it
	tab := &tab{t: t, ctx: ctx}

	// The protected page redirects to the login page.
	tab.do("open /account", chromedp.Navigate(base+"/account"))
	tab.expectLoginPage()

	// Logging in lands back on it.
	tab.do("log in",
		chromedp.SendKeys(chromedp.CSS("#name"), "Ada"),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#counter")),
	)
	if u := tab.location(); u.Path != "/account" {
		t.Fatalf("after login at %s, want /account", u)
	}
	if got := tab.text("#user"); got != "Ada" {
		t.Errorf("#user = %q, want Ada", got)
	}

	// The counter increments across reloads.
	for want := 1; want <= 3; want++ {
		if want > 1 {
			tab.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#counter")))
		}
		if got := tab.text("#counter"); got != fmt.Sprint(want) {
			t.Errorf("visit %d: #counter = %q", want, got)
		}
	}

	// The browser holds the session cookie, HttpOnly, so page scripts
	// cannot read it.
	if js := run(tab, "document.cookie", chromedp.Evaluate[string](`document.cookie`)); strings.Contains(js, cookieName+"=") {
		t.Errorf("document.cookie shows the session cookie: %q", js)
	}
	var stored *network.Cookie
	tab.do("read cookies", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		for _, c := range res.Cookies {
			if c.Name == cookieName {
				stored = c
			}
		}
		return err
	}))
	if stored == nil || !stored.HTTPOnly {
		t.Errorf("browser cookie %s = %+v, want one, HttpOnly", cookieName, stored)
	}

	// Logging out goes home, and the protected page wants a login again.
	tab.do("log out",
		chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#status")),
	)
	if u := tab.location(); u.Path != "/" {
		t.Errorf("after logout at %s, want /", u)
	}
	if got := tab.text("#status"); got != "You are not logged in." {
		t.Errorf("home after logout says %q", got)
	}
	tab.do("open /account again", chromedp.Navigate(base+"/account"))
	tab.expectLoginPage()
}

// tab runs browser actions, failing the test on the first error.
type tab struct {
	t       *testing.T
	ctx     context.Context
	started bool
}

// run runs one action and returns its value. The first action starts the
// browser and must run on the tab's own context (a shorter one would end the
// browser with it); later ones get 15 s each, so a wait for an element that
// never comes fails fast.
func run[T any](tb *tab, what string, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx := tb.ctx
	if tb.started {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(tb.ctx, 15*time.Second)
		defer cancel()
	}
	tb.started = true
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	run(tb, what, chromedp.Steps(actions...))
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return strings.TrimSpace(run(tb, "text of "+sel, chromedp.Text(chromedp.CSS(sel))))
}

func (tb *tab) location() *url.URL {
	tb.t.Helper()
	s := run(tb, "location", chromedp.Location())
	u, err := url.Parse(s)
	if err != nil {
		tb.t.Fatal(err)
	}
	return u
}

// expectLoginPage checks that the tab shows the login form, reached with
// next=/account.
func (tb *tab) expectLoginPage() {
	tb.t.Helper()
	// Navigate has waited for the page load, so the location is final.
	if u := tb.location(); u.Path != "/login" || u.Query().Get("next") != "/account" {
		tb.t.Fatalf("at %s, want /login?next=%%2Faccount", u)
	}
	tb.do("login form", chromedp.WaitVisible(chromedp.CSS("#name")))
}
