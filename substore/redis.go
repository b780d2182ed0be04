package substore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared store. Keys, all under one hash tag ({prefix}) so
// that every script's keys share one Cluster slot:
//
//	{p}sub:<dialog id>  hash: rec (JSON), owner, cseq, ver; TTL past expiry
//	{p}owned:<inst>     set of the dialog ids an instance owns
//	{p}hb:<inst>        the instance's heartbeat, TTL = lease
//	{p}instances        set of instances that may own something
//	{p}contacts         hash: the bridge's last known contacts by store key
type Redis struct {
	rdb   redis.UniversalClient
	me    string
	lease time.Duration
	p     string // "{prefix}"
	log   *slog.Logger

	// trips counts round trips to Redis (measured per NOTIFY in tests).
	trips atomic.Uint64
}

// NewRedis returns a store on rdb for instance me. lease is the heartbeat
// lifetime.
func NewRedis(rdb redis.UniversalClient, prefix, me string, lease time.Duration, log *slog.Logger) *Redis {
	return &Redis{rdb: rdb, me: me, lease: lease, p: "{" + prefix + "}", log: log.With("component", "substore")}
}

// Instance is this instance's id.
func (r *Redis) Instance() string { return r.me }

// RoundTrips is the number of Redis round trips made so far.
func (r *Redis) RoundTrips() uint64 { return r.trips.Load() }

func (r *Redis) subKey(id string) string     { return r.p + "sub:" + id }
func (r *Redis) ownedKey(inst string) string { return r.p + "owned:" + inst }
func (r *Redis) hbKey(inst string) string    { return r.p + "hb:" + inst }
func (r *Redis) instancesKey() string        { return r.p + "instances" }

// grace keeps a record this long past its expiry, for a refresh racing it.
const grace = time.Minute

// KeyTTL is how long the hash of rec is kept from now: past its expiry
// by a grace, for a refresh racing the expiry.
func KeyTTL(rec *Record) time.Duration {
	return max(time.Until(rec.Expires), 0) + grace
}

// advance: the fence every NOTIFY passes (one round trip).
var advance = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return false end
local c = redis.call('HINCRBY', KEYS[1], 'cseq', 1)
if c > 2147483647 then c = 1; redis.call('HSET', KEYS[1], 'cseq', 1) end
local v = redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {c, v - 1}
`)

// Advance checks that this instance owns the subscription and takes the
// next NOTIFY's CSeq and reginfo version, atomically. ErrNotOwner when
// another instance (or nobody) owns it.
func (r *Redis) Advance(ctx context.Context, id string) (cseq, version uint32, err error) {
	r.trips.Add(1)
	res, err := advance.Run(ctx, r.rdb, []string{r.subKey(id)}, r.me).Int64Slice()
	if errors.Is(err, redis.Nil) {
		return 0, 0, ErrNotOwner
	}
	if err != nil {
		return 0, 0, fmt.Errorf("advancing subscription: %w", err)
	}
	return uint32(res[0]), uint32(res[1]), nil
}

// save writes a record owned by ARGV[1]: creates it (ARGV[6] = "1") or
// updates the dialog of one this instance owns; counters are set only on
// creation (afterwards only advance changes them).
var save = redis.NewScript(`
local o = redis.call('HGET', KEYS[1], 'owner')
if o and o ~= ARGV[1] then return 0 end
if not o and ARGV[6] ~= '1' then return -1 end
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'owner', ARGV[1])
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'cseq', ARGV[3], 'ver', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
`)

// Save stores rec as owned by this instance. create makes a new record
// (with rec's counters); otherwise the record must exist and be ours.
func (r *Redis) Save(ctx context.Context, rec *Record, create bool) error {
	js, err := EncodeRecord(rec)
	if err != nil {
		return err
	}
	ttl := KeyTTL(rec)
	flag := "0"
	if create {
		flag = "1"
	}
	r.trips.Add(1)
	n, err := save.Run(ctx, r.rdb,
		[]string{r.subKey(rec.ID), r.ownedKey(r.me), r.instancesKey()},
		r.me, js, rec.LocalCSeq, rec.Version, ttl.Milliseconds(), flag, rec.ID).Int()
	switch {
	case err != nil:
		return fmt.Errorf("saving subscription: %w", err)
	case n == 0:
		return ErrNotOwner
	case n < 0:
		return ErrNotFound
	}
	rec.Owner = r.me
	return nil
}

// take moves a subscription to ARGV[1] from whoever owns it and returns
// the previous owner and the record.
var take = redis.NewScript(`
local o = redis.call('HGET', KEYS[1], 'owner')
if not o then return false end
if o ~= ARGV[1] then
  redis.call('SREM', ARGV[2] .. o, ARGV[3])
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[1])
end
return {o, redis.call('HGETALL', KEYS[1])}
`)

// Take makes this instance the owner of subscription id (a refresh
// arrived here, RFC 6665 4.2.1.2) and returns its record and whether
// this instance owned it already. ErrNotFound when there is none.
func (r *Redis) Take(ctx context.Context, id string) (*Record, bool, error) {
	r.trips.Add(1)
	v, err := take.Run(ctx, r.rdb, []string{r.subKey(id), r.ownedKey(r.me), r.instancesKey()},
		r.me, r.p+"owned:", id).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, false, ErrNotFound
	}
	if err != nil {
		return nil, false, fmt.Errorf("taking subscription: %w", err)
	}
	prev, _ := v[0].(string)
	rec, err := decodeFlat(id, v[1])
	if err != nil {
		return nil, false, err
	}
	return rec, prev == r.me, nil
}

var del = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
`)

// Delete removes a subscription this instance owns; one owned by another
// instance (or gone) is left alone.
func (r *Redis) Delete(ctx context.Context, id string) error {
	r.trips.Add(1)
	if err := del.Run(ctx, r.rdb, []string{r.subKey(id), r.ownedKey(r.me)}, r.me, id).Err(); err != nil {
		return fmt.Errorf("deleting subscription: %w", err)
	}
	return nil
}

// decodeFlat reads a record from HGETALL's flat field/value reply.
func decodeFlat(id string, v any) (*Record, error) {
	list, _ := v.([]any)
	m := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		m[k] = val
	}
	return DecodeFields(id, m)
}

// DecodeFields reads subscription id from the fields of its hash: rec
// (EncodeRecord), cseq, ver and, when present, owner. ErrNotFound when
// there is no rec (the hash is gone).
func DecodeFields(id string, m map[string]string) (*Record, error) {
	js, ok := m["rec"]
	if !ok {
		return nil, ErrNotFound
	}
	rec, err := DecodeRecord([]byte(js))
	if err != nil {
		return nil, fmt.Errorf("decoding subscription %q: %w", id, err)
	}
	rec.ID = id
	rec.Owner = m["owner"]
	cseq, _ := strconv.ParseUint(m["cseq"], 10, 32)
	ver, _ := strconv.ParseUint(m["ver"], 10, 32)
	rec.LocalCSeq, rec.Version = uint32(cseq), uint32(ver)
	return rec, nil
}
