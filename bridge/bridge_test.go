package bridge

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/regbridge/regbridge/source"
)

// recorder is a Publisher that keeps every change.
type recorder struct {
	mu      sync.Mutex
	changes []Change
}

func (r *recorder) Publish(c Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *recorder) take() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	return out
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func contact(key, user, uri string, expires time.Time, callid string, cseq uint32) source.Contact {
	return source.Contact{Key: key, AOR: "sip:" + user + "@example.com", URI: uri, Expires: expires, Q: -1, CallID: callid, CSeq: cseq}
}

func newTestBridge(t *testing.T) (*Bridge, *recorder) {
	t.Helper()
	b := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r := &recorder{}
	b.Subscribe(r)
	return b, r
}

type wantContact struct {
	key   string
	state ContactState
	event Event
}

type wantChange struct {
	aor      string
	state    RegState
	contacts []wantContact
}

func checkChanges(t *testing.T, got []Change, want []wantChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.AOR != w.aor || g.State != w.state {
			t.Errorf("change %d: aor=%s state=%s, want aor=%s state=%s", i, g.AOR, g.State, w.aor, w.state)
		}
		if len(g.Contacts) != len(w.contacts) {
			t.Fatalf("change %d: %d contacts %+v, want %d", i, len(g.Contacts), g.Contacts, len(w.contacts))
		}
		for j, wc := range w.contacts {
			gc := g.Contacts[j]
			if gc.Key != wc.key || gc.State != wc.state || gc.Event != wc.event {
				t.Errorf("change %d contact %d: key=%s state=%s event=%s, want %s %s %s", i, j, gc.Key, gc.State, gc.Event, wc.key, wc.state, wc.event)
			}
		}
	}
}

