package bridge

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Publisher receives every change the bridge makes. Publish is called with
// the bridge's lock held, in Seq order, and must not block: a consumer
// queues or coalesces the change and returns (DESIGN.md: publishing to one
// consumer never blocks another).
type Publisher interface {
	Publish(c Change)
}

// Bridge keeps the contacts of every AOR and turns source batches into
// changes. It implements source.Sink. Create it with New, add consumers
// with Subscribe before Run, and run its expiry clock with Run.
type Bridge struct {
	log *slog.Logger

	// stateMu guards everything below it.
	stateMu    sync.RWMutex
	aors       map[string]*aorState // by canonical AOR
	byKey      map[string]*binding  // by store key
	seq        uint64
	gen        uint32 // full-snapshot sweep generation
	expiries   expiryHeap
	consumers  []Publisher
	pending    map[*aorState]*Change // changes being built by one step
	pendingOrd []*aorState
	tombstones map[string]tombstone // bindings ended by an operator, by key
	restored   bool                 // Restore loaded a previous state: diff the first snapshot

	ready    atomic.Bool
	wake     chan struct{} // nudges Run when the earliest expiry moved
	contacts atomic.Int64
}

type aorState struct {
	aor, canonical, id string
	bindings           []*binding
}

type binding struct {
	view ContactView
	aor  *aorState
	gen  uint32
	dead bool
}

// var _ source.Sink is the contract the adapters push into.
var _ source.Sink = (*Bridge)(nil)

// New returns an empty bridge.
func New(log *slog.Logger) *Bridge {
	return &Bridge{
		log:        log.With("component", "bridge"),
		aors:       make(map[string]*aorState),
		byKey:      make(map[string]*binding),
		pending:    make(map[*aorState]*Change),
		tombstones: make(map[string]tombstone),
		wake:       make(chan struct{}, 1),
	}
}

// Subscribe adds a consumer of changes. Call it before the first Apply.
func (b *Bridge) Subscribe(p Publisher) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	b.consumers = append(b.consumers, p)
}

// Ready reports whether the first full snapshot has been loaded. Until
// then the bridge does not know the registrations and must not be asked
// for full state.
func (b *Bridge) Ready() bool { return b.ready.Load() }

// Stats reports how many AORs and active contacts the bridge tracks.
func (b *Bridge) Stats() (aors, contacts int) {
	b.stateMu.RLock()
	defer b.stateMu.RUnlock()
	return len(b.aors), len(b.byKey)
}

// Lookup returns the current registration of aor (state init with no
// contacts when the bridge knows none) and the sequence number of the last
// change included in it.
func (b *Bridge) Lookup(aor string) (Registration, uint64) {
	canonical := CanonicalAOR(aor)
	b.stateMu.RLock()
	defer b.stateMu.RUnlock()
	a := b.aors[canonical]
	if a == nil {
		return Registration{AOR: aor, ID: registrationID(canonical), State: RegInit}, b.seq
	}
	reg := Registration{AOR: a.aor, ID: a.id, State: RegActive, Contacts: make([]ContactView, len(a.bindings))}
	for i, bd := range a.bindings {
		reg.Contacts[i] = bd.view
	}
	return reg, b.seq
}

// Apply takes one batch from a source (source.Sink).
func (b *Bridge) Apply(ctx context.Context, batch source.Batch) error {
	b.apply(batch, time.Now())
	return nil
}

// apply is the whole classification step at an explicit instant.
func (b *Bridge) apply(batch source.Batch, now time.Time) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	first := batch.Full && !b.ready.Load()
	baseline := first && !b.restored
	if batch.Full {
		b.gen++
	}
	for i := range batch.Contacts {
		b.upsert(&batch.Contacts[i], now, baseline)
	}
	if batch.Full {
		for key, bd := range b.byKey {
			if bd.gen != b.gen {
				b.remove(key, bd, now)
			}
		}
		if len(b.tombstones) > 0 {
			present := make(map[string]struct{}, len(batch.Contacts))
			for i := range batch.Contacts {
				present[batch.Contacts[i].Key] = struct{}{}
			}
			for key := range b.tombstones {
				if _, ok := present[key]; !ok {
					delete(b.tombstones, key)
				}
			}
		}
	} else {
		for _, key := range batch.Deleted {
			delete(b.tombstones, key)
			if bd := b.byKey[key]; bd != nil {
				b.remove(key, bd, now)
			}
		}
	}
	b.flush(batch.SeenAt, now)
	if first {
		b.ready.Store(true)
		b.log.Info("baseline loaded", "aors", len(b.aors), "contacts", len(b.byKey), "restored", b.restored)
		select {
		case b.wake <- struct{}{}: // the expiry clock waited for this
		default:
		}
	}
}

