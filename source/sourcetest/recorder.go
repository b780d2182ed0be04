package sourcetest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/regbridge/regbridge/source"
)

// Recorder is a source.Sink that keeps a copy of every batch an adapter
// sends, for tests to wait on and inspect.
type Recorder struct {
	mu      sync.Mutex
	batches []source.Batch
}

// Apply records a copy of b (the adapter may reuse its slices).
func (r *Recorder) Apply(_ context.Context, b source.Batch) error {
	b.Contacts = slices.Clone(b.Contacts)
	b.Deleted = slices.Clone(b.Deleted)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
	return nil
}

// Count is how many batches arrived.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

// All returns the batches so far.
func (r *Recorder) All() []source.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// Last returns the newest batch and how many batches there are.
func (r *Recorder) Last() (source.Batch, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) == 0 {
		return source.Batch{}, 0
	}
	return r.batches[len(r.batches)-1], len(r.batches)
}

// WaitFor waits (Eventually) until a batch after the first `after`
// satisfies ok, and returns it.
func (r *Recorder) WaitFor(t testing.TB, after int, what string, ok func(source.Batch) bool) source.Batch {
	t.Helper()
	var got source.Batch
	Eventually(t, what, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, b := range r.batches[min(after, len(r.batches)):] {
			if ok(b) {
				got = b
				return true
			}
		}
		return false
	})
	return got
}
