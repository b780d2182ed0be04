package partition

import (
	"context"
	"errors"
	"fmt"
)

// Reader appends the store's changes under one reader epoch and keeps
// each partition's expected sequence, so that it notices when a
// partition's state is not what it appended: an append failed or timed
// out (it may or may not have run), or a Redis failover lost the last
// acknowledged writes (the sequence comes back lower). Those partitions
// are returned for Sync against the reader's own view.
type Reader struct {
	s     *Streams
	epoch int64
	seq   map[int]int64
	dirty map[int]bool // needs a Sync before anything more is appended
}

// OpenReader starts reading under epoch (the reader lease's): it stamps
// every partition, so an older reader is refused from now on, and
// returns the partitions' baselines, the state the reader's first
// snapshot is diffed against (Diff, then Append).
func (s *Streams) OpenReader(ctx context.Context, epoch int64) (*Reader, map[int]Baseline, error) {
	if err := s.Stamp(ctx, epoch); err != nil {
		return nil, nil, err
	}
	ps := make([]int, s.m.Count())
	for p := range ps {
		ps[p] = p
	}
	b, err := s.Baselines(ctx, ps)
	if err != nil {
		return nil, nil, err
	}
	r := &Reader{s: s, epoch: epoch, seq: make(map[int]int64, len(b)), dirty: map[int]bool{}}
	for p, bl := range b {
		r.seq[p] = bl.Seq
	}
	return r, b, nil
}

// Append appends changes and returns the partitions that need a Sync:
// their changes may or may not have been recorded. Changes of a
// partition waiting for its Sync are left out (the Sync brings the
// partition to the reader's view, them included), so that nothing is
// appended twice. ErrFenced when a newer reader has taken over: stop
// reading.
func (r *Reader) Append(ctx context.Context, changes []Change) (resync []int, err error) {
	count := map[int]int64{}
	kept := changes[:0:0]
	for _, c := range changes {
		if r.dirty[c.P] {
			continue
		}
		count[c.P]++
		kept = append(kept, c)
	}
	got, err := r.s.Append(ctx, r.epoch, kept)
	if errors.Is(err, ErrFenced) {
		return nil, err
	}
	for p, n := range count {
		seq, ok := got[p]
		if !ok || seq != r.seq[p]+n {
			r.dirty[p] = true
			continue
		}
		r.seq[p] = seq
	}
	for p := range r.dirty {
		resync = append(resync, p)
	}
	return resync, nil
}

// Sync makes partition p's state equal want (the reader's view of p's
// contacts) and takes up its sequence from there.
func (r *Reader) Sync(ctx context.Context, p int, want map[string]string) error {
	b, err := r.s.Baselines(ctx, []int{p})
	if err != nil {
		return err
	}
	ch := Diff(p, b[p].State, want)
	if len(ch) == 0 {
		r.seq[p] = b[p].Seq
		delete(r.dirty, p)
		return nil
	}
	got, err := r.s.Append(ctx, r.epoch, ch)
	if err != nil {
		return err
	}
	seq, ok := got[p]
	if !ok || seq != b[p].Seq+int64(len(ch)) {
		return fmt.Errorf("partition %d changed during its sync", p)
	}
	r.seq[p] = seq
	delete(r.dirty, p)
	return nil
}
