package sqlwatch

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"time"
)

// Reconciling beside a change feed
// (docs/stores.md#change-capture-cdctrigger). With change capture, the
// periodic full read is only a safety net, yet on a large table it held back
// every change behind it: 2.5-4 s for a million rows. So the periodic
// reconcile of a feed does not read into the state. It verifies:
//
//   - A scan on a connection of its own reads the whole table and hashes
//     each row as the state does (rowSum, same seed), sending key and hash
//     in chunks to the feed loop, which keeps applying the feed between
//     chunks.
//   - The feed loop compares each chunk with the state. A key the feed has
//     re-read since the scan began is skipped: the state is newer than the
//     scan there. Any other key whose hash differs, or that the state
//     lacks, is a suspect; so is every row of the state the scan did not
//     see, and every bad row.
//   - Suspects are then read by key and merged, exactly as keys from the
//     feed are, and delivered as ordinary non-Full batches. A suspect that
//     only looked stale (its change was still on its way through the
//     feed) costs one extra read by key.
//
// When the scan fails, the column types changed, a key cannot be named in
// a query, or suspects are too many (a fresh full read is cheaper then),
// the watcher falls back to the blocking full read it used before. A full
// read is also still what follows a feed that lost changes, and a sink
// that rejected a batch: they need a Full batch.

// verifyChunkRows is how many rows one chunk of the scan carries.
const verifyChunkRows = 2048

// verifyChunk is a part of the scan: key texts back to back (ends[i] is
// where key i ends) and the row hashes.
type verifyChunk struct {
	keys []byte
	ends []int32
	sums []uint64
}

func (c *verifyChunk) key(i int) []byte {
	start := int32(0)
	if i > 0 {
		start = c.ends[i-1]
	}
	return c.keys[start:c.ends[i]]
}

// verification is a reconcile in progress.
type verification struct {
	chunks chan *verifyChunk // closed when the scan ends
	free   chan *verifyChunk
	err    error // the scan's outcome, set before chunks is closed
	cancel context.CancelFunc
	done   chan struct{}

	started  time.Time
	scanned  int
	touched  map[string]struct{} // keys re-read from the feed since the start
	suspects []string
}

var errTypesChanged = errors.New("column types changed")

// startVerify begins a verifying reconcile; the feed loop then reads
// v.chunks and calls verifyChunk and finishVerify.
func (w *Watcher) startVerify(ctx context.Context) *verification {
	vctx, cancel := context.WithCancel(ctx)
	v := &verification{
		chunks:  make(chan *verifyChunk, 2),
		free:    make(chan *verifyChunk, 4),
		cancel:  cancel,
		done:    make(chan struct{}),
		started: time.Now(),
		touched: make(map[string]struct{}),
	}
	clear(w.snap.seen)
	seed, types := w.snap.seed, slices.Clone(w.snap.types)
	go func() {
		defer close(v.done)
		v.err = w.scan(vctx, seed, types, v)
		close(v.chunks)
	}()
	return v
}

// scan reads the table on a session of its own and sends its rows' keys
// and hashes to v.chunks.
func (w *Watcher) scan(ctx context.Context, seed maphash.Seed, types []string, v *verification) error {
	qctx, cancel := w.scanContext(ctx)
	defer cancel()
	s, err := w.dialect.Open(qctx, &w.table)
	if err != nil {
		return err
	}
	defer s.Close()
	if !slices.Equal(s.Types(), types) {
		return errTypesChanged
	}
	var h maphash.Hash
	h.SetSeed(seed)
	key, ncol := w.table.Key, len(w.table.Columns)
	c := v.chunk()
	send := func() bool {
		select {
		case v.chunks <- c:
			c = v.chunk()
			return true
		case <-qctx.Done():
			return false
		}
	}
	err = w.scanRows(qctx, s, func(all []Value) {
		if qctx.Err() != nil {
			return
		}
		row := all[:ncol]
		c.keys = row[key].AppendText(c.keys)
		c.ends = append(c.ends, int32(len(c.keys)))
		c.sums = append(c.sums, rowSum(&h, row))
		if len(c.ends) == verifyChunkRows {
			send()
		}
	})
	if err == nil && len(c.ends) > 0 {
		send()
	}
	if err == nil {
		err = qctx.Err()
	}
	return err
}

// chunk returns an empty chunk, reusing one the feed loop is done with.
func (v *verification) chunk() *verifyChunk {
	select {
	case c := <-v.free:
		c.keys, c.ends, c.sums = c.keys[:0], c.ends[:0], c.sums[:0]
		return c
	default:
		return &verifyChunk{}
	}
}

// touch records keys the feed re-read: the state holds them as they are
// now, newer than what the scan may have read.
func (v *verification) touch(keys []string) {
	for _, k := range keys {
		v.touched[k] = struct{}{}
	}
}

// verifyChunk compares a chunk of the scan with the state (feed loop).
func (w *Watcher) verifyChunk(v *verification, c *verifyChunk) {
	st := &w.snap
	for i := range c.ends {
		k := c.key(i)
		if _, ok := v.touched[string(k)]; ok {
			continue
		}
		if j, known := st.lookup(k); known {
			st.markSeen(j)
			if st.rows[j].sum != c.sums[i] {
				v.suspects = append(v.suspects, string(k))
			}
			continue
		}
		if _, bad := st.bad[string(k)]; !bad { // bad rows are all read again at the end
			v.suspects = append(v.suspects, string(k)) // the state lacks it
		}
	}
	v.scanned += len(c.ends)
	select {
	case v.free <- c:
	default:
	}
}

// finishVerify returns the keys to read again once the scan has ended;
// full says only a full read will do.
func (w *Watcher) finishVerify(v *verification) (suspects []string, full bool) {
	if v.err != nil {
		w.log.Warn("reconcile scan failed; reading the table in full", "err", v.err)
		return nil, true
	}
	st := &w.snap
	suspects = v.suspects
	for i := range int32(len(st.rows)) {
		if !st.isSeen(i) {
			if k := st.rawOf(i); !mapHas(v.touched, k) {
				suspects = append(suspects, k) // gone, unless the read by key finds it
			}
		}
	}
	for k := range st.bad {
		if !mapHas(v.touched, k) {
			suspects = append(suspects, k)
		}
	}
	w.log.Debug("reconcile verified", "rows", v.scanned,
		"suspects", len(suspects), "took", time.Since(v.started))
	if len(suspects) > maxVerifySuspects(len(st.rows)) {
		return nil, true
	}
	return suspects, false
}

// maxVerifySuspects is how many rows are worth reading by key after a
// verification; beyond it one full read is cheaper.
func maxVerifySuspects(rows int) int { return maxFeedKeys*4 + rows/8 }

// stop abandons v and waits for its scan to end.
func (v *verification) stop() {
	v.cancel()
	for range v.chunks {
	}
	<-v.done
}
