package conformance

import (
	"fmt"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/bridgetest"
	"github.com/regbridge/regbridge/source/sourcetest"
)

// Run runs every conformance case against h, one subtest each.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, h)
			c.run(e)
			e.finish()
		})
	}
}

// shortLife is the lifetime of bindings that must expire during a case:
// long enough to be delivered while still active on a loaded machine,
// short enough to keep the suite quick.
const shortLife = 3 * time.Second

var cases = []struct {
	name string
	run  func(e *env)
}{
	{"baseline", testBaseline},
	{"create", testCreate},
	{"refresh", testRefresh},
	{"shorten", testShorten},
	{"delete", testDelete},
	{"event rules", testRules},
	{"expiry passes while the row stays", testExpiry},
	{"bad row skipped and counted", testBadRow},
	{"outage with the store unchanged", testOutageUnchanged},
	{"outage with changes", testOutageChanges},
}

// Rows present at start are the first Full batch, decoded exactly
// (including a permanent binding), and announce nothing.
func testBaseline(e *env) {
	a := e.row("alice", e.now.Add(time.Hour))
	b := e.row("bob", time.Time{})
	e.h.Insert(e.t, a)
	e.h.Insert(e.t, b)
	e.start()
	first := e.waitFull(0, "first batch")
	if d := e.diff(first.byURI, []Row{a, b}); d != "" {
		e.t.Errorf("first batch: %s", d)
	}
	if c := first.byURI[b.URI]; !c.Permanent() {
		e.t.Errorf("permanent binding reported with Expires %v", c.Expires)
	}
	if first.byURI[a.URI].Key == first.byURI[b.URI].Key {
		e.t.Errorf("two bindings share key %q", first.byURI[a.URI].Key)
	}
	// The sink sees a batch before the adapter records that it was
	// delivered (Apply has not returned yet), so the Stats may lag it.
	sourcetest.Eventually(e.t, "Stats after first batch: Up, Polls > 0, LastFull set", func() bool {
		st := e.rep.Stats()
		return st.Up && st.Polls > 0 && !st.LastFull.IsZero()
	})
	e.checkEvents(0, nil)
}

func testCreate(e *env) {
	e.start()
	if first := e.waitFull(0, "first batch"); len(first.byURI) != 0 {
		e.t.Fatalf("first batch of an empty store holds %d contacts", len(first.byURI))
	}
	a := e.row("alice", e.now.Add(time.Hour))
	e.h.Insert(e.t, a)
	e.waitState("created binding", a)
	e.checkEvents(0, map[string][]bridge.Event{a.URI: {bridge.EventRegistered}})
}

func testRefresh(e *env) {
	a := e.row("alice", e.now.Add(time.Hour))
	e.h.Insert(e.t, a)
	e.start()
	key := e.waitState("baseline", a)[a.URI].Key
	r := a
	r.CSeq++
	r.Expires = a.Expires.Add(time.Hour)
	r.UserAgent = "suite-phone/2.0"
	e.h.Update(e.t, r)
	if got := e.waitState("refreshed binding", r)[a.URI].Key; got != key {
		e.t.Errorf("key changed on refresh: %q -> %q", key, got)
	}
	e.checkEvents(0, map[string][]bridge.Event{a.URI: {bridge.EventRefreshed}})
}

// Same REGISTER (Call-ID, CSeq), earlier expiry: an operator or the
// registrar shortened the binding.
func testShorten(e *env) {
	a := e.row("alice", e.now.Add(time.Hour))
	e.h.Insert(e.t, a)
	e.start()
	e.waitState("baseline", a)
	r := a
	r.Expires = e.now.Add(30 * time.Minute)
	e.h.Update(e.t, r)
	e.waitState("shortened binding", r)
	e.checkEvents(0, map[string][]bridge.Event{a.URI: {bridge.EventShortened}})
}

func testDelete(e *env) {
	a := e.row("alice", e.now.Add(time.Hour))
	b := e.row("alice", e.now.Add(time.Hour))
	e.h.Insert(e.t, a)
	e.h.Insert(e.t, b)
	e.start()
	e.waitState("baseline", a, b)
	e.h.Delete(e.t, a)
	e.waitState("one binding deleted", b)
	e.checkEvents(0, map[string][]bridge.Event{a.URI: {bridge.EventUnregistered}})
}

// Every one of bridgetest.Rules the store can hold at once, one binding
// each, written by the harness into the store: the events are the ones
// the bridge's own tests get by applying the same changes to it directly.
func testRules(e *env) {
	var rules []bridgetest.Rule
	for _, r := range bridgetest.Rules {
		if r.Change.CallID == "" || !e.limits.FixedCallID {
			rules = append(rules, r)
		}
	}
	was := make([]Row, len(rules))
	for i := range was {
		was[i] = e.row(fmt.Sprintf("rule%d", i), e.now.Add(time.Hour))
		e.h.Insert(e.t, was[i])
	}
	e.start()
	e.waitState("baseline", was...)
	var now []Row
	want := map[string][]bridge.Event{}
	for i, r := range rules {
		want[was[i].URI] = r.Want
		if r.Change.Delete {
			e.h.Delete(e.t, was[i])
			continue
		}
		b := r.Change.Apply(bridgetest.Binding{Expires: was[i].Expires, CallID: was[i].CallID, CSeq: was[i].CSeq, UserAgent: was[i].UserAgent})
		row := was[i]
		row.Expires, row.CallID, row.CSeq, row.UserAgent = b.Expires, b.CallID, b.CSeq, b.UserAgent
		e.h.Update(e.t, row)
		now = append(now, row)
	}
	e.waitState("every rule's change", now...)
	e.checkEvents(0, want)
}

