package notifier

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestTerminate: ending subscriptions for a reason regbridge does not
// decide itself (RFC 6665 4.1.3, 4.2.2): the final NOTIFY
// carries the reason, retry-after only where it means something, and
// after rejected, noresource and giveup no registration state; every
// subscription to the AOR ends, of either package, others stay.
func TestTerminate(t *testing.T) {
	tests := []struct {
		reason     Reason
		retryAfter time.Duration
		subState   string
		revealed   bool // the final document holds the registration
	}{
		{ReasonRejected, time.Minute, "terminated;reason=rejected", false},
		{ReasonNoResource, 0, "terminated;reason=noresource", false},
		{ReasonProbation, 90 * time.Second, "terminated;reason=probation;retry-after=90", true},
		{ReasonGiveUp, 30 * time.Second, "terminated;reason=giveup;retry-after=30", false},
		{ReasonDeactivated, time.Minute, "terminated;reason=deactivated", true},
		{ReasonTimeout, 0, "terminated;reason=timeout", true},
	}
	for _, tt := range tests {
		t.Run(string(tt.reason), func(t *testing.T) {
			h := newHarness(t, Config{Presence: true}, tAlice)
			reg := siptest.New(t, "udp", h.addr("udp"))
			reg.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
			reg.Check(next(t, reg), 0, "full", "active")
			pres := siptest.New(t, "tcp", h.addr("tcp"))
			pres.Subscribe("sip:alice@example.com", siptest.Header("Event", "presence"))
			pres.CheckPresence(next(t, pres), "active")
			bob := siptest.New(t, "udp", h.addr("udp"))
			bob.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg"))
			bob.Check(next(t, bob), 0, "full", "active")

			n, err := h.n.Terminate("sip:alice@EXAMPLE.com", tt.reason, tt.retryAfter)
			if err != nil || n != 2 {
				t.Fatalf("Terminate = %d, %v; want 2 subscriptions ended", n, err)
			}
			fin := next(t, reg)
			if fin.SubscriptionState != tt.subState {
				t.Errorf("reg: Subscription-State %q, want %q", fin.SubscriptionState, tt.subState)
			}
			if tt.revealed {
				reg.Check(fin, 1, "full", "terminated")
				if len(fin.Doc.Registrations) != 1 {
					t.Errorf("reg: final document without the registration:\n%s", fin.Req.Body())
				}
			} else {
				reg.Check(fin, 1, "partial", "terminated")
				if len(fin.Doc.Registrations) != 0 {
					t.Errorf("reg: final document reveals state after %s:\n%s", tt.reason, fin.Req.Body())
				}
			}
			pfin := next(t, pres)
			pres.CheckPresence(pfin, tt.subState)
			if tt.revealed != (len(pfin.Req.Body()) > 0) {
				t.Errorf("presence: final body %q, want one: %v", pfin.Req.Body(), tt.revealed)
			}
			if pfin.Req.ContentType() != nil && len(pfin.Req.Body()) == 0 {
				t.Errorf("presence: Content-Type without a body")
			}
			siptest.Eventually(t, func() bool { return h.n.Count() == 1 }, "alice's subscriptions removed, bob's kept")
			reg.None(100 * time.Millisecond)
			bob.None(0)
		})
	}
}

func TestTerminateRefusesUnknownReason(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	for _, r := range []Reason{"", "invariant", "Timeout", "bad filter"} {
		if _, err := h.n.Terminate("sip:alice@example.com", r, 0); !errors.Is(err, ErrReason) {
			t.Errorf("Terminate(%q) = %v, want ErrReason", r, err)
		}
	}
	if _, err := h.n.Terminate("sip:alice@example.com", ReasonProbation, -time.Second); !errors.Is(err, ErrReason) {
		t.Errorf("negative retry-after: %v, want ErrReason", err)
	}
}

// TestNotifyResponses: every NOTIFY response RFC 6665 4.2.2 says ends the
// subscription does, and no NOTIFY follows; 202 is
// a 200 (8.3.1); the others keep it, and the next document is full state
// (E.45).
func TestNotifyResponses(t *testing.T) {
	tests := []struct {
		code    int
		removes bool
	}{
		{404, true}, {405, true}, {410, true}, {416, true}, {480, true}, {481, true}, {482, true},
		{483, true}, {484, true}, {485, true}, {489, true}, {501, true}, {604, true},
		{202, false}, {302, false}, {400, false}, {403, false}, {408, false}, {486, false},
		{500, false}, {503, false}, {603, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			p.Answer(func(i int) int {
				if i == 1 {
					return tt.code
				}
				return 200
			})
			p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
			p.Check(next(t, p), 0, "full", "active")
			apply(t, h, fresh(tAlice)) // a refresh: NOTIFY 1 gets tt.code
			p.Check(next(t, p), 1, "partial", "active")
			if tt.removes {
				siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription removed")
				apply(t, h, fresh(tAlice))
				p.None(200 * time.Millisecond)
				return
			}
			// Wait until the answer is processed, then change again.
			siptest.Eventually(t, func() bool {
				s := h.n.anySubscription()
				s.mu.Lock()
				defer s.mu.Unlock()
				return !s.inFlight
			}, "NOTIFY 1 answered")
			apply(t, h, fresh(tAlice))
			state := "partial"
			if tt.code >= 300 {
				state = "full"
			}
			p.Check(next(t, p), 2, state, "active")
			if h.n.Count() != 1 {
				t.Fatalf("subscription lost after %d", tt.code)
			}
		})
	}
}
