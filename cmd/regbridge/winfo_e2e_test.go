package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestWinfoAcrossInstances: two regbridge instances share one Redis
// (REGBRIDGE_STATE) and one store. `regbridge watch --winfo` subscribes
// to reg.winfo at instance Y; a reg subscriber coming to instance X and
// going again shows up in it as a watcher active, then terminated with
// event timeout, with one id; Y's HTTP API lists X's watcher meanwhile,
// and not after.
func TestWinfoAcrossInstances(t *testing.T) {
	state, _, _ := redisState(t)
	db := filepath.Join(t.TempDir(), "location.db")
	env := func(id string) map[string]string {
		return map[string]string{"REGBRIDGE_STATE": state, "REGBRIDGE_STATE_LEASE": "1s", "REGBRIDGE_INSTANCE_ID": id}
	}
	x := startServer(t, db, env("x"))
	y := startServer(t, db, env("y"))

	w := startRunWatch(t, "--winfo", "--server", "udp://"+y.sip, "sip:alice@example.com")
	waitFor(t, "the full winfo document", func() bool {
		return strings.Contains(w.stdout.String(), "NOTIFY version=0 full")
	})

	p := siptest.New(t, "udp", x.sip)
	p.FromName = "Desk <phone>"
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("reg SUBSCRIBE at x: %d", res.StatusCode)
	}
	p.Next()
	active := regexp.MustCompile(`(?m)^    watcher (w[0-9a-f]{16})  active  subscribe  sip:watcher@127\.0\.0\.1  "Desk <phone>"  subscribed=\d+s  expires=\d+$`)
	waitFor(t, "the watcher active at y", func() bool { return active.MatchString(w.stdout.String()) })
	id := active.FindStringSubmatch(w.stdout.String())[1]

	list := func(s *server) []map[string]any {
		res, err := http.Get("http://" + s.http + "/v1/registrations/sip:alice@example.com/watchers")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Watchers []map[string]any `json:"watchers"`
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != 200 {
			t.Fatalf("GET watchers: %d %v", res.StatusCode, err)
		}
		return body.Watchers
	}
	if ws := list(y); len(ws) != 1 || ws[0]["id"] != id || ws[0]["package"] != "reg" || ws[0]["display_name"] != "Desk <phone>" {
		t.Fatalf("y lists %v, want watcher %s", ws, id)
	}

	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
	p.Next()
	ended := "    watcher " + id + "  terminated  timeout  sip:watcher@127.0.0.1  \"Desk <phone>\""
	waitFor(t, "the watcher terminated at y", func() bool { return strings.Contains(w.stdout.String(), ended) })
	if ws := list(y); len(ws) != 0 {
		t.Fatalf("y still lists %v", ws)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("watch exit %d, stderr:\n%s", code, w.stderr.String())
	}
	out := w.stdout.String()
	for _, want := range []string{"NOTIFY version=1 partial", "NOTIFY version=2 partial", "subscription=terminated;reason=timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("regbridge watch --winfo at y:\n%s", out)
}
