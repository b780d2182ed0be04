package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// startWatchCmd runs `regbridge watch args...` through run(), as the
// binary does, with env as its environment.
func startWatchCmd(t *testing.T, env map[string]string, args ...string) *watchRun {
	t.Helper()
	return startRunning(t, func(ctx context.Context, stdout, stderr io.Writer) int {
		return run(ctx, append([]string{"watch"}, args...), mapEnv(env), stdout, stderr)
	})
}

// TestWatchShortAOR: alice@example.com and alice (with REGBRIDGE_DOMAIN or
// --domain) subscribe to sip:alice@example.com on a running instance.
func TestWatchShortAOR(t *testing.T) {
	s := startServer(t, "", nil)
	s.insert(t, "uloc-1", "alice", "sip:alice@10.0.0.2:5060", time.Now().Add(time.Hour), "call-1@phone", 1)
	server := "udp://" + s.sip
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"user@domain", nil, []string{"--server", server, "alice@example.com"}},
		{"user with REGBRIDGE_DOMAIN", map[string]string{"REGBRIDGE_DOMAIN": "example.com"}, []string{"--server", server, "alice"}},
		{"user with --domain", map[string]string{"REGBRIDGE_DOMAIN": "other.example"}, []string{"alice", "--domain", "example.com", "--server", server}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWatchCmd(t, tt.env, tt.args...)
			waitFor(t, "alice's contact", func() bool {
				return strings.Contains(w.stdout.String(), "  sip:alice@example.com  registration=active\n    contact ")
			})
			if code := w.stop(t); code != 0 {
				t.Errorf("exit %d: %s", code, w.stderr.String())
			}
		})
	}
	w := startWatchCmd(t, nil, "--server", server, "alice")
	if code := w.wait(t); code != 2 || !strings.Contains(w.stderr.String(), `<aor> "alice" has no domain`) {
		t.Errorf("alice without a domain: exit %d, %q", code, w.stderr.String())
	}
}

