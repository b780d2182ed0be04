package bridge

import (
	"context"
	"time"
)

// expiryItem is one armed expiry. A binding refreshed since the item was
// pushed, or gone, makes the item stale; stale items are dropped when they
// reach the top (no search on every refresh).
type expiryItem struct {
	at int64 // unix nanoseconds
	bd *binding
}

// expiryHeap is a binary min-heap by at. It does its own sifting rather
// than container/heap, whose Push and Pop box every item in an interface
// (an allocation per change).
type expiryHeap []expiryItem

func (h *expiryHeap) push(it expiryItem) {
	*h = append(*h, it)
	h.up(len(*h) - 1)
}

func (h *expiryHeap) pop() expiryItem {
	old := *h
	it := old[0]
	last := len(old) - 1
	old[0] = old[last]
	old[last] = expiryItem{}
	*h = old[:last]
	h.down(0)
	return it
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (h expiryHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			m = r
		}
		if h[i].at <= h[m].at {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h expiryHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (it expiryItem) stale() bool {
	return it.bd.dead || it.bd.permanent() || it.bd.expiresAt() != it.at
}

// scheduleExpiry arms the binding's current expiry. Called with stateMu held.
func (b *Bridge) scheduleExpiry(bd *binding) {
	if bd.permanent() {
		return
	}
	at := bd.expiresAt()
	b.expiries.push(expiryItem{at: at, bd: bd})
	if b.expiries[0].bd == bd && b.expiries[0].at == at {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	// Refreshes leave stale items behind; rebuild when they dominate so the
	// heap stays proportional to the live contacts.
	if n := len(b.expiries); n > 1024 && n > 4*b.byKey.n {
		b.compactExpiries()
	}
}

// compactExpiries drops the stale items from the expiry heap, so that it
// holds no binding that is gone. Called with stateMu held.
func (b *Bridge) compactExpiries() {
	live := b.expiries[:0]
	for _, it := range b.expiries {
		if !it.stale() {
			live = append(live, it)
		}
	}
	clear(b.expiries[len(live):])
	b.expiries = live
	b.expiries.init()
}

// notReadyPoll is how often the clock looks again before the first
// snapshot (it is also woken when that snapshot lands).
const notReadyPoll = 100 * time.Millisecond

// expireDue ends every binding whose expiry is at or before now and returns
// the next armed expiry (zero when none).
func (b *Bridge) expireDue(now time.Time) time.Time {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if !b.ready.Load() {
		// Restored bindings wait for the first snapshot (see Restore).
		return now.Add(notReadyPoll)
	}
	limit := now.UnixNano()
	for len(b.expiries) > 0 {
		top := b.expiries[0]
		if top.stale() {
			b.expiries.pop()
			continue
		}
		if top.at > limit {
			break
		}
		b.expiries.pop()
		b.terminate(top.bd, EventExpired, now)
	}
	b.flush(now, now)
	if len(b.expiries) == 0 {
		return time.Time{}
	}
	return time.Unix(0, b.expiries[0].at)
}

// Run is the bridge's clock: it expires contacts at their expiry instant
// until ctx ends. It returns nil on cancellation.
func (b *Bridge) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := b.expireDue(time.Now())
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		t.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-b.wake:
		}
	}
}
