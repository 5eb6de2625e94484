package examples

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserSessions walks the Python example's sessions page in two
// browser contexts (two cookie jars, as a laptop and a phone would have),
// both logged in as the same person: the page lists both sessions and marks
// its own, and "Log out everywhere" on one logs the other out on its next
// request. Needs Caddy's admin API module (admin.api.session).
func TestBrowserSessions(t *testing.T) {
	t.Parallel()
	base := example(t, "python").base
	browser := newBrowser(t)
	laptop, phone := newTab(t, browser, true), newTab(t, browser, true)
	laptop.loginAs(base, "Ada")
	phone.loginAs(base, "Ada")

	// Each lists both sessions, its own marked "(this browser)".
	var ids []string
	for name, tb := range map[string]*tab{"laptop": laptop, "phone": phone} {
		rows := tb.sessionRows(base)
		if len(rows) != 2 {
			t.Fatalf("%s: sessions page lists %q, want 2 sessions", name, rows)
		}
		current := run(tb, "current session", chromedp.Evaluate[string](`document.getElementById('sessions').dataset.current`))
		marked := 0
		for _, row := range rows {
			if strings.Contains(row, "(this browser)") {
				marked++
				if !strings.HasPrefix(row, current+" (this browser)") {
					t.Errorf("%s: row %q is marked, want the one of %s", name, row, current)
				}
			}
		}
		if marked != 1 {
			t.Errorf("%s: %d rows marked as this browser, want 1: %q", name, marked, rows)
		}
		ids = append(ids, current)
	}
	if ids[0] == ids[1] {
		t.Errorf("both browsers have session %s, want two sessions", ids[0])
	}

	// The phone logs out everywhere: it goes home, logged out.
	phone.do("log out everywhere",
		chromedp.Click(chromedp.CSS("#logout-everywhere")),
		chromedp.WaitVisible(chromedp.CSS("#status")),
	)
	if got := phone.text("#status"); got != "You are not logged in." {
		t.Errorf("phone after log out everywhere: %q", got)
	}

	// The laptop did nothing: its next request wants a login.
	laptop.do("open /account", chromedp.Navigate(base+"/account"))
	laptop.expectLoginPage()
}

// sessionRows opens /account/sessions and returns the text of each row of
// its table, once the page's script has filled it.
func (tb *tab) sessionRows(base string) []string {
	tb.t.Helper()
	tb.do("open /account/sessions", chromedp.Navigate(base+"/account/sessions"))
	status := run(tb, "sessions loaded", chromedp.Poll[string](
		`(s => /sessions?$|not available/.test(s) && s)(document.getElementById('sessions-status').textContent)`))
	if !strings.HasSuffix(status, "session") && !strings.HasSuffix(status, "sessions") {
		tb.t.Fatalf("sessions page says %q", status)
	}
	return run(tb, "session rows", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('#sessions tbody tr'), r => Array.from(r.cells, c => c.textContent).join(' | '))`))
}
