package bridge

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// TestAct: operator actions end a contact with their event (RFC 3680
// 4.7.1), and the unchanged row left in a notify-only store is not
// announced again until a new REGISTER.
func TestAct(t *testing.T) {
	c := contact("k1", "alice", "sip:alice@192.0.2.1", t0.Add(time.Hour), "c1", 1)
	for _, ev := range []Event{EventDeactivated, EventProbation, EventRejected} {
		t.Run(string(ev), func(t *testing.T) {
			b, r := newTestBridge(t)
			b.apply(source.Batch{Full: true, Contacts: []source.Contact{c}}, t0)
			reg, _ := b.Lookup(c.AOR)
			view, err := b.Act(c.AOR, reg.Contacts[0].ID, ev, 300)
			if err != nil {
				t.Fatal(err)
			}
			if view.State != ContactTerminated || view.Event != ev {
				t.Fatalf("view %+v", view)
			}
			got := r.take()
			checkChanges(t, got, []wantChange{{c.AOR, RegTerminated, []wantContact{{"k1", ContactTerminated, ev}}}})
			if got[0].Contacts[0].RetryAfter != 300 {
				t.Errorf("retry-after %d", got[0].Contacts[0].RetryAfter)
			}
			b.apply(source.Batch{Full: true, Contacts: []source.Contact{c}}, t0)
			if got := r.take(); len(got) != 0 {
				t.Fatalf("unchanged row announced again: %+v", got)
			}
			again := c
			again.CSeq = 2
			b.apply(source.Batch{Full: true, Contacts: []source.Contact{again}}, t0)
			checkChanges(t, r.take(), []wantChange{{c.AOR, RegActive, []wantContact{{"k1", ContactActive, EventRegistered}}}})
		})
	}
}

func TestActErrors(t *testing.T) {
	b, _ := newTestBridge(t)
	c := contact("k1", "alice", "sip:alice@192.0.2.1", t0.Add(time.Hour), "c1", 1)
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{c}}, t0)
	reg, _ := b.Lookup(c.AOR)
	id := reg.Contacts[0].ID
	if _, err := b.Act(c.AOR, "nope", EventDeactivated, 0); !errors.Is(err, ErrNoContact) {
		t.Errorf("unknown contact: %v", err)
	}
	if _, err := b.Act("sip:bob@example.com", id, EventDeactivated, 0); !errors.Is(err, ErrNoContact) {
		t.Errorf("unknown AOR: %v", err)
	}
	if _, err := b.Act(c.AOR, id, EventProbation, 0); !errors.Is(err, ErrRetryAfter) {
		t.Errorf("probation without retry-after: %v", err)
	}
	if _, err := b.Act(c.AOR, id, EventRegistered, 0); !errors.Is(err, ErrNotAdmin) {
		t.Errorf("registered is not an action: %v", err)
	}
}

func TestList(t *testing.T) {
	b, _ := newTestBridge(t)
	var cs []source.Contact
	for _, u := range []string{"carol", "alice", "bob", "alan"} {
		cs = append(cs, contact("k-"+u, u, "sip:"+u+"@192.0.2.1", t0.Add(time.Hour), "c", 1))
	}
	b.apply(source.Batch{Full: true, Contacts: cs}, t0)
	page := b.List("sip:a", "", 1)
	if len(page) != 1 || page[0].AOR != "sip:alan@example.com" {
		t.Fatalf("first page %+v", page)
	}
	page = b.List("sip:a", "sip:alan@example.com", 10)
	if len(page) != 1 || page[0].AOR != "sip:alice@example.com" || len(page[0].Contacts) != 1 {
		t.Fatalf("second page %+v", page)
	}
	if all := b.List("", "", 0); len(all) != 4 {
		t.Fatalf("all: %d", len(all))
	}
}

// TestListPages: reading page after page of a small limit gives every AOR
// once, in order, whatever order the index holds them in.
func TestListPages(t *testing.T) {
	b, _ := newTestBridge(t)
	var cs, want []string
	for i := range 500 {
		u := fmt.Sprintf("u%03d", (i*7919)%500) // not in order
		cs = append(cs, u)
		want = append(want, "sip:"+u+"@example.com")
	}
	slices.Sort(want)
	var batch []source.Contact
	for _, u := range cs {
		batch = append(batch, contact("k-"+u, u, "sip:"+u+"@192.0.2.1", t0.Add(time.Hour), "c", 1))
	}
	b.apply(source.Batch{Full: true, Contacts: batch}, t0)
	for _, limit := range []int{1, 7, 64, 499, 500, 501} {
		var got []string
		after := ""
		for {
			page := b.List("sip:u", after, limit)
			for _, r := range page {
				got = append(got, r.AOR)
			}
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].AOR
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: %d AORs, first %v", limit, len(got), got[:min(5, len(got))])
		}
	}
	if page := b.List("sip:u1", "sip:u150@example.com", 3); len(page) != 3 || page[0].AOR != "sip:u151@example.com" || page[2].AOR != "sip:u153@example.com" {
		t.Errorf("prefix and after: %+v", page)
	}
}
