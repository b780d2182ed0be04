package bridge

import (
	"slices"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Adopt adds contacts to the registrations without announcing them: no
// Change reaches any Publisher (the Persister included), as for a baseline.
// A contact whose key is held already is replaced silently. It is ordered
// with Apply: changes applied after Adopt returns build on the adopted
// contacts (a later refresh of an adopted contact is announced as refreshed,
// its removal as unregistered/expired etc., exactly as for contacts that came
// from the first snapshot), and their expiry timers are armed.
//
// An adopted contact is what the partition's previous holder announced
// last, so the bridge's sequence number does not move: Lookup returns it
// at the sequence of the last change, and the next change follows on.
// Its event is registered (created when administrative) since an unknown
// instant, as for the baseline; a replaced contact that keeps its AOR and
// URI keeps its event and instant.
//
// Once the bridge is Ready, a contact already past its expiry is not
// adopted (a held one with its key is dropped, silently): its end is the
// previous holder's to announce, as a new row already expired announces
// nothing. Neither is a contact whose row an operator ended (Act) and
// that was not registered again since.
//
// Adopt neither needs nor makes the bridge Ready. Before the first full
// snapshot, adopted contacts are kept as given, expired ones included, and
// the expiry clock waits, as for Restore's: that snapshot is diffed
// against them (what changed of them is announced, and those it lacks are
// announced as gone), while its other contacts still load silently as the
// baseline unless Restore was called. A bridge fed only by Adopt and
// partial batches (a partition owner) is made Ready by a first Full batch
// applied before anything is adopted: an empty one loads and announces
// nothing.
func (b *Bridge) Adopt(contacts []source.Contact) { b.adopt(contacts, time.Now()) }

// adopt is Adopt at an explicit instant.
func (b *Bridge) adopt(contacts []source.Contact, now time.Time) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	ready := b.ready.Load()
	for i := range contacts {
		c := &contacts[i]
		expired := ready && !c.Permanent() && !c.Expires.After(now)
		bd := b.byKey.get(c.Key)
		if bd != nil && !expired && bd.aor.key() == CanonicalAOR(c.AOR) && bd.uri() == c.URI {
			b.set(bd, c) // the same contact: it keeps its event and since
			bd.gen = b.gen
			b.scheduleExpiry(bd)
			continue
		}
		if bd != nil {
			b.discard(bd)
		}
		if expired || b.buried(c.Key, c.CallID, c.CSeq) {
			continue
		}
		b.add(c, now, true).gen = b.gen
	}
}

// Forget removes, without announcing, every contact whose canonical AOR
// (CanonicalAOR) drop reports true, with its expiry timers and per-AOR state
// (so memory is freed): a partition this instance no longer owns. It returns
// how many contacts it removed. Ordered with Apply like Adopt.
//
// Lookup of a forgotten AOR returns the empty registration, and a contact
// of it applied later is new (registered, or created). The tombstones of
// contacts of a forgotten AOR that an operator ended (Act) go with it. The
// sequence number does not move. Forget suits a bridge fed by Adopt and
// partial batches: a source that sends a full snapshot's unchanged rows
// only by key (ApplyFull) does not send a forgotten one again.
func (b *Bridge) Forget(drop func(canonicalAOR string) bool) int {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	var gone []*aorState
	b.aors.each(func(a *aorState) {
		if drop(a.key()) {
			gone = append(gone, a)
		}
	})
	n := 0
	for _, a := range gone {
		for len(a.bindings) > 0 {
			b.discard(a.bindings[len(a.bindings)-1])
			n++
		}
	}
	for key, t := range b.tombstones {
		if drop(t.aor) {
			delete(b.tombstones, key)
		}
	}
	if n > 0 {
		b.compactExpiries()
		if cap(b.expiries) > 2*len(b.expiries)+minIndexSlots {
			b.expiries = slices.Clone(b.expiries) // give the array back
		}
	}
	return n
}

// discard drops a binding from the state without recording anything, and
// its registration with its last binding. Called with stateMu held,
// outside a step's changes (nothing of bd's AOR is pending).
func (b *Bridge) discard(bd *binding) {
	b.unlink(bd)
	if len(bd.aor.bindings) == 0 {
		b.aors.del(bd.aor)
	}
}
