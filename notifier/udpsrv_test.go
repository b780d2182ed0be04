package notifier

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// udpSrvHarness is a UDP listener read the way sipgo reads it, with a
// SUBSCRIBE table whose handler the test supplies, and a raw peer.
type udpSrvHarness struct {
	t      *udpServerTxs
	sock   *udpSocket
	peer   *net.UDPConn
	passed chan []byte // what the wrapped socket handed to "sipgo"
	calls  atomic.Int32
}

func newUDPSrvHarness(t *testing.T, handle func(*sip.Request, sip.ServerTransaction)) *udpSrvHarness {
	t.Helper()
	uc, peer := loopbackUDP(t), loopbackUDP(t)
	uc.SetReadBuffer(udpBufferBytes) // bursts of SUBSCRIBEs
	h := &udpSrvHarness{peer: peer, passed: make(chan []byte, 16)}
	h.t = newUDPServerTxs(func(req *sip.Request, tx sip.ServerTransaction) {
		h.calls.Add(1)
		handle(req, tx)
	}, DefaultMaxTransactions)
	h.sock = &udpSocket{UDPConn: uc, local: uc.LocalAddr().(*net.UDPAddr).AddrPort(), txs: newUDPTxs(), srv: h.t}
	go func() {
		buf := make([]byte, 65535)
		for {
			k, _, err := h.sock.ReadFrom(buf)
			if err != nil {
				return
			}
			h.passed <- bytes.Clone(buf[:k])
		}
	}()
	t.Cleanup(func() { uc.Close(); peer.Close() })
	return h
}

// subscribe is a SUBSCRIBE from the peer with the given branch and Via
// parameters (";rport" or "").
func (h *udpSrvHarness) subscribe(branch, viaParams string) []byte {
	return []byte(fmt.Sprintf("SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=%s%s\r\n"+
		"From: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>\r\n"+
		"Call-ID: %s@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@%[1]s>\r\n"+
		"Event: reg\r\nContent-Length: 0\r\n\r\n", h.peer.LocalAddr(), branch, viaParams, branch))
}

func (h *udpSrvHarness) send(t *testing.T, msg []byte) {
	t.Helper()
	if _, err := h.peer.WriteToUDPAddrPort(msg, h.sock.local); err != nil {
		t.Fatal(err)
	}
}

// read returns the next datagram conn receives within d, or nil.
func readDatagram(conn *net.UDPConn, d time.Duration) []byte {
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65535)
	k, err := conn.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:k]
}

func answer200(req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

// TestUDPServerTxRetransmission: a retransmitted SUBSCRIBE never reaches
// the handler again; it gets the same response, byte for byte, and sipgo
// sees neither copy.
func TestUDPServerTxRetransmission(t *testing.T) {
	h := newUDPSrvHarness(t, answer200)
	msg := h.subscribe("z9hG4bKretx1", ";rport")
	h.send(t, msg)
	first := readDatagram(h.peer, 2*time.Second)
	if !bytes.HasPrefix(first, []byte("SIP/2.0 200 OK\r\n")) {
		t.Fatalf("response %q", first)
	}
	if !bytes.Contains(first, []byte(";tag=")) {
		t.Errorf("200 without a To tag:\n%s", first)
	}
	for range 3 {
		h.send(t, msg)
		if again := readDatagram(h.peer, 2*time.Second); !bytes.Equal(again, first) {
			t.Fatalf("retransmission answered with\n%s\nwant\n%s", again, first)
		}
	}
	if c := h.calls.Load(); c != 1 {
		t.Errorf("handler ran %d times, want 1", c)
	}
	select {
	case m := <-h.passed:
		t.Errorf("sipgo saw %q", m)
	default:
	}
	// Another branch is another transaction.
	h.send(t, h.subscribe("z9hG4bKretx2", ";rport"))
	if res := readDatagram(h.peer, 2*time.Second); res == nil || h.calls.Load() != 2 {
		t.Fatalf("new branch: response %q, %d handler runs", res, h.calls.Load())
	}
}

// TestUDPServerTxAbsorbsWhileHandling: a retransmission that arrives
// while the handler is still working is dropped; one response goes out.
func TestUDPServerTxAbsorbsWhileHandling(t *testing.T) {
	release := make(chan struct{})
	h := newUDPSrvHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		<-release
		answer200(req, tx)
	})
	msg := h.subscribe("z9hG4bKslow", ";rport")
	h.send(t, msg)
	h.send(t, msg)
	h.send(t, msg)
	if res := readDatagram(h.peer, 200*time.Millisecond); res != nil {
		t.Fatalf("answered before the handler did: %q", res)
	}
	close(release)
	if res := readDatagram(h.peer, 2*time.Second); !bytes.HasPrefix(res, []byte("SIP/2.0 200")) {
		t.Fatalf("response %q", res)
	}
	if res := readDatagram(h.peer, 200*time.Millisecond); res != nil {
		t.Fatalf("a second response: %q", res)
	}
	if c := h.calls.Load(); c != 1 {
		t.Errorf("handler ran %d times, want 1", c)
	}
}

