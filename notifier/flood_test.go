package notifier

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestSubscribeFloodHoldsNothing: a flood of SUBSCRIBEs with distinct
// branches from one source outside the open networks is answered (503
// from the per-source rate, 403 for the few the rate lets through), and
// the server holds a transaction only for those the rate let through:
// the refusals cost no table entry and no goroutine, so what a flood
// holds does not grow with its packet count.
func TestSubscribeFloodHoldsNothing(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	h.n.SetGuards(guardsFromEnv(t, map[string]string{"OPEN_NETWORKS": "none"}))
	raw := newRawPeer(t)
	local := raw.conn.LocalAddr().String()
	const flood = 3000
	codes := map[string]int{}
	for i := range flood {
		got := raw.exchange(h.addr("udp"), rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\n", 50000+i), 2*time.Second)
		code, _, _ := strings.Cut(got, " ")
		codes[code]++
	}
	// The default source burst is 20; a few more tokens come back while
	// the flood runs (5/s).
	if codes["503"] < flood-100 || codes["503"]+codes["403"] != flood {
		t.Fatalf("responses to %d SUBSCRIBEs: %v; want 503 for all but a few 403", flood, codes)
	}
	if held := h.n.udpSrv.len(); held > codes["403"] {
		t.Fatalf("%d SUBSCRIBE transactions held after the flood, want at most the %d admitted by the rate", held, codes["403"])
	}
}

// TestSubscribeTransactionCap: past REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS
// held transactions, a new SUBSCRIBE gets 503 with Retry-After without a
// transaction, and is counted; once Timer J frees the table, SUBSCRIBEs
// are served again.
func TestSubscribeTransactionCap(t *testing.T) {
	const capacity = 50
	h := newHarness(t, Config{MaxTransactions: capacity}, tAlice)
	raw := newRawPeer(t)
	local := raw.conn.LocalAddr().String()
	fetch := func(i int) string { // Expires 0: a fetch, answered 200
		return raw.exchange(h.addr("udp"), rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nExpires: 0\r\n", 60000+i), 2*time.Second)
	}
	codes := map[string]int{}
	for i := range 3 * capacity {
		code, _, _ := strings.Cut(fetch(i), " ")
		codes[code]++
	}
	if codes["200"] != capacity || codes["503"] != 2*capacity {
		t.Fatalf("responses: %v, want %d 200 and %d 503", codes, capacity, 2*capacity)
	}
	if held := h.n.udpSrv.len(); held != capacity {
		t.Fatalf("%d transactions held, want %d", held, capacity)
	}
	if got := h.n.Counters().Overloaded.Load(); got != 2*capacity {
		t.Fatalf("%d SUBSCRIBEs counted as refused for overload, want %d", got, 2*capacity)
	}
	h.n.udpSrv.sweepAt(time.Now().Add(time.Hour)) // Timer J, for all
	if got := fetch(1000); !strings.HasPrefix(got, "200") {
		t.Fatalf("after Timer J: %q, want 200", got)
	}
}

// TestSubscribeHandlersBounded: SUBSCRIBEs whose handling is slow (a
// credential store that hangs) occupy at most maxHandling goroutines;
// the rest get 503 at once instead of a goroutine each.
func TestSubscribeHandlersBounded(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	release := make(chan struct{})
	srv := h.n.udpSrv
	srv.mu.Lock() // the listener's reader is running
	handle := srv.handle
	srv.handle = func(req *sip.Request, tx sip.ServerTransaction) {
		<-release
		handle(req, tx)
	}
	srv.maxHandling = 10
	srv.mu.Unlock()
	baseline := runtime.NumGoroutine()
	raw := newRawPeer(t)
	local := raw.conn.LocalAddr().String()
	server := h.addr("udp")
	for i := range 30 {
		raw.send(server, rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nExpires: 0\r\n", 70000+i))
	}
	for i := range 20 {
		if got := raw.next(2 * time.Second); !strings.HasPrefix(got, "503") {
			t.Fatalf("response %d while every handler is busy: %q, want 503", i, got)
		}
	}
	if got := runtime.NumGoroutine(); got > baseline+10+8 {
		t.Errorf("%d goroutines with 10 handlers busy, want about %d", got, baseline+10)
	}
	close(release)
	for i := range 10 {
		if got := raw.next(2 * time.Second); !strings.HasPrefix(got, "200") {
			t.Fatalf("response %d once the handlers go on: %q, want 200", i, got)
		}
	}
	p := siptest.New(t, "udp", server)
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE after the burst: %d", res.StatusCode)
	}
}

// send sends one datagram to to.
func (p *rawPeer) send(to, msg string) {
	addr, _ := net.ResolveUDPAddr("udp", to)
	p.conn.WriteToUDP([]byte(msg), addr)
}

// next returns the status line of the next response, or "" when none
// comes within d.
func (p *rawPeer) next(d time.Duration) string {
	select {
	case r := <-p.responses:
		return r
	case <-time.After(d):
		return ""
	}
}
