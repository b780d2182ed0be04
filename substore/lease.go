package substore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Beat renews this instance's heartbeat (call it every lease/3) and
// registers it among the instances.
func (r *Redis) Beat(ctx context.Context) error {
	r.trips.Add(1)
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.hbKey(r.me), "1", r.lease)
		p.SAdd(ctx, r.instancesKey(), r.me)
		return nil
	})
	if err != nil {
		return fmt.Errorf("renewing heartbeat: %w", err)
	}
	return nil
}

// Release deletes this instance's heartbeat, so that peers take its
// subscriptions over at their next round instead of after the lease.
func (r *Redis) Release(ctx context.Context) error {
	r.trips.Add(1)
	if err := r.rdb.Del(ctx, r.hbKey(r.me)).Err(); err != nil {
		return fmt.Errorf("releasing heartbeat: %w", err)
	}
	return nil
}

// dead lists the instances whose heartbeat is gone, and how many other
// instances are alive.
func (r *Redis) dead(ctx context.Context) (dead []string, alive int, err error) {
	r.trips.Add(1)
	all, err := r.rdb.SMembers(ctx, r.instancesKey()).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("listing instances: %w", err)
	}
	others := all[:0]
	for _, inst := range all {
		if inst != r.me {
			others = append(others, inst)
		}
	}
	if len(others) == 0 {
		return nil, 0, nil
	}
	r.trips.Add(1)
	cmds, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, inst := range others {
			p.Exists(ctx, r.hbKey(inst))
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reading heartbeats: %w", err)
	}
	for i, c := range cmds {
		if c.(*redis.IntCmd).Val() == 0 {
			dead = append(dead, others[i])
		} else {
			alive++
		}
	}
	return dead, alive, nil
}

// claim moves up to ARGV[4] subscriptions of a dead instance (ARGV[2]) to
// ARGV[1], only while the dead one's heartbeat is still absent and only
// those it still owns (a refresh may have moved some). Scripts run
// atomically, so concurrent claimers split the set: each id goes to one.
var claim = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[3] .. id
  if redis.call('HGET', k, 'owner') == ARGV[2] then
    redis.call('HSET', k, 'owner', ARGV[1])
    redis.call('SADD', KEYS[2], id)
    table.insert(out, id)
    table.insert(out, redis.call('HGETALL', k))
  end
end
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[2]) end
return out
`)

// claimFrom claims up to n subscriptions of the dead instance.
func (r *Redis) claimFrom(ctx context.Context, dead string, n int) ([]*Record, error) {
	r.trips.Add(1)
	v, err := claim.Run(ctx, r.rdb,
		[]string{r.ownedKey(dead), r.ownedKey(r.me), r.hbKey(dead), r.instancesKey()},
		r.me, dead, r.p+"sub:", n).Slice()
	if err != nil {
		return nil, fmt.Errorf("claiming subscriptions of %s: %w", dead, err)
	}
	recs := make([]*Record, 0, len(v)/2)
	for i := 0; i+1 < len(v); i += 2 {
		id, _ := v[i].(string)
		rec, err := decodeFlat(id, v[i+1])
		if err != nil {
			r.log.Warn("skipping unreadable subscription", "err", err)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// Claim takes over up to n subscriptions in all from instances whose
// heartbeat is gone. Calling it every lease/2 spreads a dead instance's
// subscriptions over the live ones in bounded batches.
func (r *Redis) Claim(ctx context.Context, n int) ([]*Record, error) {
	dead, _, err := r.dead(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, d := range dead {
		if len(out) >= n {
			break
		}
		recs, err := r.claimFrom(ctx, d, n-len(out))
		if err != nil {
			return out, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// Recover is called once at start-up, before the first snapshot: it
// renews the heartbeat and returns the subscriptions this instance owns
// (its own from before a restart with the same id). When no other
// instance is alive it also claims every dead instance's subscriptions
// (a restart under a new id): alone reports that case, in which the
// bridge state in Redis was written by those instances only and the
// subscriptions can continue with partial documents.
func (r *Redis) Recover(ctx context.Context) (recs []*Record, alone bool, err error) {
	if err := r.Beat(ctx); err != nil {
		return nil, false, err
	}
	dead, alive, err := r.dead(ctx)
	if err != nil {
		return nil, false, err
	}
	r.trips.Add(1)
	ids, err := r.rdb.SMembers(ctx, r.ownedKey(r.me)).Result()
	if err != nil {
		return nil, false, fmt.Errorf("listing own subscriptions: %w", err)
	}
	if recs, err = r.load(ctx, ids); err != nil {
		return nil, false, err
	}
	if alive > 0 {
		return recs, false, nil
	}
	for _, d := range dead {
		for {
			batch, err := r.claimFrom(ctx, d, 1000)
			if err != nil {
				return recs, true, err
			}
			if len(batch) == 0 {
				break
			}
			recs = append(recs, batch...)
		}
	}
	return recs, true, nil
}

// fetch reads the records of ids in one pipeline: nil where a record is
// gone or unreadable.
func (r *Redis) fetch(ctx context.Context, ids []string) ([]*Record, error) {
	r.trips.Add(1)
	cmds, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.HGetAll(ctx, r.subKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Record, len(ids))
	for i, c := range cmds {
		if rec, err := DecodeFields(ids[i], c.(*redis.MapStringStringCmd).Val()); err == nil {
			out[i] = rec
		}
	}
	return out, nil
}

// load reads the records of ids this instance owns; ids whose record is
// gone (expired) leave the owned set.
func (r *Redis) load(ctx context.Context, ids []string) ([]*Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	all, err := r.fetch(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("loading own subscriptions: %w", err)
	}
	var recs []*Record
	var gone []any
	for i, rec := range all {
		if rec == nil || rec.Owner != r.me {
			gone = append(gone, ids[i])
			continue
		}
		recs = append(recs, rec)
	}
	if len(gone) > 0 {
		r.trips.Add(1)
		r.rdb.SRem(ctx, r.ownedKey(r.me), gone...)
	}
	return recs, nil
}
