package main

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/substore"
)

// Partition owners (docs/cluster.md, "Scaling out"): every instance runs
// a partition.Owner, which holds this instance's share of the partition
// leases. The follow loop (partitions.go) keeps the bridge to the owned
// partitions' contacts and the notifier to their subscriptions; the
// NOTIFY fence is the partition lease (partition.Subs).

// ownEvent is a partition gained or lost, queued by the Owner's
// callbacks for the follow loop, which alone touches the Follower.
type ownEvent struct {
	p    int
	gain bool
}

// queue records a gain or a loss for the follow loop, in order.
func (pt *partitioned) queue(p int, gain bool) {
	pt.evMu.Lock()
	pt.events = append(pt.events, ownEvent{p, gain})
	pt.evMu.Unlock()
}

// onLose stops the notifier sending for p at once, before the Owner
// releases the lease: its subscriptions are dropped here, left stored
// for the next owner. The contacts go with the follow loop's next round.
func (pt *partitioned) onLose(p int) {
	pt.subs.Unserve(p) // SUBSCRIBEs for p are handed over from now on
	if n := pt.nt.Forget(func(c string) bool { return pt.m.Of(c) == p }); n > 0 {
		pt.log.Info("partition handed over", "partition", p, "subscriptions", n)
	}
	pt.queue(p, false)
}

// following is the follow loop's state of the partitions it serves.
type following struct {
	f       *partition.Follower
	inbox   map[int]string // each served partition's inbox position
	pending map[int]bool   // gained, not loaded yet: tried again every round
	// legacy is the single-tag layout's contacts record by partition
	// while it exists (an upgrade, upgrade.go): a partition gained then
	// starts from it at its stream's beginning.
	legacy map[int][]source.Contact
}

// ownership applies the queued gains and losses, in order, then loads
// the gained partitions: a lost partition's contacts are forgotten and
// its stream no longer followed; a gained one's recorded state is
// adopted silently, its stream followed from that state's position, and
// its subscriptions continued with full NOTIFYs. A partition that cannot
// be loaded (its shard failing over) stays pending and is tried again
// next round, while the others are served. true when none is pending.
func (pt *partitioned) ownership(ctx context.Context, fl *following) bool {
	pt.evMu.Lock()
	evs := pt.events
	pt.events = nil
	pt.evMu.Unlock()
	for _, ev := range evs {
		if ev.gain {
			fl.pending[ev.p] = true
			continue
		}
		delete(fl.pending, ev.p)
		fl.f.Stop(ev.p)
		delete(fl.inbox, ev.p)
		// Again, in case the loss overlapped the gain's loading.
		pt.subs.Unserve(ev.p)
		pt.nt.Forget(func(c string) bool { return pt.m.Of(c) == ev.p })
		pt.br.Forget(func(c string) bool { return pt.m.Of(c) == ev.p })
	}
	for _, p := range slices.Sorted(maps.Keys(fl.pending)) {
		if _, ok := pt.owner.Holder(p); !ok {
			delete(fl.pending, p) // lost meanwhile: its loss is queued
			continue
		}
		if err := pt.gain(ctx, fl, p); err != nil {
			if ctx.Err() == nil {
				pt.log.Warn("loading a gained partition; trying again", "partition", p, "err", err)
			}
			continue
		}
		delete(fl.pending, p)
	}
	return len(fl.pending) == 0
}

