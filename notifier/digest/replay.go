package digest

import (
	"container/list"
	"sync"
	"time"
)

// replayWindow is how many nonce-counts below the highest seen are still
// accepted (once each), for a UA that sends requests with one nonce
// concurrently and they arrive out of order.
const replayWindow = 64

// replayTable remembers, per nonce that carried a correct answer, which
// nonce-counts were used (RFC 7616 3.4: a server that keeps the count can
// refuse a replayed request). Its size is capped. An entry pushed out at
// the cap raises floor to its issue time; a nonce issued at or before
// floor and not in the table is refused, because its counts may have been
// forgotten. So eviction can cost a client one extra challenge, never let
// a replay through.
type replayTable struct {
	max int
	ttl time.Duration

	// mu guards everything below.
	mu    sync.Mutex
	byID  map[nonceID]*list.Element
	lru   *list.List // of *replayEntry, most recently used at the front
	floor int64      // Unix seconds; see above
}

type replayEntry struct {
	id     nonceID
	issued int64  // Unix seconds
	high   uint32 // highest nonce-count accepted
	seen   uint64 // bit i: count high-i was accepted
}

func newReplayTable(max int, ttl time.Duration) *replayTable {
	return &replayTable{max: max, ttl: ttl, byID: make(map[nonceID]*list.Element), lru: list.New()}
}

// accept records count nc for the nonce id issued at issued and reports
// whether it was new. Callers have checked the nonce is unexpired.
func (t *replayTable) accept(id nonceID, issued time.Time, nc uint32, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.byID[id]; ok {
		t.lru.MoveToFront(el)
		return el.Value.(*replayEntry).use(nc)
	}
	if issued.Unix() <= t.floor {
		return false
	}
	t.sweep(now)
	e := &replayEntry{id: id, issued: issued.Unix()}
	e.use(nc)
	t.byID[id] = t.lru.PushFront(e)
	return true
}

// sweep drops expired entries from the back (lossless: an expired nonce
// is refused before the table is asked), then, at the cap, the least
// recently used entry, raising floor.
func (t *replayTable) sweep(now time.Time) {
	expired := now.Add(-t.ttl).Unix()
	for back := t.lru.Back(); back != nil; back = t.lru.Back() {
		e := back.Value.(*replayEntry)
		if e.issued >= expired && t.lru.Len() < t.max {
			return
		}
		if e.issued >= expired {
			t.floor = max(t.floor, e.issued)
		}
		t.lru.Remove(back)
		delete(t.byID, e.id)
	}
}

// len reports the number of entries (tests).
func (t *replayTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// use marks nc as used and reports whether it was unused and inside the
// window.
func (e *replayEntry) use(nc uint32) bool {
	switch {
	case nc > e.high:
		if shift := nc - e.high; shift >= replayWindow {
			e.seen = 1
		} else {
			e.seen = e.seen<<shift | 1
		}
		e.high = nc
		return true
	case e.high-nc >= replayWindow:
		return false
	default:
		bit := uint64(1) << (e.high - nc)
		if e.seen&bit != 0 {
			return false
		}
		e.seen |= bit
		return true
	}
}
