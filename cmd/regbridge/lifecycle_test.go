package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestShutdownEndsEverySubscription: on SIGTERM (the context main
// cancels) every subscriber has received its final NOTIFY
// terminated;reason=deactivated before run returns, and the exit code is 0.
func TestShutdownEndsEverySubscription(t *testing.T) {
	s := startServer(t, "", nil)
	s.insert(t, "uloc-1", "user0", "sip:user0@192.0.2.10", time.Now().Add(time.Hour), "c1", 1)
	siptest.Eventually(t, func() bool {
		return s.call(t, "GET", "/v1/registrations/sip:user0@example.com", "", "", nil) == 200
	}, "the contact loaded")
	var peers []*siptest.Peer
	for i, network := range []string{"udp", "udp", "udp", "tcp", "tcp", "tcp"} {
		p := siptest.New(t, network, s.sip)
		aor := fmt.Sprintf("sip:user%d@example.com", i%3)
		if res := p.Subscribe(aor, siptest.Header("Event", "reg")); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE %s over %s: %d", aor, network, res.StatusCode)
		}
		p.Check(p.Next(), 0, "full", "active")
		peers = append(peers, p)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	for i, p := range peers {
		// Already received: the notifier waited for each final transaction.
		n := p.NextWithin(10 * time.Millisecond)
		if !strings.HasPrefix(n.SubscriptionState, "terminated;reason=deactivated") || n.Doc.State != "full" {
			t.Errorf("peer %d: final NOTIFY %q %s", i, n.SubscriptionState, n.Doc.State)
		}
	}
	if !strings.Contains(s.log.String(), "ending subscriptions") {
		t.Errorf("shutdown not logged")
	}
}

// TestRefusesOpenAPIWithoutToken: an HTTP listener other hosts can reach
// needs REGBRIDGE_ADMIN_TOKEN; without it start-up stops with exit 2.
func TestRefusesOpenAPIWithoutToken(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		code int
	}{
		{name: "every address, no token", env: map[string]string{"REGBRIDGE_HTTP_LISTEN": "0.0.0.0:9065"}, code: 2},
		{name: "LAN address, no token", env: map[string]string{"REGBRIDGE_HTTP_LISTEN": "192.0.2.1:9065"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), nil, mapEnv(tt.env), &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut.String())
			}
			for _, want := range []string{"REGBRIDGE_ADMIN_TOKEN", "REGBRIDGE_HTTP_LISTEN"} {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("message %q does not name %s", errOut.String(), want)
				}
			}
		})
	}
	// With a token the same listener is accepted.
	cfg, err := loadConfig(t.Context(), mapEnv(map[string]string{"REGBRIDGE_HTTP_LISTEN": "0.0.0.0:9065", "REGBRIDGE_ADMIN_TOKEN": "x"}))
	if err != nil || cfg.API.AdminToken != "x" {
		t.Fatalf("with a token: %v", err)
	}
}

// syncEnv is an environment a test may change while regbridge runs.
type syncEnv struct {
	mu sync.Mutex
	m  map[string]string
}

func (e *syncEnv) Lookup(key string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.m[key]
	return v, ok
}

func (e *syncEnv) set(k, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[k] = v
}

func mapEnv(m map[string]string) *syncEnv { return &syncEnv{m: m} }

// TestLogLevelReload: POST /v1/log-level changes the level at once;
// SIGHUP sets it from REGBRIDGE_LOG_LEVEL again.
func TestLogLevelReload(t *testing.T) {
	env := mapEnv(nil)
	s := startServerEnv(t, "", env, map[string]string{"REGBRIDGE_LOG_LEVEL": "info"})
	level := func() string {
		var l struct{ Level string }
		s.call(t, "GET", "/v1/log-level", "", "", &l)
		return l.Level
	}
	if got := level(); got != "info" {
		t.Fatalf("level %q", got)
	}
	var res struct{ Level, Previous string }
	if code := s.call(t, "POST", "/v1/log-level", "", `{"level":"debug"}`, &res); code != 200 || res.Level != "debug" || res.Previous != "info" {
		t.Fatalf("POST: %d %+v", code, res)
	}
	if got := level(); got != "debug" {
		t.Fatalf("after POST: %q", got)
	}
	env.set("REGBRIDGE_LOG_LEVEL", "warn")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	siptest.Eventually(t, func() bool { return level() == "warn" }, "level warn after SIGHUP")
	// The level changes before the line saying so is written.
	siptest.Eventually(t, func() bool { return strings.Contains(s.log.String(), "log level reloaded") }, "the reload logged")
}

func TestVersionCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"version"}, mapEnv(nil), &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := out.String(); !strings.HasPrefix(got, "regbridge ") || !strings.Contains(got, runtime.Version()) {
		t.Errorf("version output %q", got)
	}
}

// TestShutdownRefusesNewSubscriptions: while the final NOTIFYs drain, a
// new SUBSCRIBE gets 503 (so the subscriber tries another instance), and
// the drain ends as soon as the last final NOTIFY is answered.
func TestShutdownRefusesNewSubscriptions(t *testing.T) {
	s := startServer(t, "", map[string]string{"REGBRIDGE_SHUTDOWN_DRAIN": "10s"})
	hold := make(chan struct{})
	p := siptest.New(t, "udp", s.sip)
	p.Answer(func(i int) int {
		if i == 1 { // the final NOTIFY: answered when the test says
			<-hold
		}
		return 200
	})
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	p.Next()
	exit := make(chan int, 1)
	go func() { exit <- s.stop() }()
	if n := p.Next(); !strings.HasPrefix(n.SubscriptionState, "terminated;reason=deactivated") {
		t.Fatalf("final NOTIFY %q", n.SubscriptionState)
	}
	q := siptest.New(t, "udp", s.sip)
	if res := q.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg")); res.StatusCode != 503 {
		t.Errorf("SUBSCRIBE during the drain: %d, want 503", res.StatusCode)
	}
	released := time.Now()
	close(hold)
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit code %d", code)
		}
		if d := time.Since(released); d > 3*time.Second {
			t.Errorf("run returned %v after the last final NOTIFY was answered", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return")
	}
}

// TestBadOperationsConfig: the webhook settings are checked at start-up
// like every other, and a URL's credentials are never echoed.
func TestBadOperationsConfig(t *testing.T) {
	tests := []struct {
		name, key, value, want string
	}{
		{"webhook URL scheme", "REGBRIDGE_WEBHOOK_URLS", "ftp://user:pw-secret@x/y", "REGBRIDGE_WEBHOOK_URLS"},
		{"webhook URL without host", "REGBRIDGE_WEBHOOK_URLS", "http:///path", "REGBRIDGE_WEBHOOK_URLS"},
		{"webhook queue", "REGBRIDGE_WEBHOOK_QUEUE", "0", "REGBRIDGE_WEBHOOK_QUEUE"},
		{"webhook queue not a number", "REGBRIDGE_WEBHOOK_QUEUE", "many", "REGBRIDGE_WEBHOOK_QUEUE"},
		{"webhook timeout", "REGBRIDGE_WEBHOOK_TIMEOUT", "-1s", "REGBRIDGE_WEBHOOK_TIMEOUT"},
		{"webhook timeout not a duration", "REGBRIDGE_WEBHOOK_TIMEOUT", "soon", "REGBRIDGE_WEBHOOK_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), nil, mapEnv(map[string]string{tt.key: tt.value}), &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s", code, errOut.String(), tt.want)
			}
			if strings.Contains(errOut.String(), "pw-secret") {
				t.Errorf("stderr echoes a password: %q", errOut.String())
			}
		})
	}
}
