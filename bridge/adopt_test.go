package bridge

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/regbridge/regbridge/source"
)

// TestAdoptAnnouncesNothing: adopted contacts reach no Publisher, the
// Persister included, and are in Lookup, List and Stats at the sequence
// of the last change.
func TestAdoptAnnouncesNothing(t *testing.T) {
	b, r := newTestBridge(t)
	p := NewPersister(b, writerFunc(func([]source.Contact, []string) {}), b.log)
	b.Subscribe(p)
	b.apply(source.Batch{Full: true}, t0)
	b.apply(source.Batch{Contacts: []source.Contact{contact("k0", "carol", "sip:c@1", t0.Add(time.Hour), "c0", 1)}}, t0)
	r.take()
	p.pending = map[string]*source.Contact{}
	_, before := b.Lookup("sip:alice@example.com")

	b.adopt([]source.Contact{
		contact("k1", "alice", "sip:a@1", t0.Add(time.Hour), "c1", 1),
		contact("k2", "alice", "sip:a@2", time.Time{}, "c2", 1), // permanent
		contact("k3", "bob", "sip:b@1", t0.Add(time.Hour), "c3", 1),
	}, t0)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("Adopt announced %+v", got)
	}
	if len(p.pending) != 0 {
		t.Fatalf("Adopt reached the Persister: %v", p.pending)
	}
	reg, seq := b.Lookup("sip:alice@example.com")
	if seq != before || reg.State != RegActive || len(reg.Contacts) != 2 ||
		reg.Contacts[0].Event != EventRegistered || reg.Contacts[0].State != ContactActive {
		t.Fatalf("Lookup after Adopt: seq %d (before %d) %+v", seq, before, reg)
	}
	if st := b.Stats(); st != (Stats{AORs: 3, Contacts: 4}) || b.contacts.Load() != 4 {
		t.Fatalf("stats %+v, counter %d", st, b.contacts.Load())
	}
	if l := b.List("", "", 0); len(l) != 3 {
		t.Fatalf("List: %d registrations", len(l))
	}
}

// TestAdoptedChanges: refresh, unregister and expiry of adopted contacts
// are announced as for the baseline's, with sequences after Lookup's.
func TestAdoptedChanges(t *testing.T) {
	b, r := newTestBridge(t)
	b.apply(source.Batch{Full: true}, t0)
	k1 := contact("k1", "alice", "sip:a@1", t0.Add(time.Hour), "c1", 1)
	k2 := contact("k2", "bob", "sip:b@1", t0.Add(time.Hour), "c2", 1)
	k3 := contact("k3", "carol", "sip:c@1", t0.Add(time.Minute), "c3", 1)
	b.adopt([]source.Contact{k1, k2, k3}, t0)
	_, seq := b.Lookup(k1.AOR)

	k1.CSeq, k1.Expires = 2, t0.Add(2*time.Hour)
	b.apply(source.Batch{Contacts: []source.Contact{k1}, Deleted: []string{"k2"}}, t0)
	got := r.take()
	checkChanges(t, got, []wantChange{
		{k1.AOR, RegActive, []wantContact{{"k1", ContactActive, EventRefreshed}}},
		{k2.AOR, RegTerminated, []wantContact{{"k2", ContactTerminated, EventUnregistered}}},
	})
	if got[0].Seq != seq+1 || got[1].Seq != seq+2 {
		t.Errorf("seqs %d %d after Lookup at %d", got[0].Seq, got[1].Seq, seq)
	}
	b.expireDue(t0.Add(time.Minute))
	checkChanges(t, r.take(), []wantChange{{k3.AOR, RegTerminated, []wantContact{{"k3", ContactTerminated, EventExpired}}}})
}

// TestAdoptReplaces: Adopt of a held key replaces it silently, in place
// (the same contact keeps its event) or by another URI or AOR.
func TestAdoptReplaces(t *testing.T) {
	b, r := newTestBridge(t)
	b.apply(source.Batch{Full: true}, t0)
	c := contact("k1", "alice", "sip:a@1", t0.Add(time.Hour), "c1", 1)
	c.Administrative = true
	b.apply(source.Batch{Contacts: []source.Contact{c}}, t0)
	r.take()

	c.CSeq, c.Expires = 5, t0.Add(3*time.Hour)
	b.adopt([]source.Contact{c}, t0)
	reg, _ := b.Lookup(c.AOR)
	if len(reg.Contacts) != 1 || reg.Contacts[0].CSeq != 5 || reg.Contacts[0].Event != EventCreated || !reg.Contacts[0].Since.Equal(t0) {
		t.Fatalf("in place: %+v", reg.Contacts)
	}
	c.URI = "sip:a@2"
	b.adopt([]source.Contact{c}, t0)
	if reg, _ = b.Lookup(c.AOR); len(reg.Contacts) != 1 || reg.Contacts[0].URI != "sip:a@2" {
		t.Fatalf("new URI: %+v", reg.Contacts)
	}
	c.AOR = "sip:bob@example.com"
	b.adopt([]source.Contact{c}, t0)
	if reg, _ = b.Lookup("sip:alice@example.com"); reg.State != RegInit || len(reg.Contacts) != 0 {
		t.Fatalf("old AOR kept: %+v", reg)
	}
	if reg, _ = b.Lookup(c.AOR); len(reg.Contacts) != 1 {
		t.Fatalf("new AOR: %+v", reg)
	}
	if st := b.Stats(); st != (Stats{AORs: 1, Contacts: 1}) || b.contacts.Load() != 1 {
		t.Fatalf("stats %+v, counter %d", st, b.contacts.Load())
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("replacements announced %+v", got)
	}
	// The next change builds on the last adopted state.
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{c}}, t0)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("unchanged adopted contact announced %+v", got)
	}
	b.apply(source.Batch{Full: true}, t0)
	checkChanges(t, r.take(), []wantChange{{c.AOR, RegTerminated, []wantContact{{"k1", ContactTerminated, EventUnregistered}}}})
}

