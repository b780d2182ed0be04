package notifier

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// TestSubscribeRejections covers the SUBSCRIBE checks of RFC 6665 4.2.1 (in
// the order docs/sip.md#subscribe-and-notify lists them): each bad request
// gets its exact response and creates no subscription.
func TestSubscribeRejections(t *testing.T) {
	h := newHarness(t, Config{MinExpires: 60 * time.Second, MaxExpires: 3600 * time.Second}, tAlice)
	tests := []struct {
		name    string
		hdrs    []sip.Header
		toTag   string
		code    int
		header  string // a header the response must carry
		value   string
		notifys bool
	}{
		{name: "no Event", code: 489, header: "Allow-Events", value: "reg"},
		{name: "unknown package", hdrs: []sip.Header{siptest.Header("Event", "presence")}, code: 489, header: "Allow-Events", value: "reg"},
		{name: "package compared byte by byte", hdrs: []sip.Header{siptest.Header("Event", "Reg")}, code: 489},
		{name: "two Event headers", hdrs: []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Event", "reg")}, code: 489},
		{name: "Accept without reginfo", hdrs: []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Accept", "application/pidf+xml")}, code: 406, header: "Accept", value: "application/reginfo+xml"},
		{name: "Expires below minimum", hdrs: []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Expires", "30")}, code: 423, header: "Min-Expires", value: "60"},
		{name: "Expires not a number", hdrs: []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Expires", "soon")}, code: 400},
		{name: "unknown dialog", hdrs: []sip.Header{siptest.Header("Event", "reg")}, toTag: "nosuchtag", code: 481},
		{name: "compact Event form accepted", hdrs: []sip.Header{siptest.Header("o", "reg")}, code: 200, notifys: true},
		{name: "Accept listing several types", hdrs: []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Accept", "application/xml, application/reginfo+xml")}, code: 200, notifys: true},
		{name: "Expires above maximum is clamped", hdrs: []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Expires", "7200")}, code: 200, header: "Expires", value: "3600", notifys: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := siptest.New(t, "udp", h.addr("udp"))
			p.ToTag = tt.toTag
			before := h.n.Count()
			res := p.Subscribe("sip:alice@example.com", tt.hdrs...)
			if res.StatusCode != tt.code {
				t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if tt.header != "" {
				got := res.GetHeader(tt.header)
				if got == nil || !strings.Contains(got.Value(), tt.value) {
					t.Fatalf("%s = %v, want %q:\n%s", tt.header, got, tt.value, res)
				}
			}
			if !tt.notifys {
				if h.n.Count() != before {
					t.Fatalf("a rejected SUBSCRIBE created a subscription")
				}
				p.None(100 * time.Millisecond)
				return
			}
			n := next(t, p)
			p.Check(n, 0, "full", "active;expires=")
		})
	}
}

func TestSubscribeMissingContact(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "tcp", h.addr("tcp"))
	// A Contact header with an empty value is left out by the helper.
	res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Contact", ""))
	if res.StatusCode != 400 {
		t.Fatalf("status %d, want 400", res.StatusCode)
	}
}

// TestFetch: an initial SUBSCRIBE with Expires 0 gets 200 Expires 0 and one
// full NOTIFY terminated;reason=timeout (RFC 6665 4.4.3).
func TestFetch(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg;id=7"), siptest.Header("Expires", "0"))
	if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "0" {
		t.Fatalf("fetch: %s", res)
	}
	n := next(t, p)
	if n.Doc.Version != 0 || n.Doc.State != "full" || n.SubscriptionState != "terminated;reason=timeout" ||
		len(n.Doc.Registrations[0].Contacts) != 1 {
		t.Fatalf("fetch NOTIFY %s: %s", n.SubscriptionState, n.Req.Body())
	}
	if ev := n.Req.GetHeader("Event").Value(); ev != "reg;id=7" {
		t.Errorf("Event %q, want the id echoed (RFC 6665 4.5.2)", ev)
	}
	p.None(200 * time.Millisecond)
	siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "fetch subscription removed")
}

// TestSubscriptionTimeout: a subscription not refreshed ends with
// terminated;reason=timeout (RFC 6665 4.2.1.4).
func TestSubscriptionTimeout(t *testing.T) {
	h := newHarness(t, Config{MinExpires: time.Second}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "1")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	p.Check(next(t, p), 0, "full", "active;expires=")
	n := next(t, p)
	p.Check(n, 1, "full", "terminated;reason=timeout")
	siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription removed")
}

// TestNotifyFailureRemoves: a NOTIFY answered 481 ends the subscription;
// no more NOTIFYs go to the dead subscriber (RFC 6665 4.2.2, E.43).
func TestNotifyFailureRemoves(t *testing.T) {
	for _, code := range []int{481, 404, 489} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			p.Answer(func(int) int { return code })
			p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
			next(t, p)
			siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription removed")
			h.br.Apply(t.Context(), source.Batch{Full: true})
			p.None(200 * time.Millisecond)
			if h.n.Counters().Removed.Load() != 1 {
				t.Errorf("removed = %d, want 1", h.n.Counters().Removed.Load())
			}
		})
	}
}

