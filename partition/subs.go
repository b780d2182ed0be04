package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/substore"
)

// Per-partition keys of the subscriptions:
//
//	sub:<id>  hash: rec (substore.EncodeRecord), cseq, ver; expires past
//	          the subscription's expiry (substore.KeyTTL)
//	subs      set: the dialog ids of the partition's subscriptions
//	subin     stream: one entry per save or delete, fields id, op
//	          ("save" or "del") and from (the instance that wrote), so
//	          that the owner learns of subscriptions stored elsewhere
//
// Every write touches the three in one script. The dialog id names its
// partition: the local tag (ours, the To tag of the 2xx) ends in
// ".p<partition>" (Subs.DialogTag), so any instance finds a record from
// an in-dialog request alone.

// InboxMaxLen is about how many entries a partition's inbox keeps at
// most: the bound for an inbox nobody reads (no owner). An owner trims
// its inboxes itself, to what it has not consumed yet (PollInbox), so an
// owner that falls behind loses nothing unless it falls behind by this
// many writes to one partition.
const InboxMaxLen = 100000

// inboxTrimEvery: every this many PollInbox calls (a second at the
// follow loop's 20 ms), the inboxes polled are trimmed to the entries
// after their positions, in one more pipeline.
const inboxTrimEvery = 50

// Subs keeps subscription records in their AOR's partition: a record is
// sent for (its NOTIFYs fenced) by the instance that owns the partition.
// It has the methods of the notifier's store (Save, Take, Delete,
// Advance, Recover, Beat, Claim, Release), with the partitions' owner in
// place of per-record owners and heartbeats.
type Subs struct {
	rdb redis.Cmdable
	m   *Map
	o   *Owner
	me  string
	log *slog.Logger

	trips  atomic.Uint64
	polls  atomic.Uint64 // PollInbox calls, for trimming; each one round trip
	fences atomic.Uint64 // of trips: Advance, one per NOTIFY
	moved  sync.Map      // dialog id -> partition, of subscriptions moved from the single-tag layout (move.go)
	served sync.Map      // partition -> struct{}: taken in by this instance (Serve)

	// afterPos, when set (tests), runs in Load between reading the
	// inbox position and loading the records.
	afterPos func()
}

// NewSubs returns the partitioned subscription store of instance me,
// whose partition leases o holds.
func NewSubs(rdb redis.Cmdable, m *Map, o *Owner, me string, log *slog.Logger) *Subs {
	return &Subs{rdb: rdb, m: m, o: o, me: me, log: log.With("component", "partition-subs")}
}

// ErrNotServed is Advance's answer for a partition this instance holds
// but has not taken in yet (Serve): try again shortly.
var ErrNotServed = errors.New("partition held but not loaded here yet")

// RoundTrips is the number of Redis round trips made so far.
func (s *Subs) RoundTrips() uint64 { return s.trips.Load() }

// RoundTripsBy splits RoundTrips: fences (Advance, one per NOTIFY),
// inbox polls (PollInbox, one per poll of the owned partitions'
// inboxes) and the rest (Save, Take, Delete, Load and Records when a
// partition is gained or a subscription handed over, inbox trims).
func (s *Subs) RoundTripsBy() (fences, inboxPolls, other uint64) {
	// The parts first, the total after: each part counted so far is in
	// it once the trip is made.
	fences, inboxPolls = s.fences.Load(), s.polls.Load()
	if total := s.trips.Load(); total > fences+inboxPolls {
		other = total - fences - inboxPolls
	}
	return fences, inboxPolls, other
}

