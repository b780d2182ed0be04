package partition

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/substore"
)

// StreamWriter records the reading instance's contacts into the
// partitions' streams: a bridge.StateWriter, run by a bridge.Persister
// on the bridge that reads the store (coalesced, off the bridge's path).
// Each contact is its JSON by store key, in the partition of its
// canonical AOR. It remembers a checksum of what each partition's state
// holds for every key, so a write of what is recorded already (the
// Persister's whole-state write once the bridge is ready, a retry) is
// dropped, not announced again.
type StreamWriter struct {
	m    *Map
	r    *Reader
	view func(p int) map[string]string

	// recMu guards rec: per store key, its partition and the checksum of
	// the recorded JSON.
	recMu sync.Mutex
	rec   map[string]recorded
}

type recorded struct {
	p   int
	sum uint64
}

var _ bridge.StateWriter = (*StreamWriter)(nil)

// NewStreamWriter returns the writer of reader r, which OpenReader
// returned with base, and the contacts base records: give them to the
// bridge's Restore so its first snapshot is diffed against them. view
// returns the reader's bridge's contacts of a partition as they should
// be recorded (BridgeView), for syncing a partition after a failure.
func NewStreamWriter(m *Map, r *Reader, base map[int]Baseline, view func(p int) map[string]string) (*StreamWriter, []source.Contact, error) {
	w := &StreamWriter{m: m, r: r, view: view, rec: map[string]recorded{}}
	var restore []source.Contact
	for p, b := range base {
		for k, js := range b.State {
			c, err := substore.DecodeContact([]byte(js))
			if err != nil {
				return nil, nil, fmt.Errorf("partition %d, contact %q: %w", p, k, err)
			}
			restore = append(restore, c)
			// The checksum of the current encoding, which WriteContacts
			// compares with, whatever format the state was written in.
			if js, err := substore.EncodeContact(&c); err == nil {
				w.rec[k] = recorded{p: p, sum: checksum(string(js))}
			}
		}
	}
	return w, restore, nil
}

func checksum(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// appendChunk bounds the changes of one Append (one pipeline).
const appendChunk = 2000

// WriteContacts appends the changes that differ from what is recorded.
// An error (the Persister retries the batch) when a partition that needs
// a Sync could not be synced.
func (w *StreamWriter) WriteContacts(ctx context.Context, upserts []source.Contact, deletes []string) error {
	var changes []Change
	next := map[string]recorded{}
	w.recMu.Lock()
	for i := range upserts {
		c := &upserts[i]
		js, err := substore.EncodeContact(c)
		if err != nil {
			w.recMu.Unlock()
			return fmt.Errorf("encoding contact: %w", err)
		}
		r := recorded{p: w.m.Of(bridge.CanonicalAOR(c.AOR)), sum: checksum(string(js))}
		if old, ok := w.rec[c.Key]; ok && old == r {
			continue
		} else if ok && old.p != r.p {
			// The binding moved to another AOR: gone from the old one.
			changes = append(changes, Change{P: old.p, Key: c.Key})
		}
		changes = append(changes, Change{P: r.p, Key: c.Key, Data: string(js)})
		next[c.Key] = r
	}
	for _, k := range deletes {
		if old, ok := w.rec[k]; ok {
			changes = append(changes, Change{P: old.p, Key: k})
			next[k] = recorded{p: -1}
		}
	}
	w.recMu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	// In chunks: a first snapshot of a large store is hundreds of
	// thousands of changes, and one pipeline of them all runs past the
	// client's read timeout, which leaves every partition to Sync.
	var resync []int
	for len(changes) > 0 {
		n := min(len(changes), appendChunk)
		again, err := w.r.Append(ctx, changes[:n])
		if err != nil {
			return err
		}
		resync = again // every partition dirty so far
		changes = changes[n:]
	}
	w.recMu.Lock()
	for k, r := range next {
		if r.p < 0 {
			delete(w.rec, k)
		} else {
			w.rec[k] = r
		}
	}
	w.recMu.Unlock()
	for _, p := range resync {
		want := w.view(p)
		if err := w.r.Sync(ctx, p, want); err != nil {
			return fmt.Errorf("syncing partition %d: %w", p, err)
		}
		w.recMu.Lock()
		for k, r := range w.rec {
			if r.p == p {
				if _, ok := want[k]; !ok {
					delete(w.rec, k)
				}
			}
		}
		for k, js := range want {
			w.rec[k] = recorded{p: p, sum: checksum(js)}
		}
		w.recMu.Unlock()
	}
	return nil
}

// BridgeView returns the view function of NewStreamWriter for b: the
// contacts of a partition as JSON by store key.
func BridgeView(b *bridge.Bridge, m *Map) func(p int) map[string]string {
	return func(p int) map[string]string {
		out := map[string]string{}
		b.EachContact(func(c *source.Contact) {
			if m.Of(bridge.CanonicalAOR(c.AOR)) != p {
				return
			}
			if js, err := substore.EncodeContact(c); err == nil {
				out[c.Key] = string(js)
			}
		})
		return out
	}
}
