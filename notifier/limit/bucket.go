package limit

import (
	"container/list"
	"time"
)

// bucket is a token bucket: it holds up to burst tokens and gains rate
// tokens a second; a request takes one.
type bucket struct {
	tokens float64
	last   time.Time
}

// refill brings the bucket to now.
func (b *bucket) refill(now time.Time, rate float64, burst int) {
	if b.last.IsZero() {
		b.tokens, b.last = float64(burst), now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+rate*d.Seconds())
		b.last = now
	}
}

// take takes a token if there is one; otherwise it says how long until
// there will be.
func (b *bucket) take(now time.Time, rate float64, burst int) (bool, time.Duration) {
	b.refill(now, rate, burst)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// full reports whether the bucket would hold burst tokens at now: such a
// bucket says nothing a new one would not, so dropping it loses nothing.
func (b *bucket) full(now time.Time, rate float64, burst int) bool {
	return b.tokens+rate*now.Sub(b.last).Seconds() >= float64(burst)
}

// bucketTable keeps one bucket per key, at most max of them. When it is
// full it drops the least recently used bucket if that one is full
// (lossless); if even that one is busy, the newcomer gets the shared
// overflow bucket, so cycling keys gains an attacker one bucket, not one
// each. The caller holds the Limiter's lock.
type bucketTable struct {
	rate  float64
	burst int
	max   int

	byKey    map[uint64]*list.Element
	lru      *list.List // of *keyedBucket, most recent at the front
	overflow bucket
}

type keyedBucket struct {
	key uint64
	b   bucket
}

func newBucketTable(rate float64, burst, max int) *bucketTable {
	return &bucketTable{rate: rate, burst: burst, max: max, byKey: make(map[uint64]*list.Element), lru: list.New()}
}

// take takes a token from key's bucket.
func (t *bucketTable) take(key uint64, now time.Time) (bool, time.Duration) {
	return t.get(key, now).take(now, t.rate, t.burst)
}

func (t *bucketTable) get(key uint64, now time.Time) *bucket {
	if el, ok := t.byKey[key]; ok {
		t.lru.MoveToFront(el)
		return &el.Value.(*keyedBucket).b
	}
	if t.lru.Len() >= t.max {
		back := t.lru.Back()
		old := back.Value.(*keyedBucket)
		if !old.b.full(now, t.rate, t.burst) {
			return &t.overflow
		}
		t.lru.Remove(back)
		delete(t.byKey, old.key)
	}
	kb := &keyedBucket{key: key}
	t.byKey[key] = t.lru.PushFront(kb)
	return &kb.b
}

func (t *bucketTable) len() int { return t.lru.Len() }
