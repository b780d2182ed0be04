package notifier

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// Conformance with an independent SIP implementation: each SIPp scenario
// in testdata/sipp runs against a real notifier on loopback UDP, and the
// test asserts SIPp's exit status (0: every call passed, 1: one failed,
// including any check_it match that did not hold or any unexpected
// message). SIPp is Debian's sip-tester.

const sippDir = "../testdata/sipp"

// lookSIPp returns the path of sipp, or skips the test (fails it when
// CI is set, where the conformance suite must not silently disappear).
func lookSIPp(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("sipp")
	if err != nil {
		const msg = "sipp not found: install sip-tester (Debian/Ubuntu) to run the SIPp conformance scenarios"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (required when CI is set)")
		}
		t.Skip(msg)
	}
	return path
}

func TestSIPp(t *testing.T) {
	bin := lookSIPp(t)
	tests := []struct {
		scenario string
		cfg      Config
		// during runs while SIPp does; it may change the bridge.
		during func(t *testing.T, h *harness)
		// after checks the notifier once SIPp has passed.
		after func(t *testing.T, h *harness)
	}{
		{scenario: "bad-event-489.xml"},
		{scenario: "not-acceptable-406.xml"},
		{scenario: "interval-too-brief-423.xml", cfg: Config{MinExpires: 60 * time.Second}},
		{scenario: "unknown-dialog-481.xml"},
		{scenario: "unsupported-body-415.xml"},
		{scenario: "fetch.xml", after: noSubscriptions},
		{scenario: "unsubscribe.xml", after: noSubscriptions},
		{scenario: "timeout.xml", cfg: Config{MinExpires: time.Second}, after: noSubscriptions},
		{
			scenario: "notify-481.xml",
			during: func(t *testing.T, h *harness) {
				// Once the 481 removed the subscription, change the AOR:
				// a NOTIFY now would reach SIPp during its pause.
				siptest.Eventually(t, func() bool { return h.n.Counters().Removed.Load() == 1 }, "subscription removed after 481")
				c := fresh(tAlice)
				c.Key, c.URI, c.CallID = "uloc-sipp", "sip:alice@192.0.2.77", "sipp"
				apply(t, h, c)
			},
			after: noSubscriptions,
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			h := newHarness(t, tt.cfg, tAlice)
			out, err := runSIPp(t, bin, tt.scenario, h.addr("udp"), func() {
				if tt.during != nil {
					tt.during(t, h)
				}
			})
			if err != nil {
				t.Fatalf("sipp %s: %v\n%s", tt.scenario, err, out)
			}
			if tt.after != nil {
				tt.after(t, h)
			}
		})
	}
}

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	return port
}

func noSubscriptions(t *testing.T, h *harness) {
	t.Helper()
	siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "no subscription left")
}

// runSIPp runs one scenario as a UAC against server over UDP, one call,
// calls during while it runs, and returns its output (with the error
// log) and an error unless it exited 0.
func runSIPp(t *testing.T, bin, scenario, server string, during func()) ([]byte, error) {
	t.Helper()
	path := scenario
	if !filepath.IsAbs(path) {
		var err error
		if path, err = filepath.Abs(filepath.Join(sippDir, scenario)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, server,
		"-sf", path,
		"-m", "1", // one call
		"-t", "u1", // UDP, one socket
		"-i", "127.0.0.1", "-p", freeUDPPort(t), // not 5060, which SIPp would take
		"-nostdin",
		"-timeout", "20s", "-timeout_error",
		"-recv_timeout", "5000",
		// An unexpected message aborts the call (and fails it); nothing
		// else is done on SIPp's own initiative.
		"-default_behaviors", "abortunexp",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
	)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sipp: %v", err)
	}
	during()
	err := cmd.Wait()
	if errLog, _ := os.ReadFile(filepath.Join(dir, "errors.log")); len(errLog) > 0 {
		out.WriteString("\n--- errors.log ---\n")
		out.Write(errLog)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out.Bytes(), errors.New("exit status " + exit.String())
	}
	return out.Bytes(), err
}

// TestSIPpCanFail proves the harness fails: a scenario that expects what
// regbridge does not do (a 200 to an unknown package, and a NOTIFY that
// regbridge does not send after a 500) makes SIPp exit non-zero.
func TestSIPpCanFail(t *testing.T) {
	bin := lookSIPp(t)
	h := newHarness(t, Config{}, tAlice)
	dir := t.TempDir()
	wrong, err := os.ReadFile(filepath.Join(sippDir, "bad-event-489.xml"))
	if err != nil {
		t.Fatal(err)
	}
	wrong = bytes.Replace(wrong, []byte(`<recv response="489">`), []byte(`<recv response="200">`), 1)
	path := filepath.Join(dir, "wrong.xml")
	if err := os.WriteFile(path, wrong, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runSIPp(t, bin, path, h.addr("udp"), func() {})
	if err == nil {
		t.Fatalf("sipp passed a scenario regbridge cannot satisfy:\n%s", out)
	}
	if !bytes.Contains(out, []byte("Aborting call on unexpected message")) || !bytes.Contains(out, []byte("while expecting '200'")) {
		t.Errorf("sipp failed for another reason than the 489:\n%s", out)
	}

	// A NOTIFY arriving during the pause of notify-481.xml fails it: with
	// the first NOTIFY answered 500 instead, the subscription survives and
	// the change is notified.
	survive, err := os.ReadFile(filepath.Join(sippDir, "notify-481.xml"))
	if err != nil {
		t.Fatal(err)
	}
	survive = bytes.Replace(survive, []byte("SIP/2.0 481 Call/Transaction Does Not Exist"), []byte("SIP/2.0 500 Server Internal Error"), 1)
	path = filepath.Join(dir, "survive.xml")
	if err := os.WriteFile(path, survive, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runSIPp(t, bin, path, h.addr("udp"), func() {
		siptest.Eventually(t, func() bool { return h.n.Counters().Failed.Load() == 1 }, "NOTIFY answered 500")
		h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
	})
	if err == nil {
		t.Fatalf("sipp passed although a NOTIFY arrived during its pause:\n%s", out)
	}
	if !bytes.Contains(out, []byte("while pausing")) || !bytes.Contains(out, []byte("NOTIFY")) {
		t.Errorf("sipp failed for another reason than the NOTIFY during its pause:\n%s", out)
	}
}
