package partition

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Owner keeps this instance's share of the partition leases: every
// ttl/3 it renews its membership, computes the assignment from the live
// members (Assign), renews the leases it should hold, releases those it
// should not (after OnLose, so it stops sending first) and acquires the
// free ones assigned to it. A dead instance's membership and leases run
// out after ttl, and the survivors acquire its partitions at their next
// round: within about 1.43 x ttl.
type Owner struct {
	rdb redis.Cmdable
	m   *Map
	me  string
	ttl time.Duration
	log *slog.Logger

	// OnGain is called when this instance starts owning partition p under
	// h (h.Epoch is the fencing token); OnLose when it must stop sending
	// for p. Both run on Run's goroutine, in order; set them before Run.
	OnGain func(p int, h Holder)
	OnLose func(p int)

	roundMu sync.Mutex // one Round at a time

	started     chan struct{} // closed after the first successful Round
	startedOnce sync.Once

	heldMu sync.Mutex
	held   map[int]held
}

type held struct {
	h     Holder
	until time.Time // local deadline: the last successful renewal's start + ttl
}

// NewOwner returns the partition owner of instance me.
func NewOwner(rdb redis.Cmdable, m *Map, me string, ttl time.Duration, log *slog.Logger) *Owner {
	return &Owner{rdb: rdb, m: m, me: me, ttl: ttl, log: log.With("component", "partitions"), held: map[int]held{},
		started: make(chan struct{})}
}

// Owned returns the partitions this instance holds and their holders.
func (o *Owner) Owned() map[int]Holder {
	o.heldMu.Lock()
	defer o.heldMu.Unlock()
	out := make(map[int]Holder, len(o.held))
	now := time.Now()
	for p, h := range o.held {
		if now.Before(h.until) {
			out[p] = h.h
		}
	}
	return out
}

// Holder returns the holder under which this instance holds partition p
// now; false when it does not (never gained, lost, or its local deadline
// passed without a renewal). Cheaper than Owned for one partition.
func (o *Owner) Holder(p int) (Holder, bool) {
	o.heldMu.Lock()
	defer o.heldMu.Unlock()
	h, ok := o.held[p]
	if !ok || !time.Now().Before(h.until) {
		return Holder{}, false
	}
	return h.h, true
}

// Started is closed once Run's first round has gone through: the
// partitions assigned to this instance then and free have been gained
// (OnGain called for each).
func (o *Owner) Started() <-chan struct{} { return o.started }

// Run holds leases until ctx ends, then hands them over: OnLose for each,
// release, and leave the members so peers take over at their next round.
func (o *Owner) Run(ctx context.Context) error {
	tick := time.NewTicker(o.ttl / 3)
	defer tick.Stop()
	for {
		err := o.Round(ctx)
		if err != nil && ctx.Err() == nil {
			o.log.Warn("partition round failed", "err", err)
		}
		if err == nil {
			o.startedOnce.Do(func() { close(o.started) })
		}
		select {
		case <-ctx.Done():
			o.stop()
			return nil
		case <-tick.C:
		}
	}
}

func (o *Owner) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), o.ttl)
	defer cancel()
	o.heldMu.Lock()
	all := maps.Clone(o.held)
	o.heldMu.Unlock()
	for p, h := range all {
		o.lose(p)
		_ = o.m.PartitionLease(p).Release(ctx, o.rdb, h.h)
	}
	_ = o.m.Members(o.rdb).Leave(ctx, o.me)
}

func (o *Owner) lose(p int) {
	o.heldMu.Lock()
	_, ok := o.held[p]
	delete(o.held, p)
	o.heldMu.Unlock()
	if ok && o.OnLose != nil {
		o.OnLose(p)
	}
}

// Round is one round of the loop (exported for tests that step it).
func (o *Owner) Round(ctx context.Context) error {
	o.roundMu.Lock()
	defer o.roundMu.Unlock()
	start := time.Now()
	// Membership outlives the leases renewed after it in this round by a
	// tenth: when a dead owner's membership is gone, so are its leases,
	// and the partitions are acquired in the round that notices it (at
	// most 1.1 + 1/3 of the lease after the death).
	members, err := o.m.Members(o.rdb).Beat(ctx, o.me, o.ttl+o.ttl/10)
	if err != nil {
		reloadOnNetError(ctx, o.rdb, err)
		o.expire(start)
		return err
	}
	want := Assign(o.m.Count(), members)
	o.heldMu.Lock()
	cur := maps.Clone(o.held)
	o.heldMu.Unlock()

	// Hand over first: stop sending, then release (one pipeline).
	var give []int
	for p := range cur {
		if want[p] != o.me {
			give = append(give, p)
		}
	}
	for _, p := range give {
		o.lose(p)
	}
	type op struct {
		p     int
		renew bool
		cmd   *redis.Cmd
	}
	var ops []op
	_, err = o.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, p := range give {
			l := o.m.PartitionLease(p)
			release.Eval(ctx, pl, []string{l.Key}, cur[p].h.String())
		}
		for p, who := range want {
			if who != o.me {
				continue
			}
			l := o.m.PartitionLease(p)
			if h, ok := cur[p]; ok {
				ops = append(ops, op{p, true, renew.Eval(ctx, pl, []string{l.Key}, h.h.String(), o.ttl.Milliseconds())})
			} else {
				ops = append(ops, op{p, false, acquire.Eval(ctx, pl, []string{l.Key, l.EpochKey}, o.me, o.ttl.Milliseconds())})
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		// Individual commands may have failed (a shard failing over):
		// handle each by its own result below.
		reloadOnNetError(ctx, o.rdb, err)
		o.log.Debug("partition pipeline", "err", err)
	}
	until := start.Add(o.ttl)
	for _, r := range ops {
		if r.renew {
			n, err := r.cmd.Int()
			switch {
			case err != nil:
				if time.Now().After(cur[r.p].until) {
					o.lose(r.p)
				}
			case n == 1:
				o.heldMu.Lock()
				h, ok := o.held[r.p]
				lapsed := ok && !time.Now().Before(h.until)
				if ok {
					h.until = until
					o.held[r.p] = h
				}
				o.heldMu.Unlock()
				if lapsed {
					// Renewed late: meanwhile Holder said no, and the
					// NOTIFYs of p stopped here. Taken in again, as a
					// loss and a gain, so nothing of p is left unserved.
					o.lose(r.p)
					o.heldMu.Lock()
					o.held[r.p] = h
					o.heldMu.Unlock()
					if o.OnGain != nil {
						o.OnGain(r.p, h.h)
					}
				}
			default:
				o.log.Warn("partition lease lost", "partition", r.p)
				o.lose(r.p)
			}
			continue
		}
		v, err := r.cmd.Text()
		if err != nil || strings.HasPrefix(v, "!") {
			continue // held by the previous owner until it hands over or expires
		}
		h, err := parseHolder(v)
		if err != nil {
			continue
		}
		o.heldMu.Lock()
		o.held[r.p] = held{h: h, until: until}
		o.heldMu.Unlock()
		if o.OnGain != nil {
			o.OnGain(r.p, h)
		}
	}
	o.expire(time.Now())
	return nil
}

// expire drops leases whose local deadline passed without a renewal.
func (o *Owner) expire(now time.Time) {
	o.heldMu.Lock()
	var gone []int
	for p, h := range o.held {
		if !now.Before(h.until) {
			gone = append(gone, p)
		}
	}
	o.heldMu.Unlock()
	for _, p := range gone {
		o.lose(p)
	}
}
