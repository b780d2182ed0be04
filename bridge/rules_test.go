package bridge_test

import (
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/bridgetest"
	"github.com/regbridge/regbridge/source"
)

type changes struct {
	mu  sync.Mutex
	got []bridge.Change
}

func (c *changes) Publish(ch bridge.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, ch)
}

// TestRules applies each of bridgetest.Rules to the bridge directly, as a
// Full batch after a baseline; internal/conformance runs the same rules
// through every adapter and its store.
func TestRules(t *testing.T) {
	for _, r := range bridgetest.Rules {
		t.Run(r.Name, func(t *testing.T) {
			b, rec := newRulesBridge()
			was, c := ruleBinding()
			if err := b.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{c}}); err != nil {
				t.Fatal(err)
			}
			after := ruleBatch(r, was, c)
			if err := b.Apply(t.Context(), after); err != nil {
				t.Fatal(err)
			}
			// A deleted binding was alice's only one: her registration
			// ends with it; any other change leaves both active.
			reg, contact := bridge.RegActive, bridge.ContactActive
			if r.Change.Delete {
				reg, contact = bridge.RegTerminated, bridge.ContactTerminated
			}
			var events []bridge.Event
			for _, ch := range rec.got {
				if ch.AOR != c.AOR || ch.State != reg {
					t.Errorf("change of %s to %s, want %s to %s", ch.AOR, ch.State, c.AOR, reg)
				}
				for _, cv := range ch.Contacts {
					if cv.Key != c.Key || cv.State != contact {
						t.Errorf("contact %s %s, want %s %s", cv.Key, cv.State, c.Key, contact)
					}
					events = append(events, cv.Event)
				}
			}
			if !slices.Equal(events, r.Want) {
				t.Errorf("events %v, want %v", events, r.Want)
			}
		})
	}
}

// newRulesBridge is a bridge with a recording consumer.
func newRulesBridge() (*bridge.Bridge, *changes) {
	b := bridge.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := &changes{}
	b.Subscribe(rec)
	return b, rec
}

// ruleBinding is the binding every rule starts from (alice's only one,
// an hour from expiry), and its store row.
func ruleBinding() (bridgetest.Binding, source.Contact) {
	was := bridgetest.Binding{Expires: time.Now().Add(time.Hour).Truncate(time.Second),
		CallID: "c1@192.0.2.1", CSeq: 7, UserAgent: "rules-phone/1.0"}
	return was, source.Contact{Key: "k1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.1:5060", Q: -1,
		Expires: was.Expires, CallID: was.CallID, CSeq: was.CSeq, UserAgent: was.UserAgent}
}

// ruleBatch is the Full batch the store shows after rule r changed c,
// which held was.
func ruleBatch(r bridgetest.Rule, was bridgetest.Binding, c source.Contact) source.Batch {
	after := source.Batch{Full: true}
	if !r.Change.Delete {
		now := r.Change.Apply(was)
		c.Expires, c.CallID, c.CSeq, c.UserAgent = now.Expires, now.CallID, now.CSeq, now.UserAgent
		after.Contacts = []source.Contact{c}
	}
	return after
}
