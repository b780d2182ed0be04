package main

import (
	"context"
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

// ownership applies the queued gains and losses: a lost partition's
// contacts are forgotten and its stream no longer followed; a gained
// one's recorded state is adopted silently, its stream followed from that
// state's position, and its subscriptions continued with full NOTIFYs.
// false when a gained partition could not be loaded (it stays queued).
func (pt *partitioned) ownership(ctx context.Context, f *partition.Follower, inbox map[int]string, legacy map[int][]source.Contact) bool {
	pt.evMu.Lock()
	evs := pt.events
	pt.events = nil
	pt.evMu.Unlock()
	for i, ev := range evs {
		if !ev.gain {
			f.Stop(ev.p)
			delete(inbox, ev.p)
			pt.br.Forget(func(c string) bool { return pt.m.Of(c) == ev.p })
			continue
		}
		if _, ok := pt.owner.Holder(ev.p); !ok {
			continue // lost again meanwhile; its loss is queued after
		}
		if err := pt.gain(ctx, f, inbox, legacy, ev.p); err != nil {
			if ctx.Err() == nil {
				pt.log.Warn("loading a gained partition; retrying", "partition", ev.p, "err", err)
			}
			pt.evMu.Lock()
			pt.events = append(evs[i:], pt.events...)
			pt.evMu.Unlock()
			return false
		}
	}
	return true
}

// gain takes partition p in: contacts first, so that the full NOTIFYs
// of its subscriptions show them.
func (pt *partitioned) gain(ctx context.Context, f *partition.Follower, inbox map[int]string, legacy map[int][]source.Contact, p int) error {
	// The inbox position is read before the subscriptions: one saved
	// meanwhile is seen again, none is missed.
	recs, pos, err := pt.subs.Load(ctx, p)
	if err != nil {
		return err
	}
	var contacts []source.Contact
	if legacy != nil {
		f.StartAt(p, streamStart)
		contacts = legacy[p]
	} else {
		b, err := f.Start(ctx, p)
		if err != nil {
			return err
		}
		contacts = appendState(nil, b.State, pt.log)
	}
	pt.br.Adopt(contacts)
	// Served from here on: a SUBSCRIBE for p answered here until now
	// was handed over through the inbox, which is read from pos.
	pt.subs.Serve(p)
	inbox[p] = pos
	pt.nt.Continue(recs)
	pt.log.Debug("partition taken", "partition", p, "contacts", len(contacts), "subscriptions", len(recs))
	return nil
}

// pollInbox continues the subscriptions other instances answered for
// the partitions owned here (a SUBSCRIBE, refresh, unsubscribe or fetch),
// and drops here the ones deleted elsewhere.
func (pt *partitioned) pollInbox(ctx context.Context, inbox map[int]string) {
	if len(inbox) == 0 {
		return
	}
	got, err := pt.subs.PollInbox(ctx, inbox, followCount)
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
			pt.log.Warn("loading subscriptions answered elsewhere", "partition", p, "err", err)
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
	}
}

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
	for _, rec := range recs {
		if time.Now().After(rec.Expires) {
			ids = append(ids, rec.ID)
			continue
		}
		if err := pt.subs.Import(ctx, rec); err != nil {
			pt.log.Warn("moving a subscription into its partition (tried again at the next start)", "aor", rec.AOR, "err", err)
			return
		}
		ids = append(ids, rec.ID)
	}
	if err := pt.legacy.Remove(ctx, ids, insts); err != nil {
		pt.log.Warn("deleting moved single-tag subscriptions", "err", err)
		return
	}
	pt.log.Info("moved the single-tag subscriptions into their partitions", "subscriptions", len(ids))
}
