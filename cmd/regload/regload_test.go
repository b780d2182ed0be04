package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildRegbridge compiles cmd/regbridge into dir.
func buildRegbridge(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "regbridge")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/regbridge/regbridge/cmd/regbridge").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSmoke runs regload against a real regbridge it spawns, small enough
// for any machine, and checks correctness only: every subscription made,
// every change notified to every watcher once, versions without gaps. It
// asserts nothing about speed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs regbridge")
	}
	bin := buildRegbridge(t, t.TempDir())
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"udp", []string{"--subscriptions", "200", "--changes", "200", "--rate", "400"}},
		{"tcp fan-out", []string{"--server", "tcp://127.0.0.1:1", "--sockets", "3",
			"--aors", "20", "--watchers-per-aor", "10", "--changes", "200", "--rate", "400"}},
		{"tls fan-out", []string{"--server", "tls://127.0.0.1:1", "--sockets", "3",
			"--aors", "20", "--watchers-per-aor", "10", "--changes", "200", "--rate", "400"}},
		{"ws fan-out", []string{"--server", "ws://127.0.0.1:1", "--sockets", "3",
			"--aors", "20", "--watchers-per-aor", "10", "--changes", "200", "--rate", "400"}},
		{"wss fan-out", []string{"--server", "wss://127.0.0.1:1", "--sockets", "3",
			"--aors", "20", "--watchers-per-aor", "10", "--changes", "200", "--rate", "400"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--spawn", bin, "--json", "--drain", "10s"}, tc.args...)
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			code := run(ctx, args, &stdout, &stderr)
			t.Logf("regload %s\n%s", strings.Join(args, " "), stderr.String())
			var rep report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("exit %d, no JSON report: %v\n%s", code, err, stdout.String())
			}
			c := &rep.Correctness
			switch {
			case rep.Subscribe.Active != 200 || rep.Subscribe.Failed != 0:
				t.Errorf("subscriptions: %d active, %d failed %v", rep.Subscribe.Active, rep.Subscribe.Failed, rep.Subscribe.Statuses)
			case rep.Changes.Written != 200:
				t.Errorf("changes written: %d of 200 (%s)", rep.Changes.Written, rep.Changes.FirstError)
			case c.Expected != 200*200/uint64(rep.AORs):
				t.Errorf("expected notifications %d, want %d", c.Expected, 200*200/rep.AORs)
			}
			if c.Lost != 0 || c.Duplicates != 0 || c.VersionGaps != 0 {
				t.Errorf("lost %d, duplicates %d, version gaps %d", c.Lost, c.Duplicates, c.VersionGaps)
			}
			if c.WrongAOR != 0 || c.WrongChange != 0 || c.BadMessages != 0 || c.Unknown != 0 || c.Ended != 0 {
				t.Errorf("misdelivered: %+v", c.tally)
			}
			if rep.Latency.Count == 0 || c.ChangeNotifies == 0 {
				t.Errorf("no latency samples")
			}
			if !rep.OK || code != 0 {
				t.Errorf("ok=%v exit %d", rep.OK, code)
			}
			if t.Failed() {
				t.Logf("report:\n%s", stdout.String())
			}
		})
	}
}

// TestUsage: bad flags exit 2 with a message naming the flag, and a remote
// target is refused.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "sqlite:x.db", "--server", "udp://192.0.2.1:5065"}, "--allow-remote"},
		{[]string{"--store", "sqlite:x.db", "--sockets", "0"}, "--sockets"},
		{[]string{"--spawn", "x", "--aors", "10", "--watchers-per-aor", "5", "--subscriptions", "3"}, "--subscriptions"},
		{[]string{"--store", "nosuch://x"}, "unknown scheme"},
		{[]string{"--subscriptions", "10"}, "--store is required"},
	} {
		var out, errOut bytes.Buffer
		code := run(t.Context(), tc.args, &out, &errOut)
		if tc.want == "unknown scheme" {
			if code != 1 || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("%v: exit %d, %q", tc.args, code, errOut.String())
			}
			continue
		}
		if code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}
