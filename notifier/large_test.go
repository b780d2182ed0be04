package notifier

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// largeRegistration is alice with 140 contacts whose URIs are about 450
// bytes, as a registrar stores them (long parameters from the phone): a
// full document of about 90 KB, over the largest UDP datagram.
func largeRegistration() []source.Contact { return longContacts(140, 0) }

// longContacts is alice with n contacts whose URIs are about 450 bytes,
// their keys numbered from first.
func longContacts(n, first int) []source.Contact {
	cs := make([]source.Contact, n)
	for k := range cs {
		i := first + k
		c := fresh(tAlice)
		c.Key, c.CallID = fmt.Sprintf("uloc-big-%d", i), fmt.Sprintf("big-%d", i)
		c.URI = fmt.Sprintf("sip:alice@192.0.2.%d:5060;transport=udp;x-token=%s", i%250+1, strings.Repeat(fmt.Sprintf("%x", i%16), 400))
		cs[k] = c
	}
	return cs
}

// TestLargeNotifyOverTCP: a full document too large for a UDP datagram
// goes over TCP to the subscriber's address (RFC 3261 18.1.1); the
// subscription goes on, and the next, small NOTIFY is back on UDP.
func TestLargeNotifyOverTCP(t *testing.T) {
	h := newHarness(t, Config{}, largeRegistration()...)
	p := siptest.New(t, "udp", h.addr("udp"), siptest.WithTCP())
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	n := next(t, p)
	if n.Transport != "TCP" || len(n.Doc.Registrations) != 1 || len(n.Doc.Registrations[0].Contacts) != 140 {
		t.Fatalf("first NOTIFY over %s with %d bytes of body, want the full document over TCP", n.Transport, len(n.Req.Body()))
	}
	p.Check(n, 0, "full", "active")
	apply(t, h, fresh(tAlice))
	n = next(t, p)
	p.Check(n, 1, "partial", "active")
	if n.Transport != "UDP" {
		t.Errorf("small NOTIFY over %s, want UDP", n.Transport)
	}
	st := h.n.Counters()
	if h.n.Count() != 1 || st.LargeOverTCP.Load() != 1 || st.LargeEnded.Load() != 0 {
		t.Fatalf("%d subscriptions, %d large NOTIFYs over TCP, %d ended; want 1, 1, 0", h.n.Count(), st.LargeOverTCP.Load(), st.LargeEnded.Load())
	}
}

// TestLargeNotifyNoTransport: when the subscriber takes no TCP, the
// subscription ends with a final NOTIFY it can receive: terminated with
// probation and a retry-after (RFC 6665 4.1.3: try again later, not at
// once), and a document that fits (empty, the version sequence kept). It
// is logged and counted, never a silent removal.
func TestLargeNotifyNoTransport(t *testing.T) {
	h := newHarness(t, Config{}, largeRegistration()...)
	p := siptest.New(t, "udp", h.addr("udp"))
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	n := next(t, p)
	want := fmt.Sprintf("terminated;reason=probation;retry-after=%d", bareRetryAfter/time.Second)
	if n.Transport != "UDP" || n.SubscriptionState != want {
		t.Fatalf("NOTIFY over %s with Subscription-State %q, want %q over UDP", n.Transport, n.SubscriptionState, want)
	}
	p.Check(n, 0, "partial", "terminated")
	if len(n.Doc.Registrations) != 0 {
		t.Fatalf("final NOTIFY carries state:\n%s", n.Req.Body())
	}
	siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription ended")
	if st := h.n.Counters(); st.LargeEnded.Load() != 1 || st.Removed.Load() != 0 {
		t.Fatalf("%d ended for a large document, %d removed; want 1, 0", st.LargeEnded.Load(), st.Removed.Load())
	}
	p.None(200 * time.Millisecond)
}

// TestMTUNotifyOverTCP: a NOTIFY of a UDP subscription over 1300 bytes
// (RFC 3261 18.1.1: the path MTU is unknown) goes over TCP to the
// subscriber's address when it listens there, while small NOTIFYs stay
// on UDP; a second large one goes over TCP again.
func TestMTUNotifyOverTCP(t *testing.T) {
	h := newHarness(t, Config{}, longContacts(3, 0)...)
	p := siptest.New(t, "udp", h.addr("udp"), siptest.WithTCP())
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	n := next(t, p)
	p.Check(n, 0, "full", "active")
	if n.Transport != "TCP" || len(n.Req.Body()) < udpPathMTULimit {
		t.Fatalf("full document (%d bytes of body) over %s, want more than %d bytes over TCP", len(n.Req.Body()), n.Transport, udpPathMTULimit)
	}
	apply(t, h, fresh(tAlice))
	if n = next(t, p); n.Transport != "UDP" || len(n.Req.String()) > udpPathMTULimit {
		t.Fatalf("small NOTIFY (%d bytes) over %s, want UDP", len(n.Req.String()), n.Transport)
	}
	p.Check(n, 1, "partial", "active")
	apply(t, h, longContacts(1, 3)...)
	if n = next(t, p); n.Transport != "TCP" {
		t.Fatalf("second large NOTIFY over %s, want TCP", n.Transport)
	}
	p.Check(n, 2, "partial", "active")
	st := h.n.Counters()
	if st.LargeOverTCP.Load() != 2 || st.LargeOverUDP.Load() != 0 || h.n.tcpAttempts.Load() != 2 {
		t.Fatalf("%d large NOTIFYs over TCP, %d over UDP, %d TCP attempts; want 2, 0, 2", st.LargeOverTCP.Load(), st.LargeOverUDP.Load(), h.n.tcpAttempts.Load())
	}
}

