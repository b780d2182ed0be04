package bridge

import (
	"container/heap"
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

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}

func (it expiryItem) stale() bool {
	return it.bd.dead || it.bd.view.Expires.IsZero() || it.bd.view.Expires.UnixNano() != it.at
}

// scheduleExpiry arms the binding's current expiry. Called with stateMu held.
func (b *Bridge) scheduleExpiry(bd *binding) {
	if bd.view.Permanent() {
		return
	}
	at := bd.view.Expires.UnixNano()
	heap.Push(&b.expiries, expiryItem{at: at, bd: bd})
	if b.expiries[0].bd == bd && b.expiries[0].at == at {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	// Refreshes leave stale items behind; rebuild when they dominate so the
	// heap stays proportional to the live contacts.
	if n := len(b.expiries); n > 1024 && n > 4*len(b.byKey) {
		live := b.expiries[:0]
		for _, it := range b.expiries {
			if !it.stale() {
				live = append(live, it)
			}
		}
		clear(b.expiries[len(live):])
		b.expiries = live
		heap.Init(&b.expiries)
	}
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
			heap.Pop(&b.expiries)
			continue
		}
		if top.at > limit {
			break
		}
		heap.Pop(&b.expiries)
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