// tagSep starts the partition suffix of a local tag; tagRandom is the
// length of the random part before it.
const (
	tagSep    = ".p"
	tagRandom = 16
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// DialogTag returns a fresh local (To) tag for a new subscription dialog
// to canonicalAOR: 16 random alphanumerics, then ".p" and the AOR's
// partition in decimal (a SIP token), e.g. "q3ZbW0k9aT1mXy7c.p42".
func (s *Subs) DialogTag(canonicalAOR string) string {
	var b strings.Builder
	b.Grow(tagRandom + len(tagSep) + 4)
	for range tagRandom {
		b.WriteByte(alnum[rand.IntN(len(alnum))])
	}
	b.WriteString(tagSep)
	b.WriteString(strconv.Itoa(s.m.Of(canonicalAOR)))
	return b.String()
}

// PartitionOfTag reads the partition from a local tag made by DialogTag.
// false for any other tag: another length or alphabet, no suffix, or a
// partition number not written as DialogTag writes it (no sign, no
// leading zero, at most MaxCount-1). Whether the partition exists in a
// given Map is for the caller (Subs.PartitionOfID checks it).
func PartitionOfTag(tag string) (int, bool) {
	if len(tag) <= tagRandom+len(tagSep) || tag[tagRandom:tagRandom+len(tagSep)] != tagSep {
		return 0, false
	}
	for i := range tagRandom {
		if !strings.ContainsRune(alnum, rune(tag[i])) {
			return 0, false
		}
	}
	num := tag[tagRandom+len(tagSep):]
	if len(num) > 1 && num[0] == '0' {
		return 0, false
	}
	for i := range len(num) {
		if num[i] < '0' || num[i] > '9' {
			return 0, false
		}
	}
	p, err := strconv.Atoi(num)
	if err != nil || p >= MaxCount {
		return 0, false
	}
	return p, true
}

// PartitionOfID reads the partition from a dialog id as the notifier
// makes it (Call-ID, local tag, remote tag, separated by NUL): the local
// tag's, when DialogTag made it for a partition of this Map.
func (s *Subs) PartitionOfID(id string) (int, bool) {
	_, rest, ok := strings.Cut(id, "\x00")
	if !ok {
		return 0, false
	}
	tag, remote, ok := strings.Cut(rest, "\x00")
	if !ok || strings.Contains(remote, "\x00") {
		return 0, false
	}
	p, ok := PartitionOfTag(tag)
	if !ok || p >= s.m.Count() {
		return 0, false
	}
	return p, true
}

// Serve records that this instance has taken partition p in, after it
// gained p's lease: its contacts and subscriptions are loaded. From then
// on Owns reports p's AORs. Call it before
// continuing the loaded subscriptions; Unserve when p is lost, before
// the lease is released.
func (s *Subs) Serve(p int) { s.served.Store(p, struct{}{}) }

// Unserve undoes Serve: partition p is being handed over.
func (s *Subs) Unserve(p int) { s.served.Delete(p) }

// serves reports whether this instance serves partition p (Serve).
func (s *Subs) serves(p int) bool {
	_, ok := s.served.Load(p)
	return ok
}

// Owns reports whether this instance sends the NOTIFYs of the AOR's
// subscriptions now: it holds the partition's lease and has taken the
// partition in (Serve). Between the two a SUBSCRIBE answered here is
// handed over through the inbox, to this instance itself once it serves.
func (s *Subs) Owns(canonicalAOR string) bool {
	p := s.m.Of(canonicalAOR)
	if !s.serves(p) {
		return false
	}
	_, ok := s.o.Holder(p)
	return ok
}

// subKeys are the keys a write of subscription id touches.
func (s *Subs) subKeys(p int, id string) []string {
	return []string{s.m.Key(p, "sub:"+id), s.m.Key(p, "subs"), s.m.Key(p, "subin")}
}

// saveSub: KEYS sub, subs, subin; ARGV rec, cseq, ver, ttl ms, create
// ("1" or "0"), id, from, inbox maxlen. Counters are set only on
// creation (afterwards only Advance changes them); an update needs the
// hash to exist. Returns 1, or -1 when an update found nothing.
var saveSub = redis.NewScript(`
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'cseq', ARGV[2], 'ver', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[6], 'op', 'save', 'from', ARGV[7])
return 1
`)

// Save stores rec in its AOR's partition, in one round trip, and tells
// the partition's owner through its inbox. create makes a new record
// with rec's counters; otherwise the record must exist
// (substore.ErrNotFound) and keeps its counters. rec's dialog id must
// carry the AOR's partition (DialogTag); a record whose id does not is
// refused, and nothing is written. Any instance may save: the owner
// sends.
func (s *Subs) Save(ctx context.Context, rec *substore.Record, create bool) error {
	p := s.m.Of(bridge.CanonicalAOR(rec.AOR))
	if q, ok, _ := s.partitionOf(ctx, rec.ID, false); !ok || q != p {
		return fmt.Errorf("saving subscription %q: its dialog id does not carry its AOR's partition %d (local tag not made by DialogTag)", rec.ID, p)
	}
	js, err := substore.EncodeRecord(rec)
	if err != nil {
		return err
	}
	flag := "0"
	if create {
		flag = "1"
	}
	s.trips.Add(1)
	n, err := saveSub.Run(ctx, s.rdb, s.subKeys(p, rec.ID),
		js, rec.LocalCSeq, rec.Version, substore.KeyTTL(rec).Milliseconds(), flag, rec.ID, s.me, InboxMaxLen).Int()
	if err != nil {
		reloadOnNetError(ctx, s.rdb, err)
		return fmt.Errorf("saving subscription: %w", err)
	}
	if n < 0 {
		return substore.ErrNotFound
	}
	if _, tagged := s.PartitionOfID(rec.ID); !tagged {
		// Moved from the single-tag layout: its index entry lives as
		// long as the record.
		s.trips.Add(1)
		if _, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			s.index(ctx, pl, rec.ID, p, substore.KeyTTL(rec))
			return nil
		}); err != nil {
			s.log.Warn("extending the index of a moved subscription", "err", err)
		}
	}
	return nil
}

