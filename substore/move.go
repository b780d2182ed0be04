package substore

import (
	"context"
	"fmt"
)

// Stored returns every subscription record this layout holds, whichever
// instance owns it, and the instances that own them: what an upgrade to
// partitions (docs/cluster.md) moves into the AORs' partitions.
func (r *Redis) Stored(ctx context.Context) ([]*Record, []string, error) {
	r.trips.Add(1)
	insts, err := r.rdb.SMembers(ctx, r.instancesKey()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("listing instances: %w", err)
	}
	var recs []*Record
	for _, inst := range insts {
		r.trips.Add(1)
		ids, err := r.rdb.SMembers(ctx, r.ownedKey(inst)).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("listing the subscriptions of %s: %w", inst, err)
		}
		if len(ids) == 0 {
			continue
		}
		got, err := r.fetch(ctx, ids)
		if err != nil {
			return nil, nil, fmt.Errorf("loading the subscriptions of %s: %w", inst, err)
		}
		for _, rec := range got {
			if rec != nil { // expired meanwhile, or unreadable: nothing to move
				recs = append(recs, rec)
			}
		}
	}
	return recs, insts, nil
}

// Remove deletes the records ids and the instances' sets of owned
// records, once they have moved (Stored).
func (r *Redis) Remove(ctx context.Context, ids, insts []string) error {
	keys := make([]string, 0, len(ids)+2*len(insts))
	for _, id := range ids {
		keys = append(keys, r.subKey(id))
	}
	for _, inst := range insts {
		keys = append(keys, r.ownedKey(inst), r.hbKey(inst))
	}
	if len(insts) > 0 {
		keys = append(keys, r.instancesKey())
	}
	// One slot (the layout's single tag): UNLINKs of up to removeBatch
	// keys, so that Redis is not held up by one command for them all.
	for len(keys) > 0 {
		n := min(len(keys), removeBatch)
		r.trips.Add(1)
		if err := r.rdb.Unlink(ctx, keys[:n]...).Err(); err != nil {
			return fmt.Errorf("deleting moved subscriptions: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// removeBatch bounds the keys of one UNLINK in Remove.
const removeBatch = 1000
