package bridge_test

import (
	"slices"
	"testing"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/bridgetest"
	"github.com/regbridge/regbridge/source"
)

// TestAdoptedFollowRules: a change to an adopted contact is announced by
// bridgetest.Rules as for one of the first snapshot; once its AOR is
// forgotten, the same change is a new contact (registered) and a delete
// announces nothing.
func TestAdoptedFollowRules(t *testing.T) {
	for _, forget := range []bool{false, true} {
		for _, r := range bridgetest.Rules {
			name := "adopted/" + r.Name
			if forget {
				name = "forgotten/" + r.Name
			}
			t.Run(name, func(t *testing.T) {
				b, rec := newRulesBridge()
				if err := b.Apply(t.Context(), source.Batch{Full: true}); err != nil {
					t.Fatal(err)
				}
				was, c := ruleBinding()
				b.Adopt([]source.Contact{c})
				want := r.Want
				if forget {
					if n := b.Forget(func(aor string) bool { return aor == c.AOR }); n != 1 {
						t.Fatalf("forgot %d contacts, want 1", n)
					}
					want = []bridge.Event{bridge.EventRegistered}
					if r.Change.Delete {
						want = nil
					}
				}
				_, seq := b.Lookup(c.AOR)
				if len(rec.got) != 0 {
					t.Fatalf("Adopt or Forget announced %+v", rec.got)
				}
				if err := b.Apply(t.Context(), ruleBatch(r, was, c)); err != nil {
					t.Fatal(err)
				}
				var events []bridge.Event
				for i, ch := range rec.got {
					if ch.Seq != seq+uint64(i)+1 {
						t.Errorf("change seq %d after Lookup at %d", ch.Seq, seq)
					}
					for _, cv := range ch.Contacts {
						events = append(events, cv.Event)
					}
				}
				if !slices.Equal(events, want) {
					t.Errorf("events %v, want %v", events, want)
				}
			})
		}
	}
}