// TestClassify walks the store differences the bridge can see through the
// RFC 3680 4.7.1 transitions that bridgetest.Rules (TestRules) does not
// hold. Each case starts from a baseline holding alice's contact "k1"
// (expires t0+1h, call-id c1, cseq 1).
func TestClassify(t *testing.T) {
	base := contact("k1", "alice", "sip:alice@192.0.2.1:5060", t0.Add(time.Hour), "c1", 1)
	tests := []struct {
		name  string
		now   time.Time
		batch source.Batch
		want  []wantChange
	}{
		{
			name:  "unchanged snapshot reports nothing",
			batch: source.Batch{Full: true, Contacts: []source.Contact{base}},
		},
		{
			name: "new contact is registered",
			batch: source.Batch{Full: true, Contacts: []source.Contact{base,
				contact("k2", "alice", "sip:alice@192.0.2.2", t0.Add(time.Hour), "c2", 1)}},
			want: []wantChange{{"sip:alice@example.com", RegActive, []wantContact{{"k2", ContactActive, EventRegistered}}}},
		},
		{
			name: "new contact of a new AOR is registered",
			batch: source.Batch{Contacts: []source.Contact{
				contact("k2", "bob", "sip:bob@192.0.2.2", t0.Add(time.Hour), "c2", 1)}},
			want: []wantChange{{"sip:bob@example.com", RegActive, []wantContact{{"k2", ContactActive, EventRegistered}}}},
		},
		{
			name: "administrative contact is created",
			batch: source.Batch{Contacts: []source.Contact{func() source.Contact {
				c := contact("ulcx-1", "alice", "sip:alice@192.0.2.9", t0.Add(time.Hour), "c9", 1)
				c.Administrative = true
				return c
			}()}},
			want: []wantChange{{"sip:alice@example.com", RegActive, []wantContact{{"ulcx-1", ContactActive, EventCreated}}}},
		},
		{
			name: "other columns only report nothing",
			batch: source.Batch{Full: true, Contacts: []source.Contact{func() source.Contact {
				c := base
				c.UserAgent = "new agent"
				c.Received = "sip:198.51.100.1:5060"
				return c
			}()}},
		},
		{
			name:  "partial delete is unregistered",
			batch: source.Batch{Deleted: []string{"k1"}},
			want:  []wantChange{{"sip:alice@example.com", RegTerminated, []wantContact{{"k1", ContactTerminated, EventUnregistered}}}},
		},
		{
			name:  "delete of an unknown key reports nothing",
			batch: source.Batch{Deleted: []string{"nope"}},
		},
		{
			name: "new REGISTER with past expiry is unregistered",
			batch: source.Batch{Full: true, Contacts: []source.Contact{
				contact("k1", "alice", base.URI, time.Unix(10, 0), "c1", 2)}},
			want: []wantChange{{"sip:alice@example.com", RegTerminated, []wantContact{{"k1", ContactTerminated, EventUnregistered}}}},
		},
		{
			name:  "row seen after its expiry is expired",
			now:   t0.Add(2 * time.Hour),
			batch: source.Batch{Full: true, Contacts: []source.Contact{base}},
			want:  []wantChange{{"sip:alice@example.com", RegTerminated, []wantContact{{"k1", ContactTerminated, EventExpired}}}},
		},
		{
			name:  "row deleted after its expiry is expired, not unregistered",
			now:   t0.Add(2 * time.Hour),
			batch: source.Batch{Full: true},
			want:  []wantChange{{"sip:alice@example.com", RegTerminated, []wantContact{{"k1", ContactTerminated, EventExpired}}}},
		},
		{
			name: "new row already expired reports nothing",
			batch: source.Batch{Full: true, Contacts: []source.Contact{base,
				contact("k2", "alice", "sip:alice@192.0.2.2", t0.Add(-time.Second), "c2", 1)}},
		},
		{
			name: "URI changed in place is deactivated plus registered",
			batch: source.Batch{Full: true, Contacts: []source.Contact{
				contact("k1", "alice", "sip:alice@203.0.113.5:5060", t0.Add(time.Hour), "c1", 2)}},
			want: []wantChange{{"sip:alice@example.com", RegActive, []wantContact{
				{"k1", ContactTerminated, EventDeactivated}, {"k1", ContactActive, EventRegistered}}}},
		},
		{
			name: "AOR differing only in host case is the same registration",
			batch: source.Batch{Full: true, Contacts: []source.Contact{base, func() source.Contact {
				c := contact("k2", "alice", "sip:alice@192.0.2.2", t0.Add(time.Hour), "c2", 1)
				c.AOR = "sip:alice@EXAMPLE.com"
				return c
			}()}},
			want: []wantChange{{"sip:alice@example.com", RegActive, []wantContact{{"k2", ContactActive, EventRegistered}}}},
		},
		{
			name: "permanent contact added is registered and never expires",
			batch: source.Batch{Contacts: []source.Contact{
				contact("k3", "alice", "sip:alice@192.0.2.3", time.Time{}, "c3", 1)}},
			want: []wantChange{{"sip:alice@example.com", RegActive, []wantContact{{"k3", ContactActive, EventRegistered}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, r := newTestBridge(t)
			b.apply(source.Batch{Full: true, Contacts: []source.Contact{base}}, t0)
			if got := r.take(); len(got) != 0 {
				t.Fatalf("baseline produced %d changes, want none", len(got))
			}
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			b.apply(tt.batch, now)
			checkChanges(t, r.take(), tt.want)
		})
	}
}

func TestIDsStable(t *testing.T) {
	b1, _ := newTestBridge(t)
	b2, _ := newTestBridge(t)
	c := contact("k1", "alice", "sip:alice@192.0.2.1", t0.Add(time.Hour), "c1", 1)
	b1.apply(source.Batch{Full: true, Contacts: []source.Contact{c}}, t0)
	b2.apply(source.Batch{Full: true, Contacts: []source.Contact{c}}, t0)
	r1, _ := b1.Lookup("sip:alice@example.com")
	r2, _ := b2.Lookup("sip:alice@EXAMPLE.COM")
	if r1.ID != r2.ID || r1.Contacts[0].ID != r2.Contacts[0].ID {
		t.Fatalf("ids differ across instances: %s/%s vs %s/%s", r1.ID, r1.Contacts[0].ID, r2.ID, r2.Contacts[0].ID)
	}
	if r1.ID == r1.Contacts[0].ID {
		t.Fatalf("registration and contact id collide")
	}
	empty, _ := b1.Lookup("sip:nobody@example.com")
	if empty.State != RegInit || len(empty.Contacts) != 0 || empty.ID == r1.ID {
		t.Fatalf("unknown AOR: %+v", empty)
	}
}

func TestSeqOrdersLookupAndChanges(t *testing.T) {
	b, r := newTestBridge(t)
	b.apply(source.Batch{Full: true}, t0)
	_, s0 := b.Lookup("sip:alice@example.com")
	b.apply(source.Batch{Contacts: []source.Contact{contact("k1", "alice", "sip:a@192.0.2.1", t0.Add(time.Hour), "c", 1)}}, t0)
	reg, s1 := b.Lookup("sip:alice@example.com")
	got := r.take()
	if len(got) != 1 || got[0].Seq != s1 || s1 != s0+1 || len(reg.Contacts) != 1 {
		t.Fatalf("seq: lookup before %d after %d, changes %+v", s0, s1, got)
	}
}

// TestExpiryClock checks that Run expires a contact at its expiry instant
// by its own clock while the row is still in the store, and that the later
// DELETE of the row reports nothing.
func TestExpiryClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, r := newTestBridge(t)
		ctx, stop := runClock(t, b)

		now := time.Now()
		b.Apply(ctx, source.Batch{Full: true})
		c := contact("k1", "alice", "sip:a@192.0.2.1", now.Add(30*time.Second), "c", 1)
		b.Apply(ctx, source.Batch{Full: true, Contacts: []source.Contact{c}})
		checkChanges(t, r.take(), []wantChange{{"sip:alice@example.com", RegActive, []wantContact{{"k1", ContactActive, EventRegistered}}}})

		time.Sleep(29 * time.Second)
		synctest.Wait()
		if got := r.take(); len(got) != 0 {
			t.Fatalf("expired early: %+v", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := r.take()
		checkChanges(t, got, []wantChange{{"sip:alice@example.com", RegTerminated, []wantContact{{"k1", ContactTerminated, EventExpired}}}})
		if !got[0].At.Equal(now.Add(30 * time.Second)) {
			t.Errorf("expired at %v, want %v", got[0].At, now.Add(30*time.Second))
		}

		// The store still has the row; then the registrar's timer deletes it.
		b.Apply(ctx, source.Batch{Full: true, Contacts: []source.Contact{c}})
		b.Apply(ctx, source.Batch{Full: true})
		if got := r.take(); len(got) != 0 {
			t.Fatalf("stale row or its DELETE reported: %+v", got)
		}

		// A refresh moves the expiry: the old instant passes silently.
		c2 := contact("k2", "alice", "sip:a@192.0.2.2", time.Now().Add(10*time.Second), "c2", 1)
		b.Apply(ctx, source.Batch{Full: true, Contacts: []source.Contact{c2}})
		c2.CSeq, c2.Expires = 2, time.Now().Add(time.Hour)
		b.Apply(ctx, source.Batch{Full: true, Contacts: []source.Contact{c2}})
		r.take()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := r.take(); len(got) != 0 {
			t.Fatalf("refreshed contact expired at its old instant: %+v", got)
		}
		stop()
	})
}

// runClock runs b's expiry clock until stop, which checks that Run
// ended cleanly; ctx ends at stop.
func runClock(t *testing.T, b *Bridge) (ctx context.Context, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	return ctx, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestAORForms: CanonicalAOR lowers scheme and host and drops
// parameters; WithScheme completes the form operators type.
func TestAORForms(t *testing.T) {
	for _, f := range []struct {
		name  string
		fn    func(string) string
		cases map[string]string
	}{
		{"CanonicalAOR", CanonicalAOR, map[string]string{
			"sip:alice@example.com":               "sip:alice@example.com",
			"SIP:Alice@Example.COM":               "sip:Alice@example.com",
			"sip:alice@example.com;transport=tcp": "sip:alice@example.com",
			" sips:bob@EX.org?subject=x ":         "sips:bob@ex.org",
			"tel:+15551234":                       "tel:+15551234",
		}},
		{"WithScheme", WithScheme, map[string]string{
			"alice@example.com":      "sip:alice@example.com",
			" alice@example.com ":    "sip:alice@example.com",
			"alice":                  "sip:alice",
			"sip:alice@example.com":  "sip:alice@example.com",
			"SIPS:alice@example.com": "SIPS:alice@example.com",
			"tel:+15551234":          "tel:+15551234",
			"alice:pw@example.com":   "sip:alice:pw@example.com",
		}},
	} {
		for in, want := range f.cases {
			if got := f.fn(in); got != want {
				t.Errorf("%s(%q) = %q, want %q", f.name, in, got, want)
			}
		}
	}
}
