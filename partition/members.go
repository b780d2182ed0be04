package partition

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// beat records ARGV[1] as alive until Redis's clock plus ARGV[2] ms,
// drops members whose time ran out, and returns the live ones. The
// server's clock, not the instances', decides who is alive.
var beat = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[2] ~= '0' then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// Members is the set of live instances, a sorted set scored by the time
// each one's membership runs out.
type Members struct {
	rdb redis.Cmdable
	key string
}

// NewMembers returns the member set of m.
func (m *Map) Members(rdb redis.Cmdable) *Members {
	return &Members{rdb: rdb, key: m.Key(0, "members")}
}

// Beat renews id's membership for ttl and returns the live members,
// sorted. A ttl of 0 only lists them.
func (s *Members) Beat(ctx context.Context, id string, ttl time.Duration) ([]string, error) {
	v, err := beat.Run(ctx, s.rdb, []string{s.key}, id, ttl.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("renewing membership: %w", err)
	}
	slices.Sort(v)
	return v, nil
}

// Leave ends id's membership at once.
func (s *Members) Leave(ctx context.Context, id string) error {
	if err := s.rdb.ZRem(ctx, s.key, id).Err(); err != nil {
		return fmt.Errorf("leaving members: %w", err)
	}
	return nil
}

// Assign gives each of n partitions an owner among members: the member
// ranking highest for that partition (rendezvous hashing, so a join or a
// leave moves few partitions) among those not yet holding their share of
// n/len(members), rounded up for the first n%len(members) to fill it (so
// shares differ by at most one). Every instance computes
// the same answer from the same member list.
func Assign(n int, members []string) []string {
	out := make([]string, n)
	if len(members) == 0 {
		return out
	}
	share, extra := n/len(members), n%len(members)
	count := make(map[string]int, len(members))
	rank := make([]string, len(members))
	for p := range n {
		copy(rank, members)
		slices.SortFunc(rank, func(a, b string) int {
			ha, hb := weight(a, p), weight(b, p)
			switch {
			case ha > hb:
				return -1
			case ha < hb:
				return 1
			}
			return 0
		})
		for _, m := range rank {
			// floor(n/len) each, and the first extra members to reach it
			// take one more: shares differ by at most one.
			if count[m] < share || count[m] == share && extra > 0 {
				if count[m] == share {
					extra--
				}
				out[p] = m
				count[m]++
				break
			}
		}
	}
	return out
}

func weight(member string, p int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(p)))
	x := h.Sum64()
	// FNV's low bits mix poorly for inputs differing in the last bytes:
	// finish with a 64-bit avalanche (splitmix64's).
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
