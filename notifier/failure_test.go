package notifier

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// TestNotifyAnsweredAfterTimerF: a subscriber that answers a NOTIFY only
// after Timer F (64*T1) has lost its subscription by then (RFC 6665
// 4.2.2: a timeout removes it); its late 200 changes nothing, and another
// subscriber of the same AOR goes on receiving every change.
func TestNotifyAnsweredAfterTimerF(t *testing.T) {
	// Shorter SIP timers make Timer F 640 ms instead of 32 s. They are
	// process-wide in sipgo: no test in this package runs in parallel.
	sip.SetTimers(10*time.Millisecond, 40*time.Millisecond, 50*time.Millisecond)
	t.Cleanup(func() { sip.SetTimers(500*time.Millisecond, 4*time.Second, 5*time.Second) })

	h := newHarness(t, Config{}, tAlice)
	slow := siptest.New(t, "udp", h.addr("udp"))
	healthy := siptest.New(t, "tcp", h.addr("tcp"))
	release := make(chan struct{})
	slow.Answer(func(i int) int {
		if i == 1 {
			<-release // the first partial is answered far too late
		}
		return 200
	})
	for _, p := range []*siptest.Peer{slow, healthy} {
		if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
		}
		p.Check(p.Next(), 0, "full", "active")
	}

	bob := tAlice
	bob.Key, bob.URI, bob.CallID = "uloc-2", "sip:alice@192.0.2.11", "c2"
	h.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{bob}})
	healthy.Check(healthy.Next(), 1, "partial", "active")
	slow.Check(slow.Next(), 1, "partial", "active") // arrives; its answer is held

	siptest.EventuallyWithin(t, 10*time.Second, func() bool { return h.n.Count() == 1 }, "the slow subscription removed after Timer F")
	if h.n.Counters().Removed.Load() != 1 {
		t.Fatalf("removed = %d, want 1", h.n.Counters().Removed.Load())
	}
	close(release) // the late 200 goes out now and must change nothing

	h.br.Apply(t.Context(), source.Batch{Deleted: []string{"uloc-2"}})
	healthy.Check(healthy.Next(), 2, "partial", "active")
	healthy.None(200 * time.Millisecond) // and gives any stray retransmission time to land
	for _, n := range slow.Drain() {
		// Retransmissions of version 1 may still arrive; nothing newer.
		if n.Doc.Version != 1 {
			t.Fatalf("removed subscriber got version %d", n.Doc.Version)
		}
	}
	if h.n.Count() != 1 {
		t.Fatalf("%d subscriptions, want the healthy one", h.n.Count())
	}
}
