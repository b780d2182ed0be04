package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// chromiumFlags start Chromium headless on a shared CI machine: no
// sandbox (root in a container), no GPU, no network of its own.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--window-size=1280,800",
}

// TestLiveViewInBrowser opens the live view in headless Chromium (driven
// by chromedriver's W3C WebDriver API), writes rows as Kamailio does and
// watches them appear and disappear on the page. The last screen is saved
// as testdata/artifacts/liveview.png.
func TestLiveViewInBrowser(t *testing.T) {
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium and chromedriver are required under CI (apt-get install chromium chromium-driver)")
		}
		t.Skip("chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
	}
	s := startServer(t, "", map[string]string{"REGBRIDGE_ADMIN_TOKEN": e2eToken})
	s.insert(t, "uloc-b", "bob", "sip:bob@192.0.2.20:5060", time.Now().Add(time.Hour), "cb", 1)
	siptest.Eventually(t, func() bool {
		return s.call(t, "GET", "/v1/registrations/sip:bob@example.com", e2eToken, "", nil) == 200
	}, "bob loaded")
	p := siptest.New(t, "udp", s.sip)
	p.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg"))

	wd := startWebDriver(t, driver, chromium)
	wd.navigate("http://" + s.http + "/?token=" + url.QueryEscape(e2eToken))
	wd.until("the event stream is live", `return document.getElementById('status').className === 'live'`)
	hasContact := `return [...document.querySelectorAll('tr.contact')].some(r => r.dataset.uri === arguments[0])`
	wd.until("bob from the initial listing", hasContact, "sip:bob@192.0.2.20:5060")
	if got := wd.exec(`return location.search`); got != "" {
		t.Errorf("the token stays in the address bar: %q", got)
	}
	wd.until("one subscription counted", `return document.getElementById('n-subs').textContent === '1'`)

	s.insert(t, "uloc-a", "alice", "sip:alice@192.0.2.10:5060", time.Now().Add(time.Hour), "ca", 1)
	wd.until("alice registered live", hasContact, "sip:alice@192.0.2.10:5060")
	wd.until("the event log shows it", `return document.getElementById('log').textContent.includes('registered')`)
	wd.until("two AORs counted", `return document.getElementById('n-aors').textContent === '2'`)

	s.exec(t, `DELETE FROM location WHERE ruid = 'uloc-b'`)
	wd.until("bob gone", `return !(`+hasContact[len("return "):]+`)`, "sip:bob@192.0.2.20:5060")
	wd.until("the log shows unregistered", `return document.getElementById('log').textContent.includes('unregistered')`)

	png := wd.screenshot()
	dir := filepath.Join("..", "..", "testdata", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "liveview.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s", abs)
}

// webDriver speaks the W3C WebDriver protocol to a chromedriver it runs.
type webDriver struct {
	t       *testing.T
	base    string // http://127.0.0.1:port/session/<id>
	browser string
}

// startWebDriver runs chromedriver and a Chromium session with
// chromiumFlags and the flags in extra.
func startWebDriver(t *testing.T, driver, chromium string, extra ...string) *webDriver {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("chromedriver output:\n%s", out.String())
		}
	})
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	wd := &webDriver{t: t}
	siptest.Eventually(t, func() bool {
		var st struct{ Ready bool }
		return wd.call("GET", root+"/status", nil, &st) == nil && st.Ready
	}, "chromedriver ready")

	args := append(append([]string{"--user-data-dir=" + t.TempDir()}, chromiumFlags...), extra...)
	var sess struct{ SessionID string }
	err := wd.call("POST", root+"/session", map[string]any{
		"capabilities": map[string]any{"alwaysMatch": map[string]any{
			"browserName":        "chrome",
			"goog:chromeOptions": map[string]any{"binary": chromium, "args": args},
		}},
	}, &sess)
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	wd.base = root + "/session/" + sess.SessionID
	t.Cleanup(func() { wd.call("DELETE", wd.base, nil, nil) })
	return wd
}

// call makes one WebDriver request; out receives the "value" member.
func (wd *webDriver) call(method, u string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 60 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s %s: %d: %w", method, u, res.StatusCode, err)
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d: %s", method, u, res.StatusCode, env.Value)
	}
	if out != nil {
		return json.Unmarshal(env.Value, out)
	}
	return nil
}

func (wd *webDriver) navigate(u string) {
	wd.t.Helper()
	if err := wd.call("POST", wd.base+"/url", map[string]any{"url": u}, nil); err != nil {
		wd.t.Fatal(err)
	}
}

// exec runs a script in the page and returns its result.
func (wd *webDriver) exec(script string, args ...any) any {
	wd.t.Helper()
	if args == nil {
		args = []any{}
	}
	var v any
	if err := wd.call("POST", wd.base+"/execute/sync", map[string]any{"script": script, "args": args}, &v); err != nil {
		wd.t.Fatal(err)
	}
	return v
}

// until polls a script until it returns true.
func (wd *webDriver) until(what, script string, args ...any) {
	wd.t.Helper()
	siptest.EventuallyWithin(wd.t, 15*time.Second, func() bool { return wd.exec(script, args...) == true }, what)
}

func (wd *webDriver) screenshot() []byte {
	wd.t.Helper()
	var b64 string
	if err := wd.call("GET", wd.base+"/screenshot", nil, &b64); err != nil {
		wd.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatal(err)
	}
	return png
}
