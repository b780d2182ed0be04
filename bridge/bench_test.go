package bridge

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// snapshotOf builds n contacts over n/2 AORs, as a store snapshot would.
func snapshotOf(n int) []source.Contact {
	cs := make([]source.Contact, n)
	exp := t0.Add(time.Hour)
	for i := range cs {
		cs[i] = source.Contact{
			Key:       fmt.Sprintf("uloc-5f3a-%x-%d", i/2, i),
			AOR:       fmt.Sprintf("sip:user%d@example.com", i/2),
			URI:       fmt.Sprintf("sip:user%d@192.0.2.%d:5060;transport=udp", i/2, i%250),
			Expires:   exp.Add(time.Duration(i%3600) * time.Second),
			Q:         -1,
			CallID:    fmt.Sprintf("call-%d@192.0.2.1", i),
			CSeq:      1,
			UserAgent: "bench phone 1.0",
		}
	}
	return cs
}

// benchSizes are the state sizes the diff benchmarks measure; under -short
// (CI runs every benchmark once to prove it works) only the smallest.
func benchSizes() []int {
	if testing.Short() {
		return []int{10_000}
	}
	return []int{10_000, 100_000, 1_000_000}
}

// BenchmarkDiffUnchanged measures reconciling a full snapshot identical to
// the known state: the common case of a periodic reconcile. It must not
// allocate per contact.
func BenchmarkDiffUnchanged(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			br := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
			br.Subscribe(&recorder{})
			snap := snapshotOf(n)
			br.apply(source.Batch{Full: true, Contacts: snap}, t0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				br.apply(source.Batch{Full: true, Contacts: snap}, t0)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/contact")
		})
	}
}

// BenchmarkDiffUnchangedKeyed is BenchmarkDiffUnchanged as sqlwatch sends
// it to the bridge (ApplyFull): no contacts, every key named as unchanged.
func BenchmarkDiffUnchangedKeyed(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			br := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
			br.Subscribe(&recorder{})
			snap := snapshotOf(n)
			br.apply(source.Batch{Full: true, Contacts: snap}, t0)
			same := func(yield func(string) bool) {
				for i := range snap {
					if !yield(snap[i].Key) {
						return
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				br.applyKeyed(source.Batch{Full: true}, same, t0)
			}
			if contacts := br.Stats().Contacts; contacts != n {
				b.Fatalf("%d contacts after the sweep, want %d", contacts, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/contact")
		})
	}
}

// BenchmarkDiffRefreshAll measures a snapshot in which every contact was
// refreshed (new CSeq, later expiry): every contact yields an event.
func BenchmarkDiffRefreshAll(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			br := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
			snap := snapshotOf(n)
			br.apply(source.Batch{Full: true, Contacts: snap}, t0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				for j := range snap {
					snap[j].CSeq++
					snap[j].Expires = snap[j].Expires.Add(time.Second)
				}
				b.StartTimer()
				br.apply(source.Batch{Full: true, Contacts: snap}, t0)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/contact")
		})
	}
}

// TestMemoryPerContact reports the heap the bridge holds per tracked
// contact, as a figure, not a limit. The source's key and AOR strings,
// which the bridge shares, stay alive in the snapshot and are not counted;
// the bridge's own copy of the other strings is.
func TestMemoryPerContact(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 100k contacts")
	}
	const n = 100_000
	snap := snapshotOf(n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	br := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	br.apply(source.Batch{Full: true, Contacts: snap}, t0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("bridge state: %.0f bytes per contact (%d contacts, %d AORs), without the source's key and AOR strings", per, n, n/2)
	runtime.KeepAlive(snap)
	if st := br.Stats(); st.AORs != n/2 || st.Contacts != n {
		t.Fatalf("tracked %d AORs %d contacts", st.AORs, st.Contacts)
	}
}

// BenchmarkMemoryPerContact reports the live heap the bridge keeps per
// tracked contact at a million contacts, as TestMemoryPerContact counts
// it (the source's key and AOR strings stay alive in the snapshot and are
// not counted). source/kamailio's BenchmarkMemoryPerContact measures the
// whole contact side, strings included. Run it with -benchtime=1x.
func BenchmarkMemoryPerContact(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 50_000
	}
	snap := snapshotOf(n)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		br := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
		br.apply(source.Batch{Full: true, Contacts: snap}, t0)
		br.apply(source.Batch{Full: true, Contacts: snap}, t0) // the steady state
		runtime.GC()
		runtime.ReadMemStats(&after)
		if st := br.Stats(); st.AORs != n/2 || st.Contacts != n {
			b.Fatalf("tracked %d AORs %d contacts", st.AORs, st.Contacts)
		}
		runtime.KeepAlive(br)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/contact")
	}
	runtime.KeepAlive(snap)
}
