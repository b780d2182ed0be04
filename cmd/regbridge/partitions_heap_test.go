package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// liveHeap forces a garbage collection in p (the profiler's heap
// endpoint with gc=1, REGBRIDGE_PPROF) and returns its heap in use
// afterwards (go_memstats_heap_alloc_bytes) and its contacts
// (regbridge_contacts).
func liveHeap(b testing.TB, p *proc) (heapMiB, contacts float64) {
	b.Helper()
	res, err := http.Get("http://" + p.http + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Fatalf("heap profile: %s", res.Status)
	}
	m := scrape(b, p, "go_memstats_heap_alloc_bytes", "regbridge_contacts")
	return m["go_memstats_heap_alloc_bytes"] / (1 << 20), m["regbridge_contacts"]
}

// fillLocation writes n bindings, three per AOR, to the Kamailio
// location table in one transaction.
func fillLocation(b testing.TB, dbPath string, n int) {
	b.Helper()
	db := openLocation(b, dbPath)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	st, err := tx.Prepare(`INSERT INTO location (ruid, username, contact, received, path, expires, q, callid, cseq, last_modified, user_agent, socket)
		VALUES (?, ?, ?, ?, ?, ?, -1, ?, 1, ?, 'heap-bench/1.0', 'udp:192.0.2.254:5060')`)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	exp, mod := kamailio.TimeToJulian(now.Add(time.Hour)), kamailio.TimeToJulian(now)
	for i := range n {
		u := i / 3
		if _, err := st.Exec(fmt.Sprintf("hb%d", i), fmt.Sprintf("user%d", u),
			fmt.Sprintf("sip:user%d@10.%d.%d.%d:5060;transport=udp", u, i>>16&255, i>>8&255, i&255),
			fmt.Sprintf("sip:198.51.%d.%d:%d", i>>8&255, i&255, 1024+i%60000),
			"<sip:pcscf.example.com;lr>", exp, fmt.Sprintf("%08x-heap@192.0.2.%d", i, i%250+1), mod); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPartitionsHeap measures regbridge's heap per instance with
// REGBRIDGE_PARTITIONS=256 at 300,000 contacts (3,000 under -short, as
// CI runs benchmarks): one instance alone (it reads the store, so it
// holds every contact twice: its reading bridge and the bridge it
// serves), then three (each serves about a third; the reader holds all
// of them once more). Run once: go test -run '^$' -bench PartitionsHeap
// -benchtime 1x ./cmd/regbridge/. Figures: heap after a forced
// collection, MiB, and contacts held, per instance.
func BenchmarkPartitionsHeap(b *testing.B) {
	n := 300_000
	if testing.Short() {
		n = 3_000
	}
	_, state := startCluster(b, "rbh")
	bin, dbPath, src := buildWithStore(b)
	env := []string{"REGBRIDGE_PARTITIONS=256", "REGBRIDGE_PPROF=true", "REGBRIDGE_STATE_LEASE=3s"}
	procs := []*proc{startProc(b, bin, src, state, "h0", env...)}
	base, _ := liveHeap(b, procs[0])
	fillStart := time.Now()
	fillLocation(b, dbPath, n)
	fill := time.Since(fillStart)
	held := func(p *proc) float64 { return scrape(b, p, "regbridge_contacts")["regbridge_contacts"] }
	siptest.EventuallyWithin(b, 3*time.Minute, func() bool { return held(procs[0]) == float64(n) }, "the instance holding every contact")
	loaded := time.Since(fillStart)
	for range b.N {
		one, _ := liveHeap(b, procs[0])
		b.ReportMetric(one, "MiB-1-instance")
		procs = append(procs, startProc(b, bin, src, state, "h1", env...), startProc(b, bin, src, state, "h2", env...))
		siptest.EventuallyWithin(b, 3*time.Minute, func() bool {
			sum := 0.0
			for _, p := range procs {
				c := held(p)
				if c < float64(n)/4 {
					return false
				}
				sum += c
			}
			return sum == float64(n)
		}, "three instances sharing the contacts")
		reader := readingProc(b, procs)
		var heaps, contacts []string
		var readerHeap, others float64
		for _, p := range procs {
			h, c := liveHeap(b, p)
			name := p.id
			if p == reader {
				name += " (reader)"
				readerHeap = h
			} else {
				others = max(others, h)
			}
			heaps, contacts = append(heaps, fmt.Sprintf("%s %.1f", name, h)), append(contacts, fmt.Sprintf("%.0f", c))
		}
		b.ReportMetric(readerHeap, "MiB-3-reader")
		b.ReportMetric(others, "MiB-3-other-max")
		b.Logf("%d contacts (store filled in %v, held by one instance after %v); heap after GC: empty %.1f MiB, 1 instance %.1f MiB; 3 instances: %s MiB, contacts held %s",
			n, fill.Round(time.Millisecond), loaded.Round(time.Millisecond), base, one, strings.Join(heaps, " / "), strings.Join(contacts, " / "))
	}
}
