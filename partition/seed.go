package partition

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/substore"
)

// Seeding is the upgrade from the single-tag layout (docs/cluster.md):
// the contacts that layout recorded become the partitions' state, with
// no stream entry, so the first reader diffs its first snapshot against
// them and announces only what changed. A partition is seeded in one
// script, which also marks it (meta field seeded), so a reader that dies
// half-way leaves whole partitions seeded or untouched, and the next
// reader seeds the rest from the same record.

// seedScript: KEYS stream, state, meta; ARGV epoch, then pairs of store
// key and contact. Returns 1 when it seeded, 0 when the partition was
// seeded already or has stream history (its state is what was
// announced).
var seedScript = redis.NewScript(`
local r = tonumber(redis.call('HGET', KEYS[3], 'reader') or '0')
local e = tonumber(ARGV[1])
if r > e then return redis.error_reply('FENCED ' .. r) end
if redis.call('HEXISTS', KEYS[3], 'seeded') == 1 then return 0 end
if tonumber(redis.call('HGET', KEYS[3], 'seq') or '0') > 0 then return 0 end
if r < e then redis.call('HSET', KEYS[3], 'reader', ARGV[1]) end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
redis.call('HSET', KEYS[3], 'seeded', '1')
return 1
`)

// Unseeded returns the partitions with neither a seeded baseline nor a
// stream history: those a Seed would write.
func (s *Streams) Unseeded(ctx context.Context) ([]int, error) {
	cmds := make([]*redis.SliceCmd, s.m.Count())
	_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for p := range cmds {
			cmds[p] = pl.HMGet(ctx, s.m.Key(p, "meta"), "seq", "seeded")
		}
		return nil
	})
	var out []int
	for p, c := range cmds {
		v, err := c.Result()
		if err != nil {
			reloadOnNetError(ctx, s.rdb, err)
			return nil, fmt.Errorf("reading partition %d: %w", p, err)
		}
		seq, _ := v[0].(string)
		if n, _ := strconv.ParseInt(seq, 10, 64); n == 0 && v[1] == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// Seed writes contacts (the single-tag layout's record) as the state of
// those of partitions ps still unseeded, under reader epoch, one script
// per partition in one pipeline. Contacts of other partitions are left
// out. It returns how many partitions it seeded; ErrFenced when a newer
// reader has taken over.
func (s *Streams) Seed(ctx context.Context, epoch int64, ps []int, contacts []source.Contact) (int, error) {
	want := make(map[int][]any, len(ps))
	for _, p := range ps {
		want[p] = []any{epoch}
	}
	for i := range contacts {
		c := &contacts[i]
		p := s.m.Of(bridge.CanonicalAOR(c.AOR))
		if _, ok := want[p]; !ok {
			continue
		}
		js, err := substore.EncodeContact(c)
		if err != nil {
			return 0, fmt.Errorf("encoding contact %q: %w", c.Key, err)
		}
		want[p] = append(want[p], c.Key, string(js))
	}
	cmds := make(map[int]*redis.Cmd, len(want))
	_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for p, args := range want {
			cmds[p] = seedScript.Eval(ctx, pl, s.keys(p), args...)
		}
		return nil
	})
	n := 0
	for p, c := range cmds {
		got, err := c.Int64()
		if err != nil {
			if strings.HasPrefix(err.Error(), "FENCED") {
				return n, ErrFenced
			}
			reloadOnNetError(ctx, s.rdb, err)
			return n, fmt.Errorf("seeding partition %d: %w", p, err)
		}
		n += int(got)
	}
	return n, nil
}
