package main

import (
	"context"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/source"
)

// The upgrade from the single-tag layout (docs/cluster.md, "Upgrade from
// the single-tag layout"): the contacts that layout recorded under
// {prefix}contacts become the partitions' state, so that nothing is
// announced twice.

// upgrade seeds the partitions still unseeded from the single-tag
// contacts record, under the reader's epoch. It returns how many
// partitions it seeded, and whether the record is there (to be deleted
// by dropLegacy). A reader that dies half-way leaves the record in place
// and whole partitions seeded or not: the next one seeds the rest.
func (pt *partitioned) upgrade(ctx context.Context, epoch int64) (int, bool, error) {
	if ok, err := pt.legacy.HasContacts(ctx); err != nil || !ok {
		return 0, false, err
	}
	ps, err := pt.st.Unseeded(ctx)
	if err != nil || len(ps) == 0 {
		return 0, true, err
	}
	contacts, err := pt.legacy.LoadContacts(ctx)
	if err != nil {
		return 0, true, err
	}
	n, err := pt.st.Seed(ctx, epoch, ps, contacts)
	if err == nil {
		pt.log.Info("seeded the partitions from the single-tag contacts record", "partitions", n, "contacts", len(contacts))
	}
	return n, true, err
}

// dropLegacy deletes the single-tag contacts record one lease after the
// partitions were seeded from it: the instances started for the upgrade
// have taken it as their baseline by then (followFrom).
func (pt *partitioned) dropLegacy(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(pt.lease):
	}
	if err := pt.legacy.DropContacts(ctx); err != nil && ctx.Err() == nil {
		pt.log.Warn("deleting the single-tag contacts record (the next reader tries again)", "err", err)
		return nil
	}
	pt.log.Info("deleted the single-tag contacts record: the partitions hold it")
	return nil
}

// legacyBaseline returns the single-tag contacts record by partition when
// it is there (an upgrade: nil otherwise). A follower then starts every
// partition at its stream's beginning with these contacts, what the
// subscribers were last told, rather than at the partition's current
// state, into which the reader may have appended changes already: each
// change made during the upgrade is announced once, by the stream.
func (pt *partitioned) legacyBaseline(ctx context.Context) map[int][]source.Contact {
	ok, err := pt.legacy.HasContacts(ctx)
	if err == nil && ok {
		var cs []source.Contact
		if cs, err = pt.legacy.LoadContacts(ctx); err == nil {
			out := make(map[int][]source.Contact, pt.m.Count())
			for _, c := range cs {
				p := pt.m.Of(bridge.CanonicalAOR(c.AOR))
				out[p] = append(out[p], c)
			}
			return out
		}
	}
	if err != nil {
		pt.log.Warn("reading the single-tag contacts record: following from the partitions' state", "err", err)
	}
	return nil
}

// streamStart is where a follower of an upgrade starts each partition.
var streamStart = partition.Pos{ID: "0-0"}
