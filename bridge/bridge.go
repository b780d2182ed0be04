package bridge

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Publisher receives every change the bridge makes. Publish is called with
// the bridge's lock held, in Seq order, and must not block: a consumer
// queues or coalesces the change and returns (docs/design.md#the-data-path:
// publishing to one consumer never blocks another).
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
	aors       keyIndex[*aorState] // by canonical AOR
	byKey      keyIndex[*binding]  // by store key
	gone       []*binding          // sweep buffer
	seq        uint64
	gen        uint32 // full-snapshot sweep generation
	expiries   expiryHeap
	consumers  []Publisher
	pending    map[*aorState]*Change // changes being built by one step
	pendingOrd []*aorState
	tombstones map[string]tombstone // bindings ended by an operator, by key
	restored   bool                 // Restore loaded a previous state: diff the first snapshot
	interned   map[string]string    // see intern

	ready    atomic.Bool
	wake     chan struct{} // nudges Run when the earliest expiry moved
	contacts atomic.Int64
}

// aorState is one registration. Its reginfo id is derived when a
// Registration or Change is built (registrationID), not stored.
type aorState struct {
	aor      string // as the store wrote it for the first binding
	bindings []*binding
	aliases  *aorAliases // nil for nearly every registration
}

// aorAliases are the other spellings of an AOR, which few registrations
// have: a canonical AOR that differs from aor's text, and the AOR text of
// bindings whose store wrote it differently from aor (same canonical AOR).
type aorAliases struct {
	canonical string
	texts     map[*binding]string
}

// key is the canonical AOR.
func (a *aorState) key() string {
	if a.aliases != nil && a.aliases.canonical != "" {
		return a.aliases.canonical
	}
	return a.aor
}

// textOf is bd's AOR text when it differs from aor.
func (a *aorState) textOf(bd *binding) (string, bool) {
	if a.aliases == nil {
		return "", false
	}
	t, ok := a.aliases.texts[bd]
	return t, ok
}

// setText records bd's AOR text.
func (a *aorState) setText(bd *binding, text string) {
	if text == a.aor {
		a.dropText(bd)
		return
	}
	if a.aliases == nil {
		a.aliases = &aorAliases{}
	}
	if a.aliases.texts == nil {
		a.aliases.texts = make(map[*binding]string)
	}
	a.aliases.texts[bd] = text
}

func (a *aorState) dropText(bd *binding) {
	if a.aliases != nil {
		delete(a.aliases.texts, bd)
	}
}

// var _ source.Sink is the contract the adapters push into.
var _ source.Sink = (*Bridge)(nil)

