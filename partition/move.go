package partition

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/substore"
)

// Subscriptions moved from the single-tag layout (docs/cluster.md,
// "Upgrade from the single-tag layout") keep their dialog ids, whose
// local tags name no partition. Their partitions are recorded in an
// index, itself spread over the partitions by the id's hash: the hash
// m.Key(m.Of(id), "moved"), field id, value the partition. An owner
// learns them as it loads its records and keeps them in memory, so a
// NOTIFY of a moved subscription costs no extra round trip; an instance
// that receives a refresh of one reads the index once.

// importSub: KEYS sub, subs, subin; ARGV rec, cseq, ver, ttl ms, id,
// from, inbox maxlen. Creates the record unless it is there (moved
// already), and tells the owner. 1 when created, 0 when left.
var importSub = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'cseq', ARGV[2], 'ver', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[5], 'op', 'save', 'from', ARGV[6])
return 1
`)

// Import stores subscriptions of the single-tag layout in their AORs'
// partitions with their counters (CSeq and version continue), records
// their partitions in the index, and tells the partitions' owners, which
// continue them with a full NOTIFY: one pipeline for all of recs (the
// caller batches). A record moved already is left as it is, so that
// several instances of an upgrade may all import.
func (s *Subs) Import(ctx context.Context, recs ...*substore.Record) error {
	if len(recs) == 0 {
		return nil
	}
	s.trips.Add(1)
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, rec := range recs {
			p := s.m.Of(bridge.CanonicalAOR(rec.AOR))
			js, err := substore.EncodeRecord(rec)
			if err != nil {
				return err
			}
			ttl := substore.KeyTTL(rec)
			// The index first: a refresh finds the record once it exists.
			s.index(ctx, pl, rec.ID, p, ttl)
			importSub.Eval(ctx, pl, s.subKeys(p, rec.ID), js, rec.LocalCSeq, rec.Version, ttl.Milliseconds(), rec.ID, s.me, InboxMaxLen)
		}
		return nil
	})
	if err != nil {
		reloadOnNetError(ctx, s.rdb, err)
		return fmt.Errorf("moving subscriptions into their partitions: %w", err)
	}
	for _, rec := range recs {
		s.moved.Store(rec.ID, s.m.Of(bridge.CanonicalAOR(rec.AOR)))
	}
	return nil
}

// index records that moved subscription id lives in partition p, for at
// least ttl (the record's): the index hash lives as long as the longest
// of its records, and each save of a moved record extends it (Save).
func (s *Subs) index(ctx context.Context, pl redis.Pipeliner, id string, p int, ttl time.Duration) {
	idx := s.m.Key(s.m.Of(id), "moved")
	pl.HSet(ctx, idx, id, p)
	pl.ExpireNX(ctx, idx, ttl+time.Second) // a new hash has no expiry yet
	pl.ExpireGT(ctx, idx, ttl+time.Second)
}

// partitionOf returns the partition of subscription id: from its local
// tag, or, for a subscription moved from the single-tag layout, from
// memory or (look) the index.
func (s *Subs) partitionOf(ctx context.Context, id string, look bool) (int, bool, error) {
	if p, ok := s.PartitionOfID(id); ok {
		return p, true, nil
	}
	if p, ok := s.moved.Load(id); ok {
		return p.(int), true, nil
	}
	if !look {
		return 0, false, nil
	}
	s.trips.Add(1)
	v, err := s.rdb.HGet(ctx, s.m.Key(s.m.Of(id), "moved"), id).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		reloadOnNetError(ctx, s.rdb, err)
		return 0, false, fmt.Errorf("looking up a moved subscription: %w", err)
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 0 || p >= s.m.Count() {
		return 0, false, nil
	}
	s.moved.Store(id, p)
	return p, true, nil
}
