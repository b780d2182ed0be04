package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// scaleAORs is how many AORs the operator page is tried with.
const scaleAORs = 100_000

// TestLiveViewAtScale opens the live view over 100,000 AORs in headless
// Chromium: the first paint without script (a plain chromium
// --screenshot), the whole listing loaded, search, paging, watchers, an
// operator action, live updates during a burst of new registrations and
// the notice of a truncated listing. Render and search times measured in
// the page with performance.now() are logged, not asserted (the machine
// is shared). Screenshots go to testdata/artifacts/liveview-*.png.
func TestLiveViewAtScale(t *testing.T) {
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	sqlite3, err3 := exec.LookPath("sqlite3")
	if err1 != nil || err2 != nil || err3 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium, chromedriver and sqlite3 are required under CI (apt-get install chromium chromium-driver sqlite3)")
		}
		t.Skip("chromium, chromedriver or sqlite3 not installed (apt-get install chromium chromium-driver sqlite3)")
	}
	if testing.Short() {
		t.Skip("100,000 AORs in a browser: not with -short")
	}
	// The rows are in the file before regbridge starts: it reads them as
	// one snapshot, as after a restart of a busy registrar.
	start := time.Now()
	path := filepath.Join(t.TempDir(), "location.db")
	prefill(t, sqlite3, path, scaleAORs)
	s := startServer(t, path, map[string]string{"REGBRIDGE_ADMIN_TOKEN": e2eToken})
	t.Logf("%d AORs written and loaded by regbridge in %v", scaleAORs, time.Since(start).Round(time.Millisecond))

	p := siptest.New(t, "udp", s.sip)
	p.Subscribe("sip:u000001@example.com", siptest.Header("Event", "reg"))
	p.Next() // the subscription is live

	page := "http://" + s.http + "/?token=" + url.QueryEscape(e2eToken)
	firstPaintScreenshot(t, chromium, page, artifact(t, "liveview-first-paint.png"))

	wd := startWebDriver(t, driver, chromium)
	wd.resize(1600, 1000)
	wd.navigate(page)
	// Before the 100 listing requests are done, the rows are there.
	wd.until("the first paint has rows", `return document.querySelectorAll('#regs tr.aor').length === 100`)
	// The row of a watched AOR as the server drew it (the same script
	// call proves the script had not drawn it yet).
	row := `const tr = document.querySelector('#regs tr.contact[data-aor="sip:u000001@example.com"]');
		const head = document.querySelector('#regs tr.aor[data-aor="sip:u000001@example.com"]');
		return tr && head ? [window.regbridgeStats.loaded, head.textContent, ...[...tr.cells].map(c => c.textContent)] : null`
	served, _ := wd.exec(row).([]any)
	if len(served) != 13 || served[0] != float64(0) {
		t.Fatalf("first paint of sip:u000001@example.com: %q", served)
	}
	if got := wd.exec(`return location.search`); got != "" {
		t.Errorf("the token stays in the address bar: %q", got)
	}
	wd.untilWithin(150*time.Second, "everything loaded", `return window.regbridgeStats.loaded === arguments[0] && document.getElementById('range').textContent.includes('of 100,000')`, scaleAORs)
	wd.until("live", `return document.getElementById('status').className === 'live'`)
	stats := func() map[string]any { return wd.exec(`return window.regbridgeStats`).(map[string]any) }
	st := stats()
	t.Logf("browser: listing of %v AORs loaded in %v ms; first full render %.2f ms", st["loaded"], st["loadMs"], st["lastRenderMs"])

	// Columns of a contact, and its watcher; the script draws them as the
	// server did (but for the countdown, which ticks).
	wd.until("the watcher shown", `return [...document.querySelectorAll('#regs tr.aor')].some(r => r.dataset.aor === 'sip:u000001@example.com' && r.textContent.includes('1 watcher'))`)
	drawn, _ := wd.exec(row).([]any)
	if len(drawn) == 13 {
		a, b := slices.Clone(drawn[1:]), slices.Clone(served[1:])
		a[5], b[5] = "", "" // expires in
		if !slices.Equal(a, b) {
			t.Errorf("the script draws sip:u000001@example.com as\n%q\nthe server as\n%q", a, b)
		}
	}
	cells := drawn[min(2, len(drawn)):]
	if len(cells) != 11 || cells[1] != "sip:198.51.100.2:40001;transport=tcp" || cells[2] != "TCP" || cells[3] != "0.5" ||
		!matches(`^[1-5]?\dm \d\ds$`, cells[4]) || !matches(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`, cells[5]) ||
		cells[6] != "call-1 / 7" || cells[7] != "<urn:uuid:00000000-0000-0000-0000-000000000001>" {
		t.Errorf("contact row of sip:u000001@example.com: %q", cells)
	}

	// Search.
	search := func(q string) {
		wd.exec(`const f = document.getElementById('filter'); f.value = arguments[0]; f.dispatchEvent(new Event('input'))`, q)
		wd.until("search "+q+" done", `return window.regbridgeStats.lastSearch === arguments[0]`, q)
	}
	search("u04242")
	wd.until("10 matches", `return document.getElementById('range').textContent.startsWith('AORs 1–10 of 10 matching') && document.querySelectorAll('#regs tr.aor').length === 10`)
	t.Logf("browser: search over %d AORs took %.2f ms (filter and render)", scaleAORs, stats()["searchMs"])
	wd.saveScreenshot(artifact(t, "liveview-search.png"))
	search("")
	wd.until("search cleared", `return document.getElementById('range').textContent.includes('of 100,000 (page 1 of 1000)')`)
	t.Logf("browser: clearing the search took %.2f ms", stats()["searchMs"])

	// Paging.
	firstAOR := `return document.querySelector('#regs tr.aor').dataset.aor === arguments[0]`
	wd.exec(`document.getElementById('next').click()`)
	wd.until("page 2", firstAOR, "sip:u000100@example.com")
	t.Logf("browser: page 2 rendered in %.2f ms", stats()["lastRenderMs"])
	wd.exec(`document.getElementById('last').click()`)
	wd.until("last page", firstAOR, "sip:u099900@example.com")
	t.Logf("browser: last page rendered in %.2f ms", stats()["lastRenderMs"])
	wd.exec(`document.getElementById('first').click()`)
	wd.until("page 1", firstAOR, "sip:u000000@example.com")

	// Live updates: one AOR that sorts onto page 1, then a burst of 200
	// in one transaction (within the event stream's client buffer; a
	// larger burst drops the stream and the page reloads everything).
	s.insert(t, "live-a", "a-live", "sip:a-live@192.0.2.50:5060", time.Now().Add(time.Hour), "ca", 1)
	wd.untilWithin(60*time.Second, "the new AOR on page 1", firstAOR, "sip:a-live@example.com")
	wd.exec(`Object.assign(window.regbridgeStats, { maxRenderMs: 0, renders: 0, events: 0, applyMs: 0 })`)
	s.exec(t, bulkRows("b", 200)) // sorts onto page 1: every frame redraws it
	wd.untilWithin(60*time.Second, "the burst counted", `return document.getElementById('n-aors').textContent === '100,201'`)
	wd.until("page 1 redrawn", firstAOR, "sip:a-live@example.com")
	st = stats()
	t.Logf("browser: burst of 200 new AORs: %v events applied in %.2f ms in all; %v page renders, slowest %.2f ms",
		st["events"], st["applyMs"], st["renders"], st["maxRenderMs"])
	s.exec(t, `DELETE FROM location WHERE ruid = 'live-a'`)
	wd.untilWithin(60*time.Second, "the AOR gone", firstAOR, "sip:b000000@example.com")

	// An operator action on a search result, through the confirmation bar.
	search("u00000")
	wd.until("u000001 found", `return !!document.querySelector('#regs tr.contact[data-aor="sip:u000001@example.com"]')`)

	wd.exec(`document.querySelector('#regs tr.contact[data-aor="sip:u000001@example.com"] button[data-act="deactivate"]').click()`)
	wd.until("the confirmation bar", `return !document.getElementById('confirm').hidden && document.getElementById('confirm-text').textContent.includes('u000001')`)
	wd.saveScreenshot(artifact(t, "liveview-confirm.png"))
	wd.exec(`document.getElementById('confirm-yes').click()`)
	// The SQLite source cannot delete: the subscribers are told only.
	wd.until("the outcome shown", `return document.getElementById('notice').textContent === 'deactivated: sip:u000001@192.0.2.1:5060 of sip:u000001@example.com (registrar: notify-only)'`)
	wd.until("the contact gone", `return !document.querySelector('#regs tr.aor[data-aor="sip:u000001@example.com"]')`)
	if n := p.Next(); len(n.Doc.Registrations) != 1 || n.Doc.Registrations[0].Contacts[0].Event != "deactivated" {
		t.Errorf("the watcher was not told: %s", n.Req.Body())
	}
	// Probation takes its retry-after from the bar.
	wd.exec(`document.querySelector('#regs tr.contact[data-aor="sip:u000002@example.com"] button[data-act="probation"]').click()`)
	wd.until("the retry-after field", `return !document.getElementById('retry-label').hidden`)
	wd.exec(`document.getElementById('retry').value = '120'; document.getElementById('confirm-yes').click()`)
	wd.until("probation shown", `return document.getElementById('notice').textContent.startsWith('probation: sip:u000002@192.0.2.1:5060')`)
	wd.until("the log shows it", `return document.getElementById('log').textContent.includes('retry-after 120s')`)
	wd.until("the contact gone", `return !document.querySelector('#regs tr.aor[data-aor="sip:u000002@example.com"]')`)
	wd.saveScreenshot(artifact(t, "liveview-100k.png"))

	// A listing cut short says so.
	wd.navigate("http://" + s.http + "/?max=2500")
	wd.until("the truncation notice", `return document.getElementById('more').textContent.startsWith('Listing stopped at 2,500 AORs: the store has more.')`)
	wd.saveScreenshot(artifact(t, "liveview-truncated.png"))
}

// prefill makes the SQLite file path with the Kamailio schema and n rows
// <prefix>000000... with the sqlite3 shell: the pure-Go driver under the
// race detector needs minutes for 100,000 rows, the shell a second.
func prefill(t *testing.T, sqlite3, path string, n int) {
	t.Helper()
	script := strings.Join(kamailio.SQLiteSchema("location"), ";\n") + ";\n" + bulkRows("u", n) + ";\n"
	cmd := exec.Command(sqlite3, path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
}

// bulkRows is one INSERT of n rows <prefix>000000... as Kamailio's
// db_sqlite writes them (REAL Julian days), each with a received address
// over TCP, a q and an instance.
func bulkRows(prefix string, n int) string {
	exp, now := kamailio.TimeToJulian(time.Now().Add(time.Hour)), kamailio.TimeToJulian(time.Now())
	return fmt.Sprintf(`INSERT INTO location (ruid, username, contact, received, expires, q, callid, cseq, last_modified, user_agent, instance)
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %[2]d)
		SELECT printf('bulk-%[1]s%%06d', i), printf('%[1]s%%06d', i), printf('sip:%[1]s%%06d@192.0.2.1:5060', i),
			printf('sip:198.51.100.%%d:%%d;transport=tcp', i %% 250 + 1, 40000 + i %% 20000), %[3]v, 0.5,
			printf('call-%%d', i), 7, %[4]v, 'bulk phone/1.0', printf('<urn:uuid:00000000-0000-0000-0000-%%012d>', i)
		FROM n`, prefix, n-1, exp, now)
}

// firstPaintScreenshot runs chromium --headless --screenshot on the page,
// as an operator would: what it captures is the server-rendered first
// paint.
func firstPaintScreenshot(t *testing.T, chromium, page, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append([]string{"--user-data-dir=" + t.TempDir(), "--screenshot=" + path}, chromiumFlags...)
	args = append(args, "--window-size=1600,1000", page)
	out, err := exec.CommandContext(ctx, chromium, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", path, err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s", abs)
}

// artifact returns testdata/artifacts/<name> at the repository root,
// creating the directory.
func artifact(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

func (wd *webDriver) saveScreenshot(path string) {
	wd.t.Helper()
	if err := os.WriteFile(path, wd.screenshot(), 0o644); err != nil {
		wd.t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	wd.t.Logf("screenshot: %s", abs)
}

func (wd *webDriver) resize(width, height int) {
	wd.t.Helper()
	if err := wd.call("POST", wd.base+"/window/rect", map[string]any{"width": width, "height": height}, nil); err != nil {
		wd.t.Fatal(err)
	}
}

// untilWithin is until with its own deadline.
func (wd *webDriver) untilWithin(d time.Duration, what, script string, args ...any) {
	wd.t.Helper()
	siptest.EventuallyWithin(wd.t, d, func() bool { return wd.exec(script, args...) == true }, what)
}

func matches(pattern string, v any) bool {
	s, ok := v.(string)
	return ok && regexp.MustCompile(pattern).MatchString(s)
}
