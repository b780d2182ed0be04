package notifier

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// largeRegistration is alice with 140 contacts whose URIs are about 450
// bytes, as a registrar stores them (long parameters from the phone): a
// full document of about 90 KB, over the largest UDP datagram.
func largeRegistration() []source.Contact {
	cs := make([]source.Contact, 140)
	for i := range cs {
		c := fresh(tAlice)
		c.Key, c.CallID = fmt.Sprintf("uloc-big-%d", i), fmt.Sprintf("big-%d", i)
		c.URI = fmt.Sprintf("sip:alice@192.0.2.%d:5060;transport=udp;x-token=%s", i%250+1, strings.Repeat(fmt.Sprintf("%x", i%16), 400))
		cs[i] = c
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
	st := h.n.Stats()
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
	if st := h.n.Stats(); st.LargeEnded.Load() != 1 || st.Removed.Load() != 0 {
		t.Fatalf("%d ended for a large document, %d removed; want 1, 0", st.LargeEnded.Load(), st.Removed.Load())
	}
	p.None(200 * time.Millisecond)
}