// New returns an empty bridge.
func New(log *slog.Logger) *Bridge {
	return &Bridge{
		log:        log.With("component", "bridge"),
		pending:    make(map[*aorState]*Change),
		tombstones: make(map[string]tombstone),
		interned:   make(map[string]string),
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

// Stats is how much the bridge tracks, at one instant.
type Stats struct {
	AORs     int // addresses-of-record with at least one active contact
	Contacts int // active contacts
}

// Stats reports how many AORs and active contacts the bridge tracks.
func (b *Bridge) Stats() Stats {
	b.stateMu.RLock()
	defer b.stateMu.RUnlock()
	return Stats{AORs: b.aors.n, Contacts: b.byKey.n}
}

// Lookup returns the current registration of aor (state init with no
// contacts when the bridge knows none) and the sequence number of the last
// change included in it.
func (b *Bridge) Lookup(aor string) (Registration, uint64) {
	canonical := CanonicalAOR(aor)
	b.stateMu.RLock()
	defer b.stateMu.RUnlock()
	a := b.aors.get(canonical)
	if a == nil {
		return Registration{AOR: aor, ID: registrationID(canonical), State: RegInit}, b.seq
	}
	reg := Registration{AOR: a.aor, ID: registrationID(a.key()), State: RegActive, Contacts: make([]ContactView, len(a.bindings))}
	for i, bd := range a.bindings {
		reg.Contacts[i] = bd.view()
	}
	return reg, b.seq
}

// Apply takes one batch from a source (source.Sink).
func (b *Bridge) Apply(ctx context.Context, batch source.Batch) error {
	b.apply(batch, time.Now())
	return nil
}

// ApplyFull takes a Full batch that carries only the bindings that changed
// since the source's last batch; same yields the key of every binding the
// store holds, the unchanged ones included (sqlwatch.KeyedSink). An
// unchanged binding is neither decoded by the source nor compared here.
func (b *Bridge) ApplyFull(ctx context.Context, batch source.Batch, same iter.Seq[string]) error {
	batch.Full = true
	b.applyKeyed(batch, same, time.Now())
	return nil
}

// apply is the whole classification step at an explicit instant.
func (b *Bridge) apply(batch source.Batch, now time.Time) { b.applyKeyed(batch, nil, now) }

// applyKeyed is apply with the keys of a Full batch's unchanged bindings
// (sqlwatch.KeyedSink).
func (b *Bridge) applyKeyed(batch source.Batch, same iter.Seq[string], now time.Time) {
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
	if batch.Full && same != nil {
		for key := range same {
			if bd := b.byKey.get(key); bd != nil {
				bd.gen = b.gen
			}
		}
	}
	if batch.Full {
		b.byKey.each(func(bd *binding) {
			if bd.gen != b.gen {
				b.gone = append(b.gone, bd)
			}
		})
		for _, bd := range b.gone {
			b.remove(bd, now)
		}
		clear(b.gone)
		b.gone = b.gone[:0]
		if len(b.tombstones) > 0 {
			present := make(map[string]struct{}, len(batch.Contacts))
			for i := range batch.Contacts {
				present[batch.Contacts[i].Key] = struct{}{}
			}
			if same != nil {
				for key := range same {
					present[key] = struct{}{}
				}
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
			if bd := b.byKey.get(key); bd != nil {
				b.remove(bd, now)
			}
		}
	}
	b.flush(batch.SeenAt, now)
	if first {
		b.ready.Store(true)
		b.log.Info("baseline loaded", "aors", b.aors.n, "contacts", b.byKey.n, "restored", b.restored)
		select {
		case b.wake <- struct{}{}: // the expiry clock waited for this
		default:
		}
	}
}

func (b *Bridge) upsert(c *source.Contact, now time.Time, baseline bool) {
	expired := !c.Permanent() && !c.Expires.After(now)
	bd := b.byKey.get(c.Key)
	if bd != nil && c.AOR != bd.aorText() && CanonicalAOR(c.AOR) != bd.aor.key() {
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
	if !expired && bd.equal(c) {
		return
	}
	newRegister := bd.callID() != c.CallID || bd.cseq != c.CSeq
	written := !sameTime(bd.modSec, bd.modNs, c.Modified)
	switch {
	case bd.uri() != c.URI:
		b.terminate(bd, EventDeactivated, now)
		if !expired {
			b.add(c, now, false).gen = b.gen
		}
	case expired && newRegister:
		b.terminate(bd, EventUnregistered, now)
	case expired:
		b.terminate(bd, EventExpired, now)
	case newRegister:
		b.set(bd, c)
		bd.event = codeOf(EventRefreshed)
		b.changed(bd, written)
	case sameTime(bd.expSec, bd.expNs, c.Expires):
		b.set(bd, c) // other columns only: nothing to report
	case earlier(c, bd):
		b.set(bd, c)
		bd.event = codeOf(EventShortened)
		b.changed(bd, written)
	default:
		// Expiry extended without a REGISTER (an operator tool): the
		// closest RFC 3680 event is refreshed.
		b.set(bd, c)
		bd.event = codeOf(EventRefreshed)
		b.changed(bd, written)
	}
}

// earlier reports whether c expires before bd does.
func earlier(c *source.Contact, bd *binding) bool {
	if c.Permanent() {
		return false
	}
	return bd.permanent() || c.Expires.Before(join(bd.expSec, bd.expNs))
}

func (b *Bridge) add(c *source.Contact, now time.Time, baseline bool) *binding {
	canonical := CanonicalAOR(c.AOR)
	a := b.aors.get(canonical)
	if a == nil {
		a = &aorState{aor: c.AOR}
		if canonical != c.AOR {
			a.aliases = &aorAliases{canonical: canonical}
		}
		b.aors.put(a)
	}
	bd := &binding{aor: a, key: c.Key, event: codeOf(EventRegistered)}
	bd.sinceSec, bd.sinceNs = split(time.Time{})
	b.set(bd, c)
	if c.Administrative {
		bd.event = codeOf(EventCreated)
	}
	a.bindings = append(a.bindings, bd)
	b.byKey.put(bd)
	b.contacts.Add(1)
	if baseline {
		b.scheduleExpiry(bd)
		return bd
	}
	bd.sinceSec, bd.sinceNs = split(now)
	b.changed(bd, true)
	return bd
}

// remove handles a binding that left the store.
func (b *Bridge) remove(bd *binding, now time.Time) {
	if !bd.permanent() && !join(bd.expSec, bd.expNs).After(now) {
		b.terminate(bd, EventExpired, now)
		return
	}
	b.terminate(bd, EventUnregistered, now)
}

// terminate ends a binding with event ev and drops it from the state.
func (b *Bridge) terminate(bd *binding, ev Event, now time.Time) {
	b.terminateView(bd, ev, 0)
}

// terminateView is terminate with a probation retry-after; it returns the
// binding's last view.
func (b *Bridge) terminateView(bd *binding, ev Event, retryAfter uint32) ContactView {
	v := bd.view()
	v.State, v.Event, v.RetryAfter = ContactTerminated, ev, retryAfter
	b.record(bd.aor, v)
	b.unlink(bd)
	// An AOR left without bindings is dropped by flush, so that a binding
	// replaced in the same step stays in the same registration.
	return v
}

// unlink drops a binding from the key index and its registration (which
// stays indexed, if empty).
func (b *Bridge) unlink(bd *binding) {
	b.byKey.del(bd)
	b.contacts.Add(-1)
	a := bd.aor
	a.bindings = slices.DeleteFunc(a.bindings, func(x *binding) bool { return x == bd })
	a.dropText(bd)
	bd.dead = true // for the expiry heap
}

// changed records an active binding's new state and (re)arms its expiry;
// written says the store rewrote the binding's last_modified in this step.
func (b *Bridge) changed(bd *binding, written bool) {
	v := bd.view()
	v.Written = written
	b.record(bd.aor, v)
	b.scheduleExpiry(bd)
}

// record adds a binding's view to the change being built for its AOR.
func (b *Bridge) record(a *aorState, v ContactView) {
	ch := b.pending[a]
	if ch == nil {
		ch = &Change{AOR: a.aor, RegID: registrationID(a.key())}
		b.pending[a] = ch
		b.pendingOrd = append(b.pendingOrd, a)
	}
	ch.Contacts = append(ch.Contacts, v)
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
			b.aors.del(a)
		}
		for _, p := range b.consumers {
			p.Publish(*ch)
		}
	}
	clear(b.pendingOrd)
	b.pendingOrd = b.pendingOrd[:0]
}

// ErrNotReady is returned while the first snapshot has not been loaded.
var ErrNotReady = errors.New("bridge: first snapshot not loaded yet")