// gain takes partition p in: contacts first, so that the full NOTIFYs
// of its subscriptions show them.
func (pt *partitioned) gain(ctx context.Context, fl *following, p int) error {
	// The inbox position is read before the subscriptions: one saved
	// meanwhile is seen again, none is missed.
	recs, pos, err := pt.subs.Load(ctx, p)
	if err != nil {
		return err
	}
	if fl.legacy != nil {
		if ok, err := pt.legacy.HasContacts(ctx); err != nil {
			return err
		} else if !ok {
			fl.legacy = nil // the upgrade is over: the partitions hold it
		}
	}
	var contacts []source.Contact
	if fl.legacy != nil {
		fl.f.StartAt(p, streamStart)
		contacts = fl.legacy[p]
	} else {
		b, err := fl.f.Start(ctx, p)
		if err != nil {
			return err
		}
		contacts = appendState(nil, b.State, pt.log)
	}
	pt.br.Adopt(contacts)
	// Served from here on: a SUBSCRIBE for p answered here until now
	// was handed over through the inbox, which is read from pos.
	pt.subs.Serve(p)
	fl.inbox[p] = pos
	pt.nt.Continue(recs)
	pt.log.Debug("partition taken", "partition", p, "contacts", len(contacts), "subscriptions", len(recs))
	return nil
}

// pollInbox continues the subscriptions answered for the partitions
// served here (a SUBSCRIBE, refresh, unsubscribe or fetch, by any
// instance, this one too: Continue leaves alone what it knows), and
// drops here the ones deleted. A partition's position moves on only once
// its records are loaded, so a failed read is tried again.
func (pt *partitioned) pollInbox(ctx context.Context, fl *following) {
	if len(fl.inbox) == 0 {
		return
	}
	pos := maps.Clone(fl.inbox)
	got, err := pt.subs.PollInbox(ctx, pos, followCount)
	if err != nil && ctx.Err() == nil {
		pt.log.Warn("reading partition subscription inboxes", "err", err)
	}
	for p, es := range got {
		ids := make([]string, 0, len(es))
		seen := make(map[string]bool, len(es))
		for _, e := range es {
			if !seen[e.ID] {
				seen[e.ID] = true
				ids = append(ids, e.ID)
			}
		}
		recs, err := pt.subs.Records(ctx, p, ids)
		if err != nil {
			pt.log.Warn("loading subscriptions answered elsewhere; trying again", "partition", p, "err", err)
			continue
		}
		var cont []*substore.Record
		var gone []string
		for _, id := range ids {
			if rec, ok := recs[id]; ok {
				cont = append(cont, rec)
			} else {
				gone = append(gone, id)
			}
		}
		pt.nt.Discard(gone)
		pt.nt.Continue(cont)
		if _, ok := fl.inbox[p]; ok {
			fl.inbox[p] = pos[p]
		}
	}
}

// moveBatch is how many subscriptions one pipeline moves on an upgrade.
const moveBatch = 500

// moveSubscriptions moves the subscriptions of the single-tag layout into
// their AORs' partitions (docs/cluster.md, "Upgrade from the single-tag
// layout"), keeping their CSeq and version: their owners continue them
// with a full NOTIFY. Idempotent: every instance of the upgrade may run
// it; a record already moved is left as it is.
func (pt *partitioned) moveSubscriptions(ctx context.Context) {
	recs, insts, err := pt.legacy.Stored(ctx)
	if err != nil {
		pt.log.Warn("listing the single-tag subscriptions to move (tried again at the next start)", "err", err)
		return
	}
	if len(recs) == 0 && len(insts) == 0 {
		return
	}
	ids := make([]string, 0, len(recs))
	var batch []*substore.Record
	for i, rec := range recs {
		ids = append(ids, rec.ID)
		if time.Now().Before(rec.Expires) {
			batch = append(batch, rec) // an expired one is only deleted
		}
		if len(batch) == moveBatch || (i == len(recs)-1 && len(batch) > 0) {
			if err := pt.subs.Import(ctx, batch...); err != nil {
				pt.log.Warn("moving subscriptions into their partitions (tried again at the next start)", "err", err)
				return
			}
			batch = batch[:0]
		}
	}
	if err := pt.legacy.Remove(ctx, ids, insts); err != nil {
		pt.log.Warn("deleting moved single-tag subscriptions", "err", err)
		return
	}
	pt.log.Info("moved the single-tag subscriptions into their partitions", "subscriptions", len(ids))
}