// TestMTUNotifyUDPFallback: when nothing listens on TCP at the
// subscriber's address (the connection is refused), a NOTIFY over 1300
// bytes goes over UDP, fragmented, as RFC 3261 18.1.1 allows; the next
// large one to that destination goes straight to UDP, without a TCP
// attempt, and small ones make none either.
func TestMTUNotifyUDPFallback(t *testing.T) {
	h := newHarness(t, Config{}, longContacts(3, 0)...)
	p := siptest.New(t, "udp", h.addr("udp"))
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	n := next(t, p)
	p.Check(n, 0, "full", "active")
	if n.Transport != "UDP" || len(n.Req.Body()) < udpPathMTULimit || h.n.tcpAttempts.Load() != 1 {
		t.Fatalf("full document (%d bytes of body) over %s after %d TCP attempts, want UDP after 1", len(n.Req.Body()), n.Transport, h.n.tcpAttempts.Load())
	}
	apply(t, h, fresh(tAlice))
	p.Check(next(t, p), 1, "partial", "active")
	apply(t, h, longContacts(1, 3)...)
	n = next(t, p)
	p.Check(n, 2, "partial", "active")
	if n.Transport != "UDP" || len(n.Req.String()) < udpPathMTULimit {
		t.Fatalf("second large NOTIFY (%d bytes) over %s, want UDP", len(n.Req.String()), n.Transport)
	}
	st := h.n.Counters()
	if st.LargeOverUDP.Load() != 2 || st.LargeOverTCP.Load() != 0 || h.n.tcpAttempts.Load() != 1 || h.n.Count() != 1 {
		t.Fatalf("%d large NOTIFYs over UDP, %d over TCP, %d TCP attempts, %d subscriptions; want 2, 0, 1, 1",
			st.LargeOverUDP.Load(), st.LargeOverTCP.Load(), h.n.tcpAttempts.Load(), h.n.Count())
	}
}

// TestTCPRefusals: a remembered destination is forgotten after
// tcpRefusalTTL, and no more than tcpRefusalMax are held.
func TestTCPRefusals(t *testing.T) {
	var r tcpRefusals
	now := time.Now()
	r.add("192.0.2.1:5060", now)
	if !r.has("192.0.2.1:5060", now.Add(tcpRefusalTTL-time.Second)) || r.has("192.0.2.2:5060", now) {
		t.Fatal("refusal not remembered, or remembered for another destination")
	}
	if r.has("192.0.2.1:5060", now.Add(tcpRefusalTTL)) {
		t.Fatal("refusal remembered past its TTL")
	}
	for i := range tcpRefusalMax + 100 {
		r.add(fmt.Sprintf("192.0.2.1:%d", i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(r.until) != tcpRefusalMax || !r.has(fmt.Sprintf("192.0.2.1:%d", tcpRefusalMax+99), now) {
		t.Fatalf("%d refusals held, want %d with the latest among them", len(r.until), tcpRefusalMax)
	}
}

// TestMTUNotifyTCPDropped: a subscriber whose TCP port drops connection
// attempts (as a firewall does; here a listener whose queue is full) gets
// the large NOTIFY over UDP once largeConnectTimeout has passed, not a
// Timer F later.
func TestMTUNotifyTCPDropped(t *testing.T) {
	h := newHarness(t, Config{}, longContacts(3, 0)...)
	p := siptest.New(t, "udp", h.addr("udp"))
	blackholeTCP(t, p.Local())
	start := time.Now()
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	n := next(t, p)
	took := time.Since(start)
	p.Check(n, 0, "full", "active")
	if n.Transport != "UDP" || took < largeConnectTimeout || took > largeConnectTimeout+2*time.Second {
		t.Fatalf("full document over %s after %v, want UDP after the %v connect timeout", n.Transport, took, largeConnectTimeout)
	}
	if st := h.n.Counters(); st.LargeOverUDP.Load() != 1 || h.n.tcpAttempts.Load() != 1 {
		t.Fatalf("%d large NOTIFYs over UDP after %d TCP attempts, want 1 after 1", st.LargeOverUDP.Load(), h.n.tcpAttempts.Load())
	}
}

// blackholeTCP makes connections to addr (an IPv4 host:port) hang
// unanswered: a listener with a backlog of 0 that never accepts, its
// queue filled by one connection, drops further SYNs.
func blackholeTCP(t *testing.T, addr string) {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return // the queue is full: SYNs are dropped
		}
		t.Cleanup(func() { _ = c.Close() })
		if i == 10 {
			t.Fatal("the listener's queue never filled")
		}
	}
}