// Registrars delete expired rows late; the adapter keeps reporting such a
// row with its expiry, and the bridge expires it at that instant.
func testExpiry(e *env) {
	e.start()
	e.waitFull(0, "first batch")
	a := e.row("alice", time.Now().Add(shortLife).Truncate(time.Second).UTC())
	e.h.Insert(e.t, a)
	e.waitState("short-lived binding", a)
	ex := e.waitEvent(0, a.URI, bridge.EventExpired)
	if ex.at.Before(a.Expires) || ex.at.After(a.Expires.Add(5*time.Second)) {
		e.t.Errorf("expired at %v, want at its expiry %v", ex.at, a.Expires)
	}
	// Another write makes the adapter read again; the expired row stays.
	b := e.row("bob", e.now.Add(time.Hour))
	e.h.Insert(e.t, b)
	e.waitState("expired row still reported beside a new one", a, b)
	e.checkEvents(0, map[string][]bridge.Event{
		a.URI: {bridge.EventRegistered, bridge.EventExpired},
		b.URI: {bridge.EventRegistered},
	})
}

func testBadRow(e *env) {
	a := e.row("alice", e.now.Add(time.Hour))
	bad := e.row("mallory", e.now.Add(time.Hour))
	c := e.row("carol", e.now.Add(time.Hour))
	e.h.Insert(e.t, a)
	e.h.InsertBad(e.t, bad)
	e.h.Insert(e.t, c)
	e.start()
	first := e.waitFull(0, "first batch")
	if d := e.diff(first.byURI, []Row{a, c}); d != "" {
		e.t.Errorf("first batch: %s", d)
	}
	skipped := e.rep.Stats().Skipped
	if skipped == 0 {
		e.t.Errorf("Stats().Skipped = 0 after a bad row")
	}
	// The adapter keeps working: another bad row is skipped too, a good
	// one arrives.
	bad2 := e.row("mallory", e.now.Add(time.Hour))
	d := e.row("dave", e.now.Add(time.Hour))
	e.h.InsertBad(e.t, bad2)
	e.h.Insert(e.t, d)
	e.waitState("good rows only", a, c, d)
	sourcetest.Eventually(e.t, "second bad row counted", func() bool { return e.rep.Stats().Skipped > skipped })
	e.checkEvents(0, map[string][]bridge.Event{d.URI: {bridge.EventRegistered}})
}

// breakStore cuts the store and waits until the adapter reports it down.
func (e *env) breakStore() {
	e.t.Helper()
	errs := e.rep.Stats().Errors
	e.h.Break(e.t)
	sourcetest.Eventually(e.t, "Stats().Up false during the outage", func() bool { return !e.rep.Stats().Up })
	if got := e.rep.Stats().Errors; got <= errs {
		e.t.Errorf("Stats().Errors = %d during the outage, want more than %d", got, errs)
	}
}

// restoreStore brings the store back and returns the first Full batch read
// after that.
func (e *env) restoreStore() batch {
	e.t.Helper()
	lastFull := e.rep.Stats().LastFull
	n := e.batchCount()
	e.h.Restore(e.t)
	b := e.waitFull(n, "Full batch after recovery")
	sourcetest.Eventually(e.t, "Stats().Up true and LastFull later after recovery", func() bool {
		st := e.rep.Stats()
		return st.Up && st.LastFull.After(lastFull)
	})
	return b
}

// An outage with no change in the store produces no event at all.
func testOutageUnchanged(e *env) {
	a := e.row("alice", e.now.Add(time.Hour))
	b := e.row("bob", time.Time{})
	e.h.Insert(e.t, a)
	e.h.Insert(e.t, b)
	e.start()
	e.waitFull(0, "first batch")
	e.breakStore()
	after := e.restoreStore()
	if d := e.diff(after.byURI, []Row{a, b}); d != "" {
		e.t.Errorf("Full batch after recovery: %s", d)
	}
	e.checkEvents(0, nil)
}

// Changes during an outage arrive in the Full batch after it and become
// exactly the real events; a binding whose expiry passed during the outage
// is expired once, at its expiry, not again at recovery.
func testOutageChanges(e *env) {
	gone := e.row("alice", e.now.Add(time.Hour))
	lapses := e.row("bob", time.Now().Add(shortLife).Truncate(time.Second).UTC())
	refreshed := e.row("carol", e.now.Add(time.Hour))
	same := e.row("dave", e.now.Add(time.Hour))
	for _, r := range []Row{gone, lapses, refreshed, same} {
		e.h.Insert(e.t, r)
	}
	e.start()
	e.waitState("baseline", gone, lapses, refreshed, same)

	e.breakStore()
	e.h.Delete(e.t, gone)
	r := refreshed
	r.CSeq++
	r.Expires = refreshed.Expires.Add(time.Hour)
	e.h.Update(e.t, r)
	added := e.row("erin", e.now.Add(time.Hour))
	e.h.Insert(e.t, added)
	ex := e.waitEvent(0, lapses.URI, bridge.EventExpired)
	if ex.at.Before(lapses.Expires) {
		e.t.Errorf("expired at %v, before its expiry %v", ex.at, lapses.Expires)
	}

	after := e.restoreStore()
	if d := e.diff(after.byURI, []Row{lapses, r, same, added}); d != "" {
		e.t.Errorf("Full batch after recovery: %s", d)
	}
	e.checkEvents(0, map[string][]bridge.Event{
		gone.URI:      {bridge.EventUnregistered},
		lapses.URI:    {bridge.EventExpired},
		refreshed.URI: {bridge.EventRefreshed},
		added.URI:     {bridge.EventRegistered},
	})
}