// TestUDPServerTxDestination: RFC 3261 18.2.2 and RFC 3581 4. With rport
// the response goes to the source port and carries received and rport;
// without it, to the source address at the Via's port.
func TestUDPServerTxDestination(t *testing.T) {
	h := newUDPSrvHarness(t, answer200)
	other := loopbackUDP(t)
	otherPort := other.LocalAddr().(*net.UDPAddr).Port

	h.send(t, h.subscribe("z9hG4bKrport", ";rport"))
	res := readDatagram(h.peer, 2*time.Second)
	peerPort := h.peer.LocalAddr().(*net.UDPAddr).Port
	if want := fmt.Sprintf(";rport=%d;received=127.0.0.1", peerPort); !bytes.Contains(res, []byte(want)) {
		t.Errorf("response Via lacks %q:\n%s", want, res)
	}

	// The Via names the other socket's port: the response goes there.
	msg := bytes.Replace(h.subscribe("z9hG4bKviaport", ""),
		[]byte(h.peer.LocalAddr().String()+";"), []byte(fmt.Sprintf("127.0.0.1:%d;", otherPort)), 1)
	h.send(t, msg)
	if got := readDatagram(other, 2*time.Second); !bytes.HasPrefix(got, []byte("SIP/2.0 200")) {
		t.Fatalf("nothing at the Via's port; got %q", got)
	}
	if got := readDatagram(h.peer, 100*time.Millisecond); got != nil {
		t.Errorf("response went to the source port too: %q", got)
	}
}