// Take loads subscription id (a refresh or an unSUBSCRIBE arrived here)
// in one round trip and changes nothing: the record with its counters
// and, as Owner, the instance holding its partition's lease ("" when
// none does); wasOwner is whether this instance holds it now.
// substore.ErrNotFound when there is no such record, or the id names no
// partition.
func (s *Subs) Take(ctx context.Context, id string) (*substore.Record, bool, error) {
	p, ok, err := s.partitionOf(ctx, id, true)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, substore.ErrNotFound
	}
	var (
		fields *redis.MapStringStringCmd
		lease  *redis.StringCmd
	)
	s.trips.Add(1)
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		fields = pl.HGetAll(ctx, s.m.Key(p, "sub:"+id))
		lease = pl.Get(ctx, s.m.PartitionLease(p).Key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		reloadOnNetError(ctx, s.rdb, err)
		return nil, false, fmt.Errorf("taking subscription: %w", err)
	}
	rec, err := substore.DecodeFields(id, fields.Val())
	if err != nil {
		return nil, false, err
	}
	if h, err := parseHolder(lease.Val()); err == nil {
		rec.Owner = h.ID
	}
	_, mine := s.o.Holder(p)
	return rec, mine, nil
}

// delSub: KEYS sub, subs, subin; ARGV id, from, inbox maxlen.
var delSub = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[1], 'op', 'del', 'from', ARGV[2])
return 1
`)

// Delete removes subscription id and tells its partition's owner, in one
// round trip. An id that names no partition is left alone (there is
// nothing stored under it).
func (s *Subs) Delete(ctx context.Context, id string) error {
	p, ok, err := s.partitionOf(ctx, id, true)
	if err != nil || !ok {
		return err
	}
	s.trips.Add(1)
	if err := delSub.Run(ctx, s.rdb, s.subKeys(p, id), id, s.me, InboxMaxLen).Err(); err != nil {
		reloadOnNetError(ctx, s.rdb, err)
		return fmt.Errorf("deleting subscription: %w", err)
	}
	s.moved.Delete(id)
	return nil
}

// Advance is the fence of a NOTIFY (Map.Advance): it checks that this
// instance still holds the partition of subscription id and takes the
// next CSeq and version, in one round trip. substore.ErrNotOwner when
// it does not hold the partition (then no round trip), lost its lease,
// or the record is gone: the NOTIFY must not be sent.
func (s *Subs) Advance(ctx context.Context, id string) (cseq, version uint32, err error) {
	p, ok, _ := s.partitionOf(ctx, id, false)
	if !ok {
		return 0, 0, substore.ErrNotOwner
	}
	h, ok := s.o.Holder(p)
	if !ok {
		return 0, 0, substore.ErrNotOwner
	}
	if !s.serves(p) {
		// Held but not taken in yet (Serve): the partition's contacts
		// are not here, so a document now would lack them. A passing
		// error: the notifier sends full state a moment later, when the
		// copy it holds (one that outlived the partition's loss and
		// regain) is still its to send, and Continue leaves that copy
		// alone as known.
		return 0, 0, fmt.Errorf("partition %d: %w", p, ErrNotServed)
	}
	s.trips.Add(1)
	s.fences.Add(1)
	cseq, version, err = s.m.Advance(ctx, s.rdb, p, h, id)
	if errors.Is(err, ErrNotOwner) {
		return 0, 0, substore.ErrNotOwner
	}
	if err != nil {
		reloadOnNetError(ctx, s.rdb, err)
	}
	return cseq, version, err
}

// Recover returns nothing: an owner's subscriptions arrive partition by
// partition as it gains them (Load from Owner.OnGain).
func (s *Subs) Recover(context.Context) ([]*substore.Record, bool, error) { return nil, false, nil }

// Beat does nothing: the Owner keeps this instance's membership.
func (s *Subs) Beat(context.Context) error { return nil }

// Claim takes over nothing: a dead instance's partitions are gained
// through the Owner.
func (s *Subs) Claim(context.Context, int) ([]*substore.Record, error) { return nil, nil }

// Release does nothing: the Owner hands the partitions over when it
// stops.
func (s *Subs) Release(context.Context) error { return nil }

// loadPos reads the inbox's last entry id ("0-0" when empty), then the
// partition's subscription ids, atomically.
var loadPos = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {id, redis.call('SMEMBERS', KEYS[2])}
`)

