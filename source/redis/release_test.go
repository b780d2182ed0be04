package redis

import (
	"testing"

	"github.com/regbridge/regbridge/source"
)

// fill sets w.contacts and w.deleted to n and d entries as a read would.
func fill(w *Watcher, n, d int) {
	w.contacts, w.deleted = w.contacts[:0], w.deleted[:0]
	for i := range n {
		w.contacts = append(w.contacts, source.Contact{Key: "k", AOR: "sip:a@b", URI: "sip:c@d", CallID: string(rune('a' + i%26))})
	}
	for range d {
		w.deleted = append(w.deleted, "gone")
	}
	w.noteFilled()
}

// TestRelease checks that every batch leaves the reused arrays zero
// beyond its length, whatever the earlier batches were, so that the sink's
// strings are not kept alive.
func TestRelease(t *testing.T) {
	w := &Watcher{}
	for _, step := range []struct {
		name       string
		n, deleted int
		release    bool
	}{
		{"snapshot", 1000, 0, true},
		{"small change", 3, 2, true},
		{"smaller change", 1, 0, true},
		{"read failed half-way", 50, 40, false},
		{"change after the failure", 2, 1, true},
		{"empty", 0, 0, true},
	} {
		fill(w, step.n, step.deleted)
		if !step.release {
			continue
		}
		w.release()
		for i, c := range w.contacts[len(w.contacts):cap(w.contacts)] {
			if c != (source.Contact{}) {
				t.Fatalf("%s: contacts[%d] still set after release", step.name, len(w.contacts)+i)
			}
		}
		for i, k := range w.deleted[len(w.deleted):cap(w.deleted)] {
			if k != "" {
				t.Fatalf("%s: deleted[%d] still set after release", step.name, len(w.deleted)+i)
			}
		}
	}
}

// BenchmarkReleaseAfterSnapshot is the cost of a change batch's release
// once a snapshot of 100,000 contacts has grown the arrays.
func BenchmarkReleaseAfterSnapshot(b *testing.B) {
	w := &Watcher{}
	fill(w, 100_000, 0)
	w.release()
	for b.Loop() {
		fill(w, 200, 0)
		w.release()
	}
}