// TestUDPServerTxLeftToSipgo: what the table does not take reaches sipgo
// unchanged, and the handler never runs for it.
func TestUDPServerTxLeftToSipgo(t *testing.T) {
	h := newUDPSrvHarness(t, answer200)
	base := string(h.subscribe("z9hG4bKok", ""))
	for name, msg := range map[string]string{
		"RFC 2543 branch": strings.Replace(base, "branch=z9hG4bKok", "branch=1234", 1),
		"bare cookie":     strings.Replace(base, "branch=z9hG4bKok", "branch=z9hG4bK", 1),
		"no Via":          strings.Replace(base, "Via: SIP/2.0/UDP "+h.peer.LocalAddr().String()+";branch=z9hG4bKok\r\n", "", 1),
		"no CSeq":         strings.Replace(base, "CSeq: 1 SUBSCRIBE\r\n", "", 1),
		"OPTIONS":         strings.Replace(base, "SUBSCRIBE sip:", "OPTIONS sip:", 1),
		"bad start line":  strings.Replace(base, " SIP/2.0\r\n", " HTTP/1.1\r\n", 1),
	} {
		h.send(t, []byte(msg))
		select {
		case got := <-h.passed:
			if string(got) != msg {
				t.Errorf("%s: sipgo got %q", name, got)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: taken, not left to sipgo", name)
		}
	}
	if c := h.calls.Load(); c != 0 {
		t.Errorf("handler ran %d times", c)
	}
}

// TestUDPServerTxForgotten: an answered transaction is forgotten after
// Timer J (shortened here), and one the handler left unanswered at once;
// the same branch is then a new request.
func TestUDPServerTxForgotten(t *testing.T) {
	var answer atomic.Bool
	h := newUDPSrvHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		if answer.Load() {
			answer200(req, tx)
			if err := tx.Respond(sip.NewResponseFromRequest(req, 500, "Again", nil)); err != errAnswered {
				t.Errorf("second final response: %v, want errAnswered", err)
			}
		}
	})
	h.t.linger = 50 * time.Millisecond

	msg := h.subscribe("z9hG4bKgone", ";rport")
	h.send(t, msg)
	siptest.Eventually(t, func() bool { return h.calls.Load() == 1 && h.t.len() == 0 }, "unanswered transaction forgotten")
	answer.Store(true)
	h.send(t, msg)
	if res := readDatagram(h.peer, 2*time.Second); !bytes.HasPrefix(res, []byte("SIP/2.0 200")) {
		t.Fatalf("response %q", res)
	}
	if c := h.calls.Load(); c != 2 {
		t.Fatalf("handler ran %d times, want 2", c)
	}
	// A burst of transactions, all forgotten after the linger.
	for i := range 500 {
		h.send(t, h.subscribe(fmt.Sprintf("z9hG4bKburst%d", i), ";rport"))
	}
	siptest.Eventually(t, func() bool { return h.calls.Load() == 502 }, "burst handled")
	siptest.Eventually(t, func() bool { return h.t.len() == 0 }, "burst forgotten")
	h.t.mu.Lock()
	armed, held := h.t.armed, len(h.t.answered)
	h.t.mu.Unlock()
	if armed || held != 0 {
		t.Errorf("after the sweep: armed %v, %d answered held", armed, held)
	}
	h.send(t, msg)
	siptest.Eventually(t, func() bool { return h.calls.Load() == 503 }, "same branch is new after Timer J")
}

// TestSubscribeRetransmittedOverUDP: through the whole notifier, a
// retransmitted initial SUBSCRIBE makes one subscription and gets the
// same 200 (same To tag) every time it is answered.
func TestSubscribeRetransmittedOverUDP(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	peer := loopbackUDP(t)
	server := netip.MustParseAddrPort(h.addr("udp"))
	msg := []byte(rawSubscribe(peer.LocalAddr().String(), "sip:alice@example.com", "Event: reg\r\nExpires: 600\r\n", 1))
	responses := 0
	var first []byte
	peer.WriteToUDPAddrPort(msg, server)
	peer.WriteToUDPAddrPort(msg, server) // before the answer
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		m := readDatagram(peer, time.Until(deadline))
		switch {
		case bytes.HasPrefix(m, []byte("SIP/2.0 ")):
			responses++
			if first == nil {
				first = bytes.Clone(m)
				peer.WriteToUDPAddrPort(msg, server) // after it
			} else if !bytes.Equal(m, first) {
				t.Errorf("responses differ:\n%s\n---\n%s", first, m)
			}
		case m != nil: // a NOTIFY: leave it unanswered; it is retransmitted
		}
	}
	if !bytes.HasPrefix(first, []byte("SIP/2.0 200 OK")) {
		t.Fatalf("response %q", first)
	}
	// The copy sent after the answer is answered again; the one sent
	// before it is too if the handler was done by the time it was read.
	if responses < 2 || responses > 3 {
		t.Errorf("%d responses to three copies, want 2 or 3", responses)
	}
	if c := h.n.Count(); c != 1 {
		t.Errorf("%d subscriptions, want 1", c)
	}
}
