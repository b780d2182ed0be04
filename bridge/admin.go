package bridge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors of Act.
var (
	ErrNoContact  = errors.New("no such active contact")
	ErrNotAdmin   = errors.New("event is not an operator action")
	ErrRetryAfter = errors.New("probation needs retry-after")
)

// Act applies an operator action to one active contact (RFC 3680 4.7.1:
// deactivated, probation, rejected), notifying every consumer at once. It
// enters the bridge like a source's batch. The contact is remembered as
// ended: while its row stays unchanged in a store that cannot delete it,
// it is not announced again; a new REGISTER (Call-ID or CSeq changed)
// makes it registered again. It returns the contact as terminated.
func (b *Bridge) Act(aor, id string, ev Event, retryAfter uint32) (ContactView, error) {
	switch ev {
	case EventDeactivated, EventRejected:
	case EventProbation:
		if retryAfter == 0 {
			return ContactView{}, ErrRetryAfter
		}
	default:
		return ContactView{}, fmt.Errorf("%w: %s", ErrNotAdmin, ev)
	}
	now := time.Now()
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	a := b.aors.get(CanonicalAOR(aor))
	if a == nil {
		return ContactView{}, ErrNoContact
	}
	for _, bd := range a.bindings {
		if contactID(a.key(), bd.key, bd.uri()) != id {
			continue
		}
		view := b.terminateView(bd, ev, retryAfter)
		b.tombstones[bd.key] = tombstone{aor: a.key(), callID: strings.Clone(bd.callID()), cseq: bd.cseq}
		b.flush(now, now)
		return view, nil
	}
	return ContactView{}, ErrNoContact
}

// tombstone remembers the REGISTER identity of a binding an operator
// ended, and its canonical AOR (for Forget).
type tombstone struct {
	aor    string
	callID string
	cseq   uint32
}

// buried reports whether a store row is a binding an operator ended that
// has not been registered again since; it forgets tombstones of rows that
// moved on. Called with stateMu held.
func (b *Bridge) buried(key, callID string, cseq uint32) bool {
	t, ok := b.tombstones[key]
	if !ok {
		return false
	}
	if t.callID == callID && t.cseq == cseq {
		return true
	}
	delete(b.tombstones, key)
	return false
}

// List returns up to limit registrations whose canonical AOR starts with
// prefix and sorts after the canonical AOR after (for paging), in order.
func (b *Bridge) List(prefix, after string, limit int) []Registration {
	b.stateMu.RLock()
	defer b.stateMu.RUnlock()
	var keys []string
	if limit > 0 {
		// Keep only the limit smallest keys while scanning (a bounded
		// max-heap): reading 100,000 AORs page by page then costs a pass
		// per page, not a sort of every remaining key per page.
		keys = make([]string, 0, min(limit, b.aors.n))
		b.aors.each(func(a *aorState) {
			k := a.key()
			switch {
			case !strings.HasPrefix(k, prefix) || k <= after:
			case len(keys) < limit:
				keys = append(keys, k)
				heapUp(keys, len(keys)-1)
			case k < keys[0]:
				keys[0] = k
				heapDown(keys, 0)
			}
		})
	} else {
		keys = make([]string, 0, b.aors.n)
		b.aors.each(func(a *aorState) {
			if k := a.key(); strings.HasPrefix(k, prefix) && k > after {
				keys = append(keys, k)
			}
		})
	}
	slices.Sort(keys)
	out := make([]Registration, len(keys))
	for i, k := range keys {
		a := b.aors.get(k)
		out[i] = Registration{AOR: a.aor, ID: registrationID(a.key()), State: RegActive, Contacts: make([]ContactView, len(a.bindings))}
		for j, bd := range a.bindings {
			out[i].Contacts[j] = bd.view()
		}
	}
	return out
}

// heapUp and heapDown keep h a max-heap (h[0] the largest) after h[i]
// was added or replaced.
func heapUp(h []string, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p] >= h[i] {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDown(h []string, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && h[r] > h[c] {
			c = r
		}
		if h[i] >= h[c] {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
