package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
)

// batch is a recorded copy of one source.Batch, indexed by contact URI.
type batch struct {
	full    bool
	byURI   map[string]source.Contact
	deleted []string
}

// recorder is the sink the adapter runs into: it feeds a real bridge and
// keeps what it saw, including contract violations, for the test goroutine
// to check.
type recorder struct {
	br *bridge.Bridge

	// mu guards everything below.
	mu       sync.Mutex
	batches  []batch
	state    map[string]source.Contact // by Key, as a receiver would hold it
	problems []string
}

func (r *recorder) Apply(ctx context.Context, b source.Batch) error {
	// The bridge first: once the recorder shows a batch, its events exist.
	if err := r.br.Apply(ctx, b); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) == 0 && !b.Full {
		r.problems = append(r.problems, "first batch is not Full")
	}
	if b.SeenAt.IsZero() {
		r.problems = append(r.problems, fmt.Sprintf("batch %d has no SeenAt", len(r.batches)))
	}
	if b.Full && len(b.Deleted) > 0 {
		r.problems = append(r.problems, fmt.Sprintf("Full batch %d lists Deleted keys", len(r.batches)))
	}
	rec := batch{full: b.Full, byURI: make(map[string]source.Contact, len(b.Contacts)), deleted: slices.Clone(b.Deleted)}
	if b.Full {
		clear(r.state)
	}
	keys := make(map[string]bool, len(b.Contacts))
	for _, c := range b.Contacts {
		if keys[c.Key] {
			r.problems = append(r.problems, fmt.Sprintf("batch %d holds key %q twice", len(r.batches), c.Key))
		}
		keys[c.Key] = true
		rec.byURI[c.URI] = c
		r.state[c.Key] = c
	}
	for _, k := range b.Deleted {
		delete(r.state, k)
	}
	r.batches = append(r.batches, rec)
	return nil
}

// eventLog records every bridge change, flattened per contact.
type eventLog struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	uri, key string
	ev       bridge.Event
	at       time.Time
}

func (l *eventLog) Publish(c bridge.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cv := range c.Contacts {
		l.events = append(l.events, event{uri: cv.URI, key: cv.Key, ev: cv.Event, at: c.At})
	}
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// since returns the events after the first n, grouped by URI.
func (l *eventLog) since(n int) map[string][]event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]event)
	for _, e := range l.events[min(n, len(l.events)):] {
		out[e.uri] = append(out[e.uri], e)
	}
	return out
}

// env is one subtest's adapter, bridge and store.
type env struct {
	t      *testing.T
	h      Harness
	limits Limits
	src    source.Source
	rep    source.Reporter
	br     *bridge.Bridge
	rec    *recorder
	ev     *eventLog
	nextID int
	now    time.Time // whole seconds, fixed at the subtest's start
	stop   func()
}

func newEnv(t *testing.T, h Harness) *env {
	e := &env{t: t, h: h, now: time.Now().Truncate(time.Second).UTC()}
	if l, ok := h.(Limiter); ok {
		e.limits = l.Limits()
	}
	e.src = h.NewSource(t)
	rep, ok := e.src.(source.Reporter)
	if !ok {
		t.Fatal("adapter does not implement source.Reporter (Stats)")
	}
	e.rep = rep
	e.br = bridge.New(slog.New(slog.DiscardHandler))
	e.ev = &eventLog{}
	e.br.Subscribe(e.ev)
	e.rec = &recorder{br: e.br, state: make(map[string]source.Contact)}
	return e
}

// row makes a binding for user with the given expiry (zero: permanent).
func (e *env) row(user string, expires time.Time) Row {
	e.nextID++
	id := e.nextID
	return Row{
		ID: id, User: user, Domain: Domain, AOR: "sip:" + user + "@" + Domain,
		URI:       fmt.Sprintf("sip:%s@192.0.2.%d:5060;transport=tcp", user, id),
		Expires:   expires,
		CallID:    fmt.Sprintf("%08x-suite@192.0.2.%d", id*7919, id),
		CSeq:      uint32(100 + id),
		UserAgent: fmt.Sprintf("suite-phone/%d.0", id),
	}
}

// start runs the adapter and the bridge's expiry clock until the subtest
// ends; stop cancels both and checks that Run returned nil.
func (e *env) start() {
	t := e.t
	ctx, cancel := context.WithCancel(context.Background())
	srcDone := make(chan error, 1)
	brDone := make(chan error, 1)
	go func() { srcDone <- e.src.Run(ctx, e.rec) }()
	go func() { brDone <- e.br.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-srcDone:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(sourcetest.WaitTimeout):
				t.Errorf("Run did not return within %v of cancel", sourcetest.WaitTimeout)
			}
			<-brDone
		})
	}
	t.Cleanup(e.stop)
}

