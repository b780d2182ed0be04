package main

import (
	"context"
	"time"
)

// The upgrade from the single-tag layout (docs/cluster.md, "Upgrade from
// the single-tag layout"): the contacts that layout recorded under
// {prefix}contacts become the partitions' state, so that nothing is
// announced twice.

// upgrade seeds the partitions still unseeded from the single-tag
// contacts record, under the reader's epoch, and deletes the record once
// every partition holds its share. It returns how many partitions it
// seeded. A reader that dies half-way leaves the record in place and
// whole partitions seeded or not: the next one seeds the rest.
func (pt *partitioned) upgrade(ctx context.Context, epoch int64) (int, error) {
	if ok, err := pt.legacy.HasContacts(ctx); err != nil || !ok {
		return 0, err
	}
	ps, err := pt.st.Unseeded(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	if len(ps) > 0 {
		contacts, err := pt.legacy.LoadContacts(ctx)
		if err != nil {
			return 0, err
		}
		if n, err = pt.st.Seed(ctx, epoch, ps, contacts); err != nil {
			return n, err
		}
		pt.log.Info("seeded the partitions from the single-tag contacts record",
			"partitions", n, "contacts", len(contacts))
	}
	return n, pt.legacy.DropContacts(ctx)
}

// awaitUpgrade waits, before a follower loads the partitions' state,
// until no partition waits for its seed from the single-tag contacts
// record: a seed adds no stream entry, so a follower that loaded a
// partition before it would never learn its contacts.
func (pt *partitioned) awaitUpgrade(ctx context.Context) {
	for {
		ok, err := pt.legacy.HasContacts(ctx)
		var ps []int
		if err == nil && ok {
			ps, err = pt.st.Unseeded(ctx)
		}
		if err == nil && len(ps) == 0 {
			return
		}
		if err != nil {
			pt.log.Warn("checking for the single-tag contacts record; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pt.lease / 3):
		}
	}
}