// TestWatchRaw prints each NOTIFY as it came: start line, headers, XML.
func TestWatchRaw(t *testing.T) {
	s := startServer(t, "", nil)
	s.insert(t, "uloc-1", "alice", "sip:alice@10.0.0.2:5060", time.Now().Add(time.Hour), "call-1@phone", 1)
	w := startWatchCmd(t, nil, "--raw", "--server", "tcp://"+s.sip, "sip:alice@example.com")
	waitFor(t, "raw NOTIFY with the contact", func() bool {
		return strings.Contains(w.stdout.String(), "<uri>sip:alice@10.0.0.2:5060</uri>")
	})
	out := w.stdout.String()
	for _, want := range []string{
		"NOTIFY sip:watch@127.0.0.1", "\r\nEvent: reg\r\n", "\r\nSubscription-State: active;expires=",
		"\r\nContent-Type: application/reginfo+xml\r\n", "\r\n\r\n<?xml", `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("raw output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "registration=active") {
		t.Errorf("raw output has the text rendering too:\n%s", out)
	}
}

// TestWatchNoAnswer fails fast, naming the address, when nothing listens:
// over UDP after the answer timeout instead of Timer B's 32 s, over TCP
// at once.
func TestWatchNoAnswer(t *testing.T) {
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			t.Parallel()
			server := fmt.Sprintf("%s://127.0.0.1:%d", tp, freePort(t))
			start := time.Now()
			w := startWatchCmd(t, nil, "--server", server, "alice@example.com")
			code := w.wait(t)
			took := time.Since(start)
			want := "regbridge watch: no answer from " + server
			if code != 1 || !strings.Contains(w.stderr.String(), want) ||
				!strings.Contains(w.stderr.String(), "is regbridge running and listening there?") {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, w.stderr.String(), want)
			}
			if strings.Contains(w.stderr.String(), "Timer_B") || took > 8*time.Second {
				t.Errorf("took %v, stderr %q", took, w.stderr.String())
			}
		})
	}
}

// TestWatchResubscribesAfterRestart: regbridge stopping ends the
// subscription (deactivated); watch says so, subscribes again to the
// restarted instance on the same port, says that too, and goes on
// printing its NOTIFYs.
func TestWatchResubscribesAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "location.db")
	port := freePort(t)
	listen := map[string]string{"REGBRIDGE_SIP_LISTEN": fmt.Sprintf("udp://127.0.0.1:%d", port)}
	a := startServer(t, path, listen)
	a.insert(t, "uloc-1", "alice", "sip:alice@10.0.0.2:5060", time.Now().Add(time.Hour), "call-1@phone", 1)
	server := fmt.Sprintf("udp://127.0.0.1:%d", port)
	w := startWatchCmd(t, nil, "--server", server, "alice@example.com")
	waitFor(t, "first NOTIFY", func() bool { return strings.Contains(w.stdout.String(), "contact ") })

	if code := a.stop(); code != 0 {
		t.Fatalf("first instance exited %d", code)
	}
	waitFor(t, "the end announced", func() bool {
		return strings.Contains(w.stderr.String(), "regbridge watch: subscription ended (the notifier ended it: reason=deactivated); subscribing again in ")
	})
	b := startServer(t, path, listen)
	waitUntil(t, 15*time.Second, "re-subscription announced", func() bool {
		return strings.Contains(w.stderr.String(), "regbridge watch: re-subscribed to sip:alice@example.com at "+server+" (new dialog, Call-ID ")
	})
	b.insert(t, "uloc-2", "alice", "sip:alice@10.0.0.3:5060", time.Now().Add(time.Hour), "call-2@phone", 1)
	waitFor(t, "NOTIFY from the new instance", func() bool { return strings.Contains(w.stdout.String(), "sip:alice@10.0.0.3:5060") })
	t.Logf("watch stderr:\n%s", w.stderr.String())
	if code := w.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestWatchRetriesAfter503: while regbridge cannot load its store it
// answers SUBSCRIBE with 503 and Retry-After: 1; watch says so, keeps
// asking, and subscribes once the store is back.
func TestWatchRetriesAfter503(t *testing.T) {
	db := sqltest.Postgres(t)
	db.Exec(t, "CREATE TABLE loc (id INT, ruid VARCHAR(64), username VARCHAR(64), domain VARCHAR(64), contact VARCHAR(512), received VARCHAR(128), path VARCHAR(512), expires TIMESTAMP, q REAL, callid VARCHAR(255), cseq INT, last_modified TIMESTAMP, user_agent VARCHAR(255), instance VARCHAR(255), reg_id INT)")
	db.Exec(t, `INSERT INTO loc (id, ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent, reg_id)
		VALUES (1, 'uloc-1', 'alice', 'sip:alice@192.0.2.1', '2030-01-15 12:00:00', -1, 'c', 1, '2026-01-15 12:00:00', 'ua', 0)`)
	proxy := sourcetest.NewProxy(t, db.Endpoint.Addr)
	proxy.Break()
	sip, web := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := map[string]string{
		"REGBRIDGE_SOURCE":        fmt.Sprintf("kamailio+postgres://%s@%s/%s?table=loc&sslmode=disable", db.Endpoint.User, proxy.Addr(), db.Name()),
		"REGBRIDGE_SIP_LISTEN":    "udp://" + sip,
		"REGBRIDGE_HTTP_LISTEN":   web,
		"REGBRIDGE_POLL_INTERVAL": "20ms",
		"REGBRIDGE_DOMAIN":        "example.com",
	}
	srv := startRunning(t, func(ctx context.Context, stdout, stderr io.Writer) int {
		return run(ctx, nil, mapEnv(env), stderr, stderr)
	})
	waitFor(t, "/healthz", func() bool {
		res, err := http.Get("http://" + web + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	w := startWatchCmd(t, nil, "--server", "udp://"+sip, "alice@example.com")
	waitFor(t, "the 503 announced", func() bool {
		return strings.Contains(w.stderr.String(), "regbridge watch: SUBSCRIBE answered 503 Registrations Not Loaded Yet: retrying in 1s as its Retry-After asks\n")
	})
	if w.stdout.String() != "" {
		t.Errorf("output before the store loaded: %q", w.stdout.String())
	}
	proxy.Restore()
	waitUntil(t, 15*time.Second, "alice's contact after the store came back", func() bool {
		return strings.Contains(w.stdout.String(), "sip:alice@192.0.2.1")
	})
	if code := w.stop(t); code != 0 {
		t.Errorf("watch exit %d: %s", code, w.stderr.String())
	}
	if code := srv.stop(t); code != 0 {
		t.Errorf("regbridge exit %d: %s", code, srv.stderr.String())
	}
}