// forget: KEYS subs, then the hashes of ARGV's ids: removes each id
// whose hash is (still) gone from the set; one saved again meanwhile
// stays.
var forget = redis.NewScript(`
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('SREM', KEYS[1], ARGV[i]) end
end
return 1
`)

// Load reads partition p's subscriptions for an owner that just gained
// it, and the inbox position to poll from (PollInbox): every save after
// that position is in the inbox, every one before it is among the
// records, so nothing is missed (a save racing the load may be seen
// twice). Ids whose hash is gone are removed from the partition's set;
// records past their expiry are returned too, as long as they are stored
// (an unsubscribe or a fetch answered while the partition had no owner:
// its final NOTIFY is still owed). Owner is this instance when it
// holds p, else "". Two round trips, a third when some ids were gone.
func (s *Subs) Load(ctx context.Context, p int) ([]*substore.Record, string, error) {
	if p < 0 || p >= s.m.Count() {
		return nil, "", fmt.Errorf("loading subscriptions: no partition %d of %d", p, s.m.Count())
	}
	s.trips.Add(1)
	v, err := loadPos.Run(ctx, s.rdb, []string{s.m.Key(p, "subin"), s.m.Key(p, "subs")}).Slice()
	if err != nil || len(v) != 2 {
		reloadOnNetError(ctx, s.rdb, err)
		return nil, "", fmt.Errorf("loading subscriptions of partition %d: %w", p, err)
	}
	pos, _ := v[0].(string)
	members, _ := v[1].([]any)
	ids := make([]string, 0, len(members))
	for _, x := range members {
		if id, ok := x.(string); ok {
			ids = append(ids, id)
		}
	}
	if s.afterPos != nil {
		s.afterPos()
	}
	got, gone, err := s.records(ctx, p, ids)
	if err != nil {
		return nil, "", err
	}
	if len(gone) > 0 {
		keys := []string{s.m.Key(p, "subs")}
		for _, id := range gone {
			keys = append(keys, s.m.Key(p, "sub:"+id.(string)))
		}
		s.trips.Add(1)
		if err := forget.Run(ctx, s.rdb, keys, gone...).Err(); err != nil {
			s.log.Warn("removing ended subscriptions from the partition's set", "partition", p, "err", err)
		}
	}
	recs := make([]*substore.Record, 0, len(got))
	for _, id := range ids {
		if rec, ok := got[id]; ok {
			recs = append(recs, rec)
		}
	}
	return recs, pos, nil
}

