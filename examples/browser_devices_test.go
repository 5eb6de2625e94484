package examples

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserDevices walks the Python example's "Your devices" page in two
// browser contexts logged in as the same person (a laptop and a phone): the
// page lists both, with the browser's name and network, marks its own, and
// "End" on the phone's row ends the phone's session, which then has to log
// in again; ending its own row logs the laptop out. The page gets the list
// from the gateway's devices endpoint and ends sessions with DELETE, through
// the cross-origin check.
func TestBrowserDevices(t *testing.T) {
	t.Parallel()
	base := example(t, "python").base
	browser := newBrowser(t)
	laptop, phone := newTab(t, browser, true), newTab(t, browser, true)
	laptop.loginAs(base, "Grace")
	phone.loginAs(base, "Grace")
	other := newTab(t, browser, true)
	other.loginAs(base, "Linus")

	rows := laptop.deviceRows(base, 2)
	var phoneID, laptopID string
	for _, r := range rows {
		if !strings.Contains(r.text, "HeadlessChrome") || !strings.Contains(r.text, "127.0.0.0/24") {
			t.Errorf("row %q: want the browser's User-Agent and network", r.text)
		}
		if r.current {
			laptopID = r.id
			if !strings.Contains(r.text, "(this browser)") {
				t.Errorf("the current row %q is not marked", r.text)
			}
		} else {
			phoneID = r.id
		}
	}
	if laptopID == "" || phoneID == "" {
		t.Fatalf("rows %+v: want the laptop's (current) and the phone's", rows)
	}

	// End the phone from the laptop: the list shrinks to the laptop.
	laptop.do("end the phone", chromedp.Click(chromedp.CSS(`#devices tr[data-id="`+phoneID+`"] button.end`)))
	run(laptop, "list reloaded", chromedp.Poll[bool](`document.getElementById('devices-status').textContent === '1 device'`))
	if got := laptop.deviceRows(base, 1); got[0].id != laptopID {
		t.Fatalf("after ending the phone the list is %+v", got)
	}

	// The phone has to log in again; the other user was not touched.
	phone.do("open /account", chromedp.Navigate(base+"/account"))
	phone.expectLoginPage()
	other.expectCounter(base, 2)

	// Ending its own row logs the laptop out.
	laptop.do("end this browser", chromedp.Click(chromedp.CSS(`#devices tr[data-id="`+laptopID+`"] button.end`)))
	laptop.do("home", chromedp.WaitVisible(chromedp.CSS("#status")))
	if got := laptop.text("#status"); got != "You are not logged in." {
		t.Errorf("laptop after ending its own session: %q", got)
	}
}

// deviceRow is one row of the devices table.
type deviceRow struct {
	id, text string
	current  bool
}

// deviceRows opens /account/devices and returns its rows once the page's
// script has filled the table with want rows.
func (tb *tab) deviceRows(base string, want int) []deviceRow {
	tb.t.Helper()
	tb.do("open /account/devices", chromedp.Navigate(base+"/account/devices"))
	status := run(tb, "devices loaded", chromedp.Poll[string](
		`(s => /devices?$|not available/.test(s) && s)(document.getElementById('devices-status').textContent)`))
	if !strings.HasPrefix(status, fmt.Sprint(want)+" device") {
		tb.t.Fatalf("devices page says %q, want %d devices", status, want)
	}
	raw := run(tb, "device rows", chromedp.Evaluate[[][]string](
		`Array.from(document.querySelectorAll('#devices tbody tr'), r => [r.dataset.id, r.dataset.current || '', Array.from(r.cells, c => c.textContent).join(' | ')])`))
	var out []deviceRow
	for _, r := range raw {
		out = append(out, deviceRow{id: r[0], current: r[1] == "true", text: r[2]})
	}
	return out
}
