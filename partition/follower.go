package partition

import (
	"context"
	"sync"
)

// Follower reads the streams of the partitions an owner holds: it starts
// each from its Baseline (the partition's contacts and the stream
// position they correspond to), then returns the entries in order, and
// on a gap (a stream trimmed past the position, or rewound by a Redis
// failover) the partition's new Baseline, which replaces the owner's
// contacts of that partition and calls for full-state NOTIFYs.
type Follower struct {
	s *Streams

	posMu sync.Mutex
	pos   map[int]Pos
}

// NewFollower returns a follower of no partition yet.
func (s *Streams) NewFollower() *Follower {
	return &Follower{s: s, pos: map[int]Pos{}}
}

// Start follows partition p from its current baseline, returned.
func (f *Follower) Start(ctx context.Context, p int) (Baseline, error) {
	b, err := f.s.Baselines(ctx, []int{p})
	if err != nil {
		return Baseline{}, err
	}
	f.posMu.Lock()
	f.pos[p] = b[p].Pos
	f.posMu.Unlock()
	return b[p], nil
}

// StartAt follows partition p from position at, the caller holding the
// contacts that position corresponds to. The upgrade from the single-tag
// layout starts at the stream's beginning (Pos{ID: "0-0"}) with that
// layout's contacts record, which is what the partition is seeded with.
func (f *Follower) StartAt(p int, at Pos) {
	f.posMu.Lock()
	f.pos[p] = at
	f.posMu.Unlock()
}

// Stop stops following p (the owner lost it).
func (f *Follower) Stop(p int) {
	f.posMu.Lock()
	delete(f.pos, p)
	f.posMu.Unlock()
}

// Poll reads up to count entries of every followed partition in one
// pipeline. entries holds each partition's new entries in order; reload
// the baselines of partitions that had a gap. A partition that could not
// be read (its shard failing over) is tried again at the next Poll.
func (f *Follower) Poll(ctx context.Context, count int) (entries map[int][]Entry, reload map[int]Baseline, err error) {
	f.posMu.Lock()
	pos := make(map[int]Pos, len(f.pos))
	for p, at := range f.pos {
		pos[p] = at
	}
	f.posMu.Unlock()
	reads, err := f.s.Poll(ctx, pos, count)
	entries = map[int][]Entry{}
	reload = map[int]Baseline{}
	var gaps []int
	for p, rd := range reads {
		if rd.Gap {
			gaps = append(gaps, p)
			continue
		}
		if len(rd.Entries) > 0 {
			entries[p] = rd.Entries
		}
	}
	if len(gaps) > 0 {
		b, berr := f.s.Baselines(ctx, gaps)
		if berr != nil && err == nil {
			err = berr
		}
		for p, bl := range b {
			reload[p] = bl
		}
	}
	f.posMu.Lock()
	defer f.posMu.Unlock()
	for p, es := range entries {
		if _, ok := f.pos[p]; ok {
			f.pos[p] = es[len(es)-1].Pos
		}
	}
	for p, bl := range reload {
		if _, ok := f.pos[p]; ok {
			f.pos[p] = bl.Pos
		}
	}
	return entries, reload, err
}
