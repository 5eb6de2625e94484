package examples

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserSessions walks the Python example's devices page in two
// browser contexts (two cookie jars, as a laptop and a phone would have),
// both logged in as the same person: the page lists both sessions and marks
// its own, and "Log out everywhere" on one logs the other out on its next
// request. The list comes from the gateway's devices endpoint.
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
		rows := tb.deviceRows(base, 2)
		marked, current := 0, ""
		for _, row := range rows {
			if strings.Contains(row.text, "(this browser)") != row.current {
				t.Errorf("%s: row %+v: the mark and the current flag disagree", name, row)
			}
			if row.current {
				marked++
				current = row.id
			}
		}
		if marked != 1 {
			t.Errorf("%s: %d rows marked as this browser, want 1: %+v", name, marked, rows)
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