// TestAdoptExpiredAndReady: once Ready, a contact past its expiry is not
// adopted (a held one is dropped); before, it is kept for the first
// snapshot to diff, which stays a baseline for the rest.
func TestAdoptExpiredAndReady(t *testing.T) {
	b, r := newTestBridge(t)
	b.apply(source.Batch{Full: true}, t0)
	live := contact("k1", "alice", "sip:a@1", t0.Add(time.Hour), "c1", 1)
	b.adopt([]source.Contact{live}, t0)
	past := live
	past.Expires = t0.Add(-time.Second)
	b.adopt([]source.Contact{past, contact("k2", "bob", "sip:b@1", t0, "c2", 1)}, t0)
	if st := b.Stats(); st.Contacts != 0 {
		t.Fatalf("expired contacts adopted: %+v", st)
	}
	b.expireDue(t0.Add(time.Hour))
	if got := r.take(); len(got) != 0 {
		t.Fatalf("announced %+v", got)
	}

	b, r = newTestBridge(t)
	lapsed := contact("k3", "carol", "sip:c@1", t0.Add(-time.Minute), "c3", 1)
	gone := contact("k4", "dave", "sip:d@1", t0.Add(time.Hour), "c4", 1)
	b.adopt([]source.Contact{live, lapsed, gone}, t0)
	if b.Ready() || b.Stats().Contacts != 3 {
		t.Fatalf("before the first snapshot: ready %v, stats %+v", b.Ready(), b.Stats())
	}
	refreshed := lapsed
	refreshed.CSeq, refreshed.Expires = 2, t0.Add(time.Hour)
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{live, refreshed,
		contact("k5", "erin", "sip:e@1", t0.Add(time.Hour), "c5", 1)}}, t0)
	checkChanges(t, r.take(), []wantChange{
		{lapsed.AOR, RegActive, []wantContact{{"k3", ContactActive, EventRefreshed}}},
		{gone.AOR, RegTerminated, []wantContact{{"k4", ContactTerminated, EventUnregistered}}},
	})
}

// TestForget: Forget announces nothing, frees the forgotten AORs' state,
// timers and tombstones, and a later contact of them is new.
func TestForget(t *testing.T) {
	b, r := newTestBridge(t)
	b.apply(source.Batch{Full: true}, t0)
	var all []source.Contact
	for i := range 300 {
		user := []string{"alice", "bob", "carol"}[i%3]
		all = append(all, contact(fmt.Sprintf("k%d", i), user, fmt.Sprintf("sip:%s@%d", user, i), t0.Add(time.Hour+time.Duration(i)*time.Second), "c", 1))
	}
	b.adopt(all, t0)
	reg, _ := b.Lookup("sip:carol@example.com")
	if _, err := b.Act(reg.Contacts[0].AOR, reg.Contacts[0].ID, EventDeactivated, 0); err != nil {
		t.Fatal(err)
	}
	r.take()
	_, seq := b.Lookup("")

	isCarol := func(aor string) bool { return aor == "sip:carol@example.com" }
	if n := b.Forget(isCarol); n != 99 {
		t.Fatalf("forgot %d contacts, want 99", n)
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("Forget announced %+v", got)
	}
	if reg, s := b.Lookup("sip:carol@example.com"); reg.State != RegInit || len(reg.Contacts) != 0 || s != seq {
		t.Fatalf("forgotten AOR: %+v at %d (was %d)", reg, s, seq)
	}
	if st := b.Stats(); st != (Stats{AORs: 2, Contacts: 200}) || b.contacts.Load() != 200 || len(b.tombstones) != 0 {
		t.Fatalf("stats %+v, counter %d, tombstones %d", st, b.contacts.Load(), len(b.tombstones))
	}
	if len(b.expiries) != 200 {
		t.Fatalf("%d armed expiries, want 200", len(b.expiries))
	}
	if n := b.Forget(func(string) bool { return true }); n != 200 {
		t.Fatalf("forgot %d contacts, want 200", n)
	}
	if b.aors.n != 0 || b.byKey.n != 0 || len(b.expiries) != 0 || cap(b.expiries) != 0 ||
		len(b.tombstones) != 0 || len(b.pending) != 0 || b.contacts.Load() != 0 || len(b.byKey.slots) > minIndexSlots {
		t.Fatalf("state left: aors %d keys %d (%d slots) expiries %d/%d tombstones %d pending %d counter %d",
			b.aors.n, b.byKey.n, len(b.byKey.slots), len(b.expiries), cap(b.expiries), len(b.tombstones), len(b.pending), b.contacts.Load())
	}
	if n := b.Forget(func(string) bool { return true }); n != 0 {
		t.Fatalf("forgot %d contacts of an empty bridge", n)
	}
	b.expireDue(t0.Add(48 * time.Hour))
	if got := r.take(); len(got) != 0 {
		t.Fatalf("forgotten contacts expired: %+v", got)
	}

	// The operator-ended row is a new contact now, and so is the rest.
	admin := all[2]
	admin.Administrative = true
	b.apply(source.Batch{Contacts: []source.Contact{all[0], admin}}, t0)
	checkChanges(t, r.take(), []wantChange{
		{all[0].AOR, RegActive, []wantContact{{all[0].Key, ContactActive, EventRegistered}}},
		{admin.AOR, RegActive, []wantContact{{admin.Key, ContactActive, EventCreated}}},
	})
}

