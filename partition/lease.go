package partition

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Holder is who holds a lease and under which epoch. Epochs of one lease
// only grow: the fencing token every write under the lease carries.
type Holder struct {
	ID    string
	Epoch int64
}

func (h Holder) String() string { return h.ID + "/" + strconv.FormatInt(h.Epoch, 10) }

func parseHolder(s string) (Holder, error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return Holder{}, fmt.Errorf("lease value %q: no epoch", s)
	}
	e, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		return Holder{}, fmt.Errorf("lease value %q: %w", s, err)
	}
	return Holder{ID: s[:i], Epoch: e}, nil
}

// ErrHeld is returned when another instance holds the lease.
var ErrHeld = errors.New("lease held by another instance")

// acquire takes the lease at KEYS[1] for ARGV[1] with a TTL of ARGV[2] ms
// when it is free, drawing the next epoch from KEYS[2]; a lease already
// held by ARGV[1] is renewed under its epoch. Returns the value set, or
// the current holder's value prefixed with "!".
var acquire = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '/' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return v
  end
  return '!' .. v
end
local e = redis.call('INCR', KEYS[2])
v = ARGV[1] .. '/' .. e
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return v
`)

// renew extends the lease at KEYS[1] while it holds ARGV[1].
var renew = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// release deletes the lease at KEYS[1] while it holds ARGV[1].
var release = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// Lease is one expiring, fenced lease: the key it lives at and the key
// its epochs are drawn from, both under one hash tag.
type Lease struct {
	Key, EpochKey string
}

// Acquire takes the lease for id (or renews it, when id holds it).
// ErrHeld, with the holder, when another instance holds it.
func (l Lease) Acquire(ctx context.Context, rdb redis.Cmdable, id string, ttl time.Duration) (Holder, error) {
	v, err := acquire.Run(ctx, rdb, []string{l.Key, l.EpochKey}, id, ttl.Milliseconds()).Text()
	if err != nil {
		return Holder{}, fmt.Errorf("acquiring lease %s: %w", l.Key, err)
	}
	if held, ok := strings.CutPrefix(v, "!"); ok {
		h, _ := parseHolder(held)
		return h, ErrHeld
	}
	return parseHolder(v)
}

// Renew extends a held lease; false when h no longer holds it.
func (l Lease) Renew(ctx context.Context, rdb redis.Cmdable, h Holder, ttl time.Duration) (bool, error) {
	n, err := renew.Run(ctx, rdb, []string{l.Key}, h.String(), ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renewing lease %s: %w", l.Key, err)
	}
	return n == 1, nil
}

// Release gives the lease up, so another instance takes it at once
// instead of after its TTL.
func (l Lease) Release(ctx context.Context, rdb redis.Cmdable, h Holder) error {
	if err := release.Run(ctx, rdb, []string{l.Key}, h.String()).Err(); err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.Key, err)
	}
	return nil
}

// Current reads who holds the lease; ok is false when nobody does.
func (l Lease) Current(ctx context.Context, rdb redis.Cmdable) (Holder, bool, error) {
	v, err := rdb.Get(ctx, l.Key).Result()
	if errors.Is(err, redis.Nil) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("reading lease %s: %w", l.Key, err)
	}
	h, err := parseHolder(v)
	return h, err == nil, err
}

// PartitionLease is the ownership lease of partition p.
func (m *Map) PartitionLease(p int) Lease {
	return Lease{Key: m.Key(p, "owner"), EpochKey: m.Key(p, "owner:epoch")}
}

// ReaderLease is the lease of the one instance that reads the store. It
// lives under partition 0's tag; its epoch fences appends to every
// partition (Streams.Stamp).
func (m *Map) ReaderLease() Lease {
	return Lease{Key: m.Key(0, "reader"), EpochKey: m.Key(0, "reader:epoch")}
}