// Records loads subscriptions ids of partition p in one round trip (one
// pipeline of HGETALLs): a missing id is absent from the map (deleted or
// expired). Owner is this instance when it holds p, else "".
func (s *Subs) Records(ctx context.Context, p int, ids []string) (map[string]*substore.Record, error) {
	if p < 0 || p >= s.m.Count() {
		return nil, fmt.Errorf("loading subscriptions: no partition %d of %d", p, s.m.Count())
	}
	got, _, err := s.records(ctx, p, ids)
	return got, err
}

// records loads ids of partition p in one pipeline; gone lists the ids
// whose hash is missing.
func (s *Subs) records(ctx context.Context, p int, ids []string) (map[string]*substore.Record, []any, error) {
	out := make(map[string]*substore.Record, len(ids))
	if len(ids) == 0 {
		return out, nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	s.trips.Add(1)
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pl.HGetAll(ctx, s.m.Key(p, "sub:"+id))
		}
		return nil
	})
	if err != nil {
		reloadOnNetError(ctx, s.rdb, err)
		return nil, nil, fmt.Errorf("loading subscriptions of partition %d: %w", p, err)
	}
	owner := ""
	if _, ok := s.o.Holder(p); ok {
		owner = s.me
	}
	var gone []any
	for i, c := range cmds {
		rec, err := substore.DecodeFields(ids[i], c.Val())
		if errors.Is(err, substore.ErrNotFound) {
			gone = append(gone, ids[i])
			continue
		}
		if err != nil {
			// Written by a newer regbridge, or damaged: skipped, not
			// misread, and left in place.
			s.log.Warn("skipping a subscription record", "partition", p, "err", err)
			continue
		}
		rec.ID, rec.Owner = ids[i], owner
		out[ids[i]] = rec
		if _, tagged := s.PartitionOfID(rec.ID); !tagged {
			s.moved.Store(rec.ID, p) // moved from the single-tag layout
		}
	}
	return out, gone, nil
}

// trimInboxes drops the inbox entries up to each position in pos, which
// the caller has consumed (XTRIM MINID, approximate: whole nodes of the
// stream go, none after the position). A failure leaves them for the
// next time.
func (s *Subs) trimInboxes(ctx context.Context, pos map[int]string) {
	s.trips.Add(1)
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for p, id := range pos {
			if id != "0-0" {
				pl.XTrimMinIDApprox(ctx, s.m.Key(p, "subin"), id, 0)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.log.Debug("trimming partition inboxes", "err", err)
	}
}

// InboxEntry is one write of a partition's subscriptions: ID (the dialog
// id), Op ("save" or "del") and From (the instance that wrote it).
type InboxEntry struct{ ID, Op, From string }

// PollInbox reads up to count inbox entries after each position in pos
// (keyed by partition, positions as Load returns them) in one pipeline,
// and advances pos in place. Every entry is returned, this instance's
// own too: whether this instance handled a write itself or handed it
// over is the notifier's to tell (it compares the record with its copy,
// notifier.Continue), which a flag written at save time could not (the
// instance may start serving the partition between deciding and
// saving). A partition whose read failed (its shard
// failing over) keeps its position and is read again next time; the
// errors are returned joined, with what the other partitions gave.
func (s *Subs) PollInbox(ctx context.Context, pos map[int]string, count int) (map[int][]InboxEntry, error) {
	out := map[int][]InboxEntry{}
	if len(pos) == 0 {
		return out, nil
	}
	if s.polls.Add(1)%inboxTrimEvery == 0 {
		s.trimInboxes(ctx, pos)
	}
	s.trips.Add(1)
	got, err := readAfter(ctx, s.rdb, s.m, "subin", pos, count)
	for p, msgs := range got {
		pos[p] = msgs[len(msgs)-1].ID
		for _, m := range msgs {
			e := InboxEntry{}
			e.ID, _ = m.Values["id"].(string)
			e.Op, _ = m.Values["op"].(string)
			e.From, _ = m.Values["from"].(string)
			out[p] = append(out[p], e)
		}
	}
	return out, err
}