// TestNotifyServerErrorKeeps: 500 keeps the subscription and the next
// document is full state (RFC 6665 4.2.2).
func TestNotifyServerErrorKeeps(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	p.Answer(func(i int) int {
		if i == 1 {
			return 500
		}
		return 200
	})
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	p.Check(next(t, p), 0, "full", "active")
	h.br.Apply(t.Context(), source.Batch{Full: true}) // alice leaves
	p.Check(next(t, p), 1, "partial", "active")
	// The 500 made the next document owed as full state.
	siptest.Eventually(t, func() bool {
		s := h.n.anySubscription()
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.resync && !s.inFlight
	}, "full state owed")
	h.br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{tAlice}})
	n := next(t, p)
	p.Check(n, 2, "full", "active")
	if h.n.Count() != 1 {
		t.Fatalf("subscription lost after 500")
	}
}

// TestCoalescing: while a NOTIFY is unanswered, later changes wait and
// leave as one partial document with each contact's final state; versions
// stay consecutive (docs/design.md#invariants, 3 and 4).
func TestCoalescing(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	release := make(chan struct{})
	p.Answer(func(i int) int {
		if i == 1 {
			<-release // hold the first partial's 200
		}
		return 200
	})
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	p.Check(next(t, p), 0, "full", "active")

	c2 := tAlice
	c2.Key, c2.URI, c2.CallID = "uloc-2", "sip:alice@192.0.2.11", "c2"
	h.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{c2}}) // v1: registered, held
	first := next(t, p)
	p.Check(first, 1, "partial", "active")
	for cseq := uint32(2); cseq <= 6; cseq++ { // five refreshes of c2 while v1 is held
		c2.CSeq = cseq
		h.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{c2}})
	}
	c3 := tAlice
	c3.Key, c3.URI, c3.CallID = "uloc-3", "sip:alice@192.0.2.12", "c3"
	h.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{c3}})
	p.None(100 * time.Millisecond) // one NOTIFY in flight per dialog
	close(release)

	n := next(t, p)
	p.Check(n, 2, "partial", "active")
	cs := n.Doc.Registrations[0].Contacts
	if len(cs) != 2 || cs[0].URI != c2.URI || cs[0].Event != "refreshed" || cs[1].URI != c3.URI || cs[1].Event != "registered" {
		t.Fatalf("coalesced document: %s", n.Req.Body())
	}
	p.None(100 * time.Millisecond)
}

// TestShutdownDeactivates: stopping the notifier ends every subscription
// with terminated;reason=deactivated before Run returns (RFC 6665 4.2.2).
func TestShutdownDeactivates(t *testing.T) {
	h := newHarness(t, Config{Drain: 5 * time.Second}, tAlice)
	var peers []*siptest.Peer
	for _, network := range []string{"udp", "tcp", "udp"} {
		p := siptest.New(t, network, h.addr(network))
		p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
		p.Check(next(t, p), 0, "full", "active")
		peers = append(peers, p)
	}
	h.stop(t)
	for _, p := range peers {
		n := next(t, p)
		p.Check(n, 1, "full", "terminated;reason=deactivated")
	}
}