func (b *Bridge) upsert(c *source.Contact, now time.Time, baseline bool) {
	expired := !c.Permanent() && !c.Expires.After(now)
	bd := b.byKey[c.Key]
	if bd != nil && CanonicalAOR(c.AOR) != bd.aor.canonical {
		// The row moved to another AOR: for subscribers that is one
		// binding gone and another one new.
		b.terminate(bd, EventDeactivated, now)
		bd = nil
	}
	if bd == nil {
		if expired || b.buried(c.Key, c.CallID, c.CSeq) {
			return // not active as far as anyone can tell
		}
		bd = b.add(c, now, baseline)
		bd.gen = b.gen
		return
	}
	bd.gen = b.gen
	old := &bd.view.Contact
	if !expired && contactEqual(old, c) {
		return
	}
	newRegister := old.CallID != c.CallID || old.CSeq != c.CSeq
	switch {
	case old.URI != c.URI:
		b.terminate(bd, EventDeactivated, now)
		if !expired {
			b.add(c, now, false).gen = b.gen
		}
	case expired && newRegister:
		b.terminate(bd, EventUnregistered, now)
	case expired:
		b.terminate(bd, EventExpired, now)
	case newRegister:
		bd.view.Contact = *c
		bd.view.Event = EventRefreshed
		b.changed(bd, now)
	case c.Expires.Equal(old.Expires):
		bd.view.Contact = *c // other columns only: nothing to report
	case earlier(c, old):
		bd.view.Contact = *c
		bd.view.Event = EventShortened
		b.changed(bd, now)
	default:
		// Expiry extended without a REGISTER (an operator tool): the
		// closest RFC 3680 event is refreshed.
		bd.view.Contact = *c
		bd.view.Event = EventRefreshed
		b.changed(bd, now)
	}
}

// earlier reports whether c expires before old does.
func earlier(c, old *source.Contact) bool {
	if c.Permanent() {
		return false
	}
	return old.Permanent() || c.Expires.Before(old.Expires)
}

func (b *Bridge) add(c *source.Contact, now time.Time, baseline bool) *binding {
	canonical := CanonicalAOR(c.AOR)
	a := b.aors[canonical]
	if a == nil {
		a = &aorState{aor: c.AOR, canonical: canonical, id: registrationID(canonical)}
		b.aors[canonical] = a
	}
	bd := &binding{aor: a, view: ContactView{
		Contact: *c,
		ID:      contactID(canonical, c.Key, c.URI),
		State:   ContactActive,
		Event:   EventRegistered,
	}}
	if c.Administrative {
		bd.view.Event = EventCreated
	}
	a.bindings = append(a.bindings, bd)
	b.byKey[c.Key] = bd
	b.contacts.Add(1)
	if baseline {
		b.scheduleExpiry(bd)
		return bd
	}
	bd.view.Since = now
	b.changed(bd, now)
	return bd
}

// remove handles a binding that left the store.
func (b *Bridge) remove(key string, bd *binding, now time.Time) {
	c := &bd.view.Contact
	if !c.Permanent() && !c.Expires.After(now) {
		b.terminate(bd, EventExpired, now)
		return
	}
	b.terminate(bd, EventUnregistered, now)
}

// terminate ends a binding with event ev and drops it from the state.
func (b *Bridge) terminate(bd *binding, ev Event, now time.Time) {
	bd.view.State = ContactTerminated
	bd.view.Event = ev
	b.record(bd)
	delete(b.byKey, bd.view.Key)
	b.contacts.Add(-1)
	a := bd.aor
	a.bindings = slices.DeleteFunc(a.bindings, func(x *binding) bool { return x == bd })
	bd.dead = true // for the expiry heap
	// An AOR left without bindings is dropped by flush, so that a binding
	// replaced in the same step stays in the same registration.
}

// changed records an active binding's new state and (re)arms its expiry.
func (b *Bridge) changed(bd *binding, now time.Time) {
	b.record(bd)
	b.scheduleExpiry(bd)
}

// record adds the binding's current view to the change being built for
// its AOR.
func (b *Bridge) record(bd *binding) {
	ch := b.pending[bd.aor]
	if ch == nil {
		ch = &Change{AOR: bd.aor.aor, RegID: bd.aor.id}
		b.pending[bd.aor] = ch
		b.pendingOrd = append(b.pendingOrd, bd.aor)
	}
	ch.Contacts = append(ch.Contacts, bd.view)
}

// flush publishes the changes built by one step, one per AOR.
func (b *Bridge) flush(seenAt, now time.Time) {
	for _, a := range b.pendingOrd {
		ch := b.pending[a]
		delete(b.pending, a)
		b.seq++
		ch.Seq = b.seq
		ch.SeenAt, ch.At = seenAt, now
		ch.State = RegActive
		if len(a.bindings) == 0 {
			ch.State = RegTerminated
			delete(b.aors, a.canonical)
		}
		for _, p := range b.consumers {
			p.Publish(*ch)
		}
	}
	clear(b.pendingOrd)
	b.pendingOrd = b.pendingOrd[:0]
}

func contactEqual(a, b *source.Contact) bool {
	return a.Key == b.Key && a.URI == b.URI && a.Expires.Equal(b.Expires) &&
		a.CallID == b.CallID && a.CSeq == b.CSeq && a.Q == b.Q &&
		a.Modified.Equal(b.Modified) && a.UserAgent == b.UserAgent &&
		a.Instance == b.Instance && a.RegID == b.RegID &&
		a.Received == b.Received && a.Path == b.Path &&
		a.Administrative == b.Administrative && a.AOR == b.AOR
}

// ErrNotReady is returned while the first snapshot has not been loaded.
var ErrNotReady = errors.New("bridge: first snapshot not loaded yet")
