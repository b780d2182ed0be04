package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge/httpapi"
)

// runCmd runs one regbridge subcommand as the binary would, with env as
// its environment.
func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code = run(ctx, args, mapEnv(env), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestRegistrationsCommand reads a running instance's contacts the way an
// operator would: text like kamctl ul show, --json, one AOR in the short
// forms, the admin token from the environment.
func TestRegistrationsCommand(t *testing.T) {
	s := startServer(t, "", map[string]string{"REGBRIDGE_ADMIN_TOKEN": "s3cret"})
	s.insert(t, "uloc-1", "alice", "sip:alice@10.0.0.2:5060", time.Now().Add(time.Hour), "call-1@phone", 42)
	s.exec(t, `UPDATE location SET received = 'sip:198.51.100.7:40000;transport=tcp', q = 0.9,
		instance = '<urn:uuid:00000000-0000-1000-8000-000a95a0e128>' WHERE ruid = 'uloc-1'`)
	s.insert(t, "uloc-2", "bob", "sips:bob@10.0.0.3", time.Now().Add(30*time.Minute), "call-2@phone", 1)
	env := map[string]string{"REGBRIDGE_HTTP_LISTEN": s.http, "REGBRIDGE_ADMIN_TOKEN": "s3cret", "REGBRIDGE_DOMAIN": "example.com"}
	waitFor(t, "both AORs", func() bool {
		_, out, _ := runCmd(t, env, "registrations")
		return strings.Contains(out, "2 AORs, 2 contacts")
	})

	code, out, stderr := runCmd(t, env, "registrations")
	t.Logf("regbridge registrations:\n%s", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"AOR: sip:alice@example.com\n\tContact: sip:alice@10.0.0.2:5060 Q=0.9\n",
		"\t\tState: active (registered)\n", "\t\tReceived: sip:198.51.100.7:40000;transport=tcp\n",
		"\t\tTransport: tcp\n", "\t\tCall-ID: call-1@phone\n", "\t\tCSeq: 42\n", "\t\tUser-Agent: e2e <phone> & \"co\"\n",
		"\t\tInstance: <urn:uuid:00000000-0000-1000-8000-000a95a0e128>\n",
		"AOR: sip:bob@example.com\n\tContact: sips:bob@10.0.0.3 Q=\n", "\t\tTransport: tls\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := len(regexp.MustCompile(`\t\tExpires: (59m5\ds|1h0m0s|29m5\ds|30m0s) \(at 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d `).FindAllString(out, -1)); n != 2 {
		t.Errorf("want 2 Expires lines as time left and date, got %d", n)
	}

	for _, arg := range []string{"alice", "alice@example.com", "sip:alice@example.com"} {
		code, out, stderr := runCmd(t, env, "registrations", "--json", arg)
		var regs []httpapi.Registration
		if code != 0 || json.Unmarshal([]byte(out), &regs) != nil || len(regs) != 1 || len(regs[0].Contacts) != 1 {
			t.Fatalf("registrations --json %s: exit %d, %s%s", arg, code, out, stderr)
		}
		c := regs[0].Contacts[0]
		if regs[0].AOR != "sip:alice@example.com" || c.CallID != "call-1@phone" || c.Transport != "tcp" ||
			c.Expires == nil || *c.Expires < 3500 || c.Q == nil || *c.Q != 0.9 {
			t.Errorf("registrations --json %s: %s", arg, out)
		}
	}

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"unknown AOR", env, []string{"registrations", "carol"}, 1, "sip:carol@example.com has no active contacts"},
		{"wrong token", map[string]string{"REGBRIDGE_HTTP_LISTEN": s.http}, []string{"registrations", "--token", "nope"}, 1, "pass --token or set REGBRIDGE_ADMIN_TOKEN"},
		{"nothing listening", env, []string{"registrations", "--http", "127.0.0.1:1"}, 1, "no answer from http://127.0.0.1:1: is regbridge running"},
		{"two AORs", env, []string{"registrations", "alice", "bob"}, 2, "want at most one AOR"},
		{"bad address", env, []string{"subscriptions", "--http", "localhost"}, 2, "--http \"localhost\": want host:port"},
		{"help", env, []string{"registrations", "-h"}, 0, "Usage: regbridge registrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.stderr)
			}
		})
	}
}

// TestSubscriptionsCommand lists a live subscription made by regbridge
// watch over TCP: AOR, watcher, source address, transport, time left.
func TestSubscriptionsCommand(t *testing.T) {
	s := startServer(t, "", nil)
	s.insert(t, "uloc-1", "alice", "sip:alice@10.0.0.2:5060", time.Now().Add(time.Hour), "call-1@phone", 1)
	w := startRunWatch(t, "--server", "tcp://"+s.sip, "--expires", "600s", "sip:alice@example.com")
	waitFor(t, "first NOTIFY", func() bool { return strings.Contains(w.stdout.String(), "NOTIFY") })
	env := map[string]string{"REGBRIDGE_HTTP_LISTEN": s.http, "REGBRIDGE_DOMAIN": "example.com"}

	code, out, stderr := runCmd(t, env, "subscriptions")
	t.Logf("regbridge subscriptions:\n%s", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "AOR ") || lines[2] != "1 subscription" {
		t.Fatalf("want header, one row, count:\n%s", out)
	}
	row := strings.Fields(lines[1])
	if len(row) != 7 || row[0] != "sip:alice@example.com" || row[1] != "sip:watch@127.0.0.1" ||
		!strings.HasPrefix(row[2], "127.0.0.1:") || row[3] != "tcp" || (row[4] != "10m0s" && !strings.HasPrefix(row[4], "9m5")) || strings.Trim(row[5], "0123456789") != "" {
		t.Errorf("row %q", lines[1])
	}

	code, out, _ = runCmd(t, env, "subscriptions", "--json", "alice")
	var subs []httpapi.Subscription
	if code != 0 || json.Unmarshal([]byte(out), &subs) != nil || len(subs) != 1 || subs[0].AOR != "sip:alice@example.com" {
		t.Errorf("subscriptions --json alice: exit %d, %s", code, out)
	}
	code, out, _ = runCmd(t, env, "subscriptions", "bob")
	if code != 0 || out != "AOR  WATCHER  FROM  TRANSPORT  EXPIRES IN  VERSION  CALL-ID\n0 subscriptions\n" {
		t.Errorf("subscriptions bob: exit %d, %q", code, out)
	}
}