// TestForgottenTimersStayQuiet: Run does not expire forgotten contacts.
func TestForgottenTimersStayQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, r := newTestBridge(t)
		ctx, stop := runClock(t, b)
		b.Apply(ctx, source.Batch{Full: true})
		now := time.Now()
		b.Adopt([]source.Contact{
			contact("k1", "alice", "sip:a@1", now.Add(10*time.Second), "c1", 1),
			contact("k2", "bob", "sip:b@1", now.Add(20*time.Second), "c2", 1),
		})
		synctest.Wait()
		b.Forget(func(aor string) bool { return aor == "sip:alice@example.com" })
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := r.take(); len(got) != 0 {
			t.Fatalf("forgotten contact expired: %+v", got)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		checkChanges(t, r.take(), []wantChange{{"sip:bob@example.com", RegTerminated, []wantContact{{"k2", ContactTerminated, EventExpired}}}})
		stop()
	})
}

// TestAdoptForgetConcurrent runs Adopt and Forget of some AORs alongside
// Apply, Act, the expiry clock and the readers of others (go test
// -race): only the applied AORs are announced, and the counts agree.
func TestAdoptForgetConcurrent(t *testing.T) {
	b, r := newTestBridge(t)
	ctx, stop := runClock(t, b)
	b.Apply(ctx, source.Batch{Full: true})
	now := time.Now()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // a source: the "applied" AORs
		defer wg.Done()
		for i := range 200 {
			c := contact(fmt.Sprintf("a%d", i%20), fmt.Sprintf("applied%d", i%5), fmt.Sprintf("sip:x@%d", i%20), now.Add(time.Hour), "c", uint32(i))
			b.Apply(ctx, source.Batch{Contacts: []source.Contact{c}})
			if i%7 == 0 {
				b.Apply(ctx, source.Batch{Deleted: []string{c.Key}})
			}
		}
	}()
	go func() { // an owner gaining and losing the "owned" AORs
		defer wg.Done()
		for i := range 200 {
			var cs []source.Contact
			for j := range 10 {
				cs = append(cs, contact(fmt.Sprintf("o%d", j), fmt.Sprintf("owned%d", j%3), fmt.Sprintf("sip:y@%d", j), now.Add(time.Hour+time.Duration(j)*time.Millisecond), "c", uint32(i)))
			}
			b.Adopt(cs)
			b.Forget(func(aor string) bool { return strings.HasPrefix(aor, "sip:owned") && i%2 == 0 })
		}
	}()
	go func() { // readers
		defer wg.Done()
		for range 200 {
			b.Lookup("sip:owned1@example.com")
			b.List("", "", 10)
			b.Stats()
			n := 0
			b.EachContact(func(*source.Contact) { n++ })
			reg, _ := b.Lookup("sip:applied1@example.com")
			if len(reg.Contacts) > 0 {
				b.Act(reg.AOR, reg.Contacts[0].ID, EventRejected, 0)
			}
		}
	}()
	wg.Wait()
	stop()
	for _, ch := range r.take() {
		if !strings.HasPrefix(ch.AOR, "sip:applied") {
			t.Fatalf("announced %s (%+v)", ch.AOR, ch.Contacts)
		}
	}
	n := 0
	b.EachContact(func(*source.Contact) { n++ })
	if st := b.Stats(); st.Contacts != n || int64(n) != b.contacts.Load() {
		t.Fatalf("stats %+v, %d contacts listed, counter %d", st, n, b.contacts.Load())
	}
}
