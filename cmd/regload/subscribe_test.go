package main

import (
	"bytes"
	"context"
	"database/sql"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSilentServer: with nothing answering at --server, the subscribe
// phase ends after Timer F with an error naming the server and exit status
// 1, instead of waiting out Timer F once per window of SUBSCRIBEs (here 10
// windows); the SUBSCRIBEs are retransmitted meanwhile (Timer E), and the
// bindings regload wrote are removed.
func TestSilentServer(t *testing.T) {
	saved := defaultTimers
	defaultTimers = sipTimers{t1: 20 * time.Millisecond, t2: 160 * time.Millisecond} // Timer F: 1.28s
	t.Cleanup(func() { defaultTimers = saved })
	timerF := defaultTimers.f()

	// A loopback UDP socket that reads everything and answers nothing.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var subscribes atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("SUBSCRIBE ")) {
				subscribes.Add(1)
			}
		}
	}()
	server := "udp://" + pc.LocalAddr().String()

	const subscriptions, window = 200, 20
	db := filepath.Join(t.TempDir(), "location.db")
	args := []string{"--server", server, "--store", "sqlite:" + db,
		"--subscriptions", strconv.Itoa(subscriptions), "--subscribe-window", strconv.Itoa(window), "--sockets", "2",
		"--changes", "10", "--rate", "100"}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, args, &stdout, &stderr)
	elapsed := time.Since(start)
	t.Logf("regload %s: exit %d after %v\n%s", strings.Join(args, " "), code, elapsed.Round(time.Millisecond), stderr.String())

	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if msg := stderr.String(); !strings.Contains(msg, "no answer from the SIP server at "+server) {
		t.Errorf("stderr does not say that %s did not answer", server)
	}
	if stdout.Len() != 0 {
		t.Errorf("a report after a failed subscribe phase:\n%s", stdout.String())
	}
	// Without the check it takes subscriptions/window Timer Fs.
	if limit := timerF + 3*time.Second; elapsed > limit || elapsed < timerF {
		t.Errorf("took %v; want Timer F (%v) and at most %v", elapsed, timerF, limit)
	}
	// Each SUBSCRIBE of the first window sent and retransmitted a few times
	// (at 20, 40, 80, 160, 160, ... ms), and none of the later ones.
	if n := subscribes.Load(); n < 5*window || n > 64*window {
		t.Errorf("%d SUBSCRIBEs arrived; want the first %d retransmitted (Timer E)", n, window)
	}

	// The bindings were written, then removed.
	if !strings.Contains(stderr.String(), "writing "+strconv.Itoa(subscriptions)+" bindings") {
		t.Errorf("no bindings written")
	}
	sdb, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var rows int
	if err := sdb.QueryRow(`SELECT count(*) FROM location`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("%d bindings left in the store", rows)
	}
}
