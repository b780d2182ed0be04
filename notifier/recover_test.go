package notifier

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
)

// panickyRegistrations is the bridge with a panic armed for the next Ready (read
// by the SUBSCRIBE handler) or the next Lookup (read by a delivery).
type panickyRegistrations struct {
	Registrations
	ready, lookup atomic.Bool
}

func (p *panickyRegistrations) Ready() bool {
	if p.ready.CompareAndSwap(true, false) {
		panic("injected in a SUBSCRIBE handler")
	}
	return p.Registrations.Ready()
}

func (p *panickyRegistrations) Lookup(aor string) (bridge.Registration, uint64) {
	if p.lookup.CompareAndSwap(true, false) {
		panic("injected in a delivery")
	}
	return p.Registrations.Lookup(aor)
}

// TestHandlerPanic: a panic in a SUBSCRIBE handler, over UDP (our
// transactions) and TCP (sipgo's), answers 500 and is counted; the
// process goes on and the next SUBSCRIBE is served.
func TestHandlerPanic(t *testing.T) {
	var ps *panickyRegistrations
	h := newHarnessWith(t, Config{}, harnessOpts{wrap: func(s Registrations) Registrations { ps = &panickyRegistrations{Registrations: s}; return ps }}, tAlice)
	for i, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ps.ready.Store(true)
			p := siptest.New(t, network, h.addr(network))
			if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 500 {
				t.Fatalf("SUBSCRIBE whose handler panics: %d, want 500", res.StatusCode)
			}
			if got := h.n.Counters().HandlerPanics.Load(); got != uint64(i+1) {
				t.Fatalf("%d handler panics counted, want %d", got, i+1)
			}
			p = siptest.New(t, network, h.addr(network))
			if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
				t.Fatalf("next SUBSCRIBE: %d", res.StatusCode)
			}
			p.Check(next(t, p), 0, "full", "active")
		})
	}
}

// TestDeliveryPanic: a panic while a NOTIFY is being made ends that
// subscription with a final NOTIFY without state (it is not left
// claimed and silent), is counted, and deliveries go on for the others.
func TestDeliveryPanic(t *testing.T) {
	var ps *panickyRegistrations
	h := newHarnessWith(t, Config{}, harnessOpts{wrap: func(s Registrations) Registrations { ps = &panickyRegistrations{Registrations: s}; return ps }}, tAlice)
	ps.lookup.Store(true)
	p := siptest.New(t, "udp", h.addr("udp"))
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	n := next(t, p)
	want := fmt.Sprintf("terminated;reason=probation;retry-after=%d", bareRetryAfter/time.Second)
	if n.SubscriptionState != want {
		t.Fatalf("NOTIFY after a panic making it: %q, want %q", n.SubscriptionState, want)
	}
	p.Check(n, 0, "partial", "terminated")
	siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription ended")
	if got := h.n.Counters().DeliveryPanics.Load(); got != 1 {
		t.Fatalf("%d delivery panics counted, want 1", got)
	}
	q := siptest.New(t, "udp", h.addr("udp"))
	if res := q.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("next SUBSCRIBE: %d", res.StatusCode)
	}
	q.Check(next(t, q), 0, "full", "active")
	apply(t, h, fresh(tAlice))
	q.Check(next(t, q), 1, "partial", "active")
}