// finish stops the adapter and reports sink contract violations.
func (e *env) finish() {
	e.t.Helper()
	e.stop()
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for _, p := range e.rec.problems {
		e.t.Error(p)
	}
}

func (e *env) batchCount() int {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	return len(e.rec.batches)
}

// waitFull waits for a Full batch after the first n and returns it.
func (e *env) waitFull(n int, what string) batch {
	e.t.Helper()
	var got batch
	sourcetest.Eventually(e.t, what, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		for _, b := range e.rec.batches[min(n, len(e.rec.batches)):] {
			if b.full {
				got = b
				return true
			}
		}
		return false
	})
	return got
}

// stateByURI is the receiver's current view, by contact URI.
func (e *env) stateByURI() map[string]source.Contact {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	m := make(map[string]source.Contact, len(e.rec.state))
	for _, c := range e.rec.state {
		m[c.URI] = c
	}
	return m
}

// waitState waits until the receiver's view holds exactly rows (matched
// field by field) and returns it.
func (e *env) waitState(what string, rows ...Row) map[string]source.Contact {
	e.t.Helper()
	var last map[string]source.Contact
	deadline := time.Now().Add(sourcetest.WaitTimeout)
	for {
		last = e.stateByURI()
		if e.diff(last, rows) == "" {
			return last
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s: %s", what, e.diff(last, rows))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// diff describes how contacts differ from rows ("" when they match).
func (e *env) diff(contacts map[string]source.Contact, rows []Row) string {
	var out []string
	want := make(map[string]bool, len(rows))
	for _, r := range rows {
		want[r.URI] = true
		c, ok := contacts[r.URI]
		if !ok {
			out = append(out, "missing "+r.URI)
			continue
		}
		if d := e.match(c, r); d != "" {
			out = append(out, r.URI+": "+d)
		}
	}
	for _, uri := range slices.Sorted(maps.Keys(contacts)) {
		if !want[uri] {
			out = append(out, "unexpected "+uri)
		}
	}
	return strings.Join(out, "; ")
}

// match compares one reported contact with the row that was written.
func (e *env) match(c source.Contact, r Row) string {
	var d []string
	check := func(field string, ok bool, got, want any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s = %v, want %v", field, got, want))
		}
	}
	check("Key", c.Key != "", c.Key, "non-empty")
	check("AOR", c.AOR == r.AOR, c.AOR, r.AOR)
	check("Expires", c.Expires.Equal(r.Expires), c.Expires, r.Expires)
	check("CallID", c.CallID == r.CallID, c.CallID, r.CallID)
	check("UserAgent", c.UserAgent == r.UserAgent, c.UserAgent, r.UserAgent)
	if !e.limits.NoCSeq {
		check("CSeq", c.CSeq == r.CSeq, c.CSeq, r.CSeq)
	}
	return strings.Join(d, ", ")
}

// waitPolls waits until the adapter has polled its store n more times.
func (e *env) waitPolls(n uint64) {
	e.t.Helper()
	p := e.rep.Stats().Polls
	sourcetest.Eventually(e.t, fmt.Sprintf("%d more polls", n), func() bool { return e.rep.Stats().Polls >= p+n })
}

// waitEvent waits for an event ev of uri after the first n events.
func (e *env) waitEvent(n int, uri string, ev bridge.Event) event {
	e.t.Helper()
	var got event
	sourcetest.Eventually(e.t, fmt.Sprintf("bridge event %s for %s", ev, uri), func() bool {
		for _, x := range e.ev.since(n)[uri] {
			if x.ev == ev {
				got = x
				return true
			}
		}
		return false
	})
	return got
}

// checkEvents lets a few polls pass (so late, invented events would show)
// and then requires exactly want, per URI in order, after the first n
// events.
func (e *env) checkEvents(n int, want map[string][]bridge.Event) {
	e.t.Helper()
	e.waitPolls(3)
	got := e.ev.since(n)
	for _, uri := range slices.Sorted(maps.Keys(got)) {
		var evs []bridge.Event
		for _, x := range got[uri] {
			evs = append(evs, x.ev)
		}
		if !slices.Equal(evs, want[uri]) {
			e.t.Errorf("bridge events for %s = %v, want %v", uri, evs, want[uri])
		}
	}
	for _, uri := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[uri]; !ok && len(want[uri]) > 0 {
			e.t.Errorf("bridge events for %s = none, want %v", uri, want[uri])
		}
	}
}
