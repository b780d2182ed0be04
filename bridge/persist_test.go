package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// TestRestoreDiffsFirstSnapshot: what changed while regbridge was down is
// announced as what it was, once; nothing else is.
func TestRestoreDiffsFirstSnapshot(t *testing.T) {
	b, r := newTestBridge(t)
	before := []source.Contact{
		contact("gone", "a", "sip:a@1", t0.Add(time.Hour), "c1", 1),
		contact("lapsed", "b", "sip:b@1", t0.Add(time.Minute), "c2", 1),
		contact("kept", "c", "sip:c@1", t0.Add(time.Hour), "c3", 1),
		contact("fresh", "d", "sip:d@1", t0.Add(time.Hour), "c4", 1),
	}
	b.Restore(before)
	if b.Ready() {
		t.Fatal("ready before the first snapshot")
	}
	if next := b.expireDue(t0.Add(2 * time.Minute)); next.IsZero() {
		t.Fatal("expiry clock ran before the first snapshot")
	}
	now := t0.Add(2 * time.Minute)
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{
		contact("kept", "c", "sip:c@1", t0.Add(time.Hour), "c3", 1),
		contact("fresh", "d", "sip:d@1", t0.Add(2*time.Hour), "c4", 2),
		contact("new", "e", "sip:e@1", t0.Add(time.Hour), "c5", 1),
	}}, now)
	if !b.Ready() {
		t.Fatal("not ready after the first snapshot")
	}
	got := map[string]Event{}
	for _, c := range r.take() {
		for _, v := range c.Contacts {
			if _, dup := got[v.Key]; dup {
				t.Errorf("%s announced twice", v.Key)
			}
			got[v.Key] = v.Event
		}
	}
	want := map[string]Event{"gone": EventUnregistered, "lapsed": EventExpired, "fresh": EventRefreshed, "new": EventRegistered}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for k, e := range want {
		if got[k] != e {
			t.Errorf("%s: %q, want %q", k, got[k], e)
		}
	}
}

type writerFunc func(ups []source.Contact, dels []string)

func (f writerFunc) WriteContacts(_ context.Context, ups []source.Contact, dels []string) error {
	f(ups, dels)
	return nil
}

func TestPersisterCoalesces(t *testing.T) {
	b, _ := newTestBridge(t)
	var mu sync.Mutex
	state := map[string]source.Contact{}
	p := NewPersister(b, writerFunc(func(ups []source.Contact, dels []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range ups {
			state[c.Key] = c
		}
		for _, k := range dels {
			delete(state, k)
		}
	}), b.log)
	b.Subscribe(p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	now := time.Now()
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{contact("k1", "a", "sip:a@1", now.Add(time.Hour), "c1", 1)}}, now)
	b.apply(source.Batch{Contacts: []source.Contact{contact("k2", "b", "sip:b@1", now.Add(time.Hour), "c2", 1)}}, now)
	b.apply(source.Batch{Deleted: []string{"k1"}}, now)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if _, ok := state["k2"]; !ok || len(state) != 1 {
		t.Fatalf("recorded %v, want k2 only", state)
	}
}
