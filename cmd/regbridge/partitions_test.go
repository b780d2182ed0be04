package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/partition/clustertest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// scrape reads the named metrics from a process's /metrics, each the
// sum of its samples over all labels.
func scrape(t testing.TB, p *proc, names ...string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(res.Body, 8<<20))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		for _, n := range names {
			if name == n {
				v, _ := strconv.ParseFloat(val, 64)
				out[n] += v
			}
		}
	}
	return out
}

// pollRate is the store reads per second of each process over d, from
// regbridge_source_polls_total.
func pollRate(t testing.TB, procs []*proc, d time.Duration) []float64 {
	t.Helper()
	before := make([]float64, len(procs))
	for i, p := range procs {
		before[i] = scrape(t, p, "regbridge_source_polls_total")["regbridge_source_polls_total"]
	}
	time.Sleep(d)
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i] = (scrape(t, p, "regbridge_source_polls_total")["regbridge_source_polls_total"] - before[i]) / d.Seconds()
	}
	return out
}

// heaps returns each process's go_memstats_heap_alloc_bytes in MiB.
func heaps(t *testing.T, procs []*proc) []string {
	t.Helper()
	var out []string
	for _, p := range procs {
		h := scrape(t, p, "go_memstats_heap_alloc_bytes")["go_memstats_heap_alloc_bytes"]
		out = append(out, fmt.Sprintf("%.1f MiB", h/(1<<20)))
	}
	return out
}

// once checks that every change was announced once: each contact URI
// of the test is new, so partial NOTIFYs name it active at most once and
// terminated at most once.
func (w *watchers) once(subs int, callOf func(int) string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range subs {
		seen := map[string]bool{}
		for _, n := range w.log[callOf(i)] {
			if n.retrans || n.doc.State == "full" || len(n.doc.Registrations) == 0 {
				continue
			}
			for _, c := range n.doc.Registrations[0].Contacts {
				k := c.URI + " " + c.State
				if seen[k] {
					w.t.Errorf("%s: %s announced %s twice; its NOTIFYs:\n%s", callOf(i), c.URI, c.State, w.history(callOf(i)))
				}
				seen[k] = true
			}
		}
	}
}

// history lists a subscription's NOTIFYs, one a line: when, from which
// instance's port, CSeq, version, state and the contacts. Called with
// w.mu held.
func (w *watchers) history(id string) string {
	var b strings.Builder
	for _, n := range w.log[id] {
		fmt.Fprintf(&b, "  %s from %d cseq %d v%d %s retrans=%v:", n.at.Format("15:04:05.000"), n.from, n.cseq, n.doc.Version, n.doc.State, n.retrans)
		if len(n.doc.Registrations) > 0 {
			for _, c := range n.doc.Registrations[0].Contacts {
				fmt.Fprintf(&b, " %s/%s/%s", c.URI, c.State, c.Event)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// readerStarts returns when each "reading the store" line of a process's
// log was written.
func readerStarts(p *proc) []time.Time {
	var out []time.Time
	re := regexp.MustCompile(`time=(\S+) level=INFO msg="reading the store"`)
	for _, m := range re.FindAllStringSubmatch(p.log.String(), -1) {
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			out = append(out, at)
		}
	}
	return out
}

// startCluster starts a local Redis Cluster (partition/clustertest) and
// returns it with the REGBRIDGE_STATE URL of its nodes under prefix.
func startCluster(t testing.TB, prefix string) (*clustertest.Cluster, string) {
	rc := clustertest.Start(t)
	return rc, "redis://" + rc.Addrs[0] + "?addr=" + strings.Join(rc.Addrs[1:], ",") + "&prefix=" + prefix
}

// TestClusterPartitionsReadOnce: three processes with
// REGBRIDGE_PARTITIONS over one SQLite store and a local Redis Cluster.
// Only the instance holding the reader lease reads the store; each
// instance owns a share of the partitions, holds their contacts and
// sends their subscriptions' NOTIFYs, whichever instance a SUBSCRIBE
// reached. The reading instance (an owner too) is SIGKILLed mid-stream:
// another one takes the lease and continues, its partitions are taken
// over, and the subscriber side checks every subscription's versions in
// order (a full document may skip), one sender at a time, every change
// announced once, and a final state equal to the store's.
func TestClusterPartitionsReadOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes and a Redis Cluster")
	}
	_, state := startCluster(t, "rbt")
	bin, dbPath, src := buildWithStore(t)
	parts := "REGBRIDGE_PARTITIONS=16"
	procs := []*proc{startProc(t, bin, src, state, "i0", parts)}
	one := pollRate(t, procs, 2*time.Second)
	heap1 := heaps(t, procs)
	db := openLocation(t, dbPath)

	// Contacts recorded before two instances join: they take them up
	// from the partitions' state and announce nothing.
	const seeded = 10
	for i := range seeded {
		if _, err := db.Exec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
			VALUES (?, ?, ?, ?, -1, ?, 1, ?, 'seed')`, fmt.Sprintf("s%d", i), fmt.Sprintf("u%d", i), fmt.Sprintf("sip:u%d@198.51.100.%d", i, i+1),
			kamailio.TimeToJulian(time.Now().Add(time.Hour)), fmt.Sprintf("seed-%d", i), kamailio.TimeToJulian(time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	contacts := func(p *proc) float64 { return scrape(t, p, "regbridge_contacts")["regbridge_contacts"] }
	siptest.Eventually(t, func() bool { return contacts(procs[0]) == seeded }, "the seeded contacts recorded")
	procs = append(procs, startProc(t, bin, src, state, "i1", parts), startProc(t, bin, src, state, "i2", parts))
	// The joiners take their shares of the partitions over, with those
	// partitions' contacts, announcing nothing: the three hold every
	// contact once between them.
	var held []float64
	siptest.Eventually(t, func() bool {
		held = held[:0]
		sum := 0.0
		for _, p := range procs {
			held = append(held, contacts(p))
			sum += held[len(held)-1]
		}
		return sum == seeded && held[0] < seeded && held[1] > 0 && held[2] > 0
	}, "the contacts spread over the three owners")
	for _, p := range procs[1:] {
		if ev := scrape(t, p, "regbridge_contact_events_total")["regbridge_contact_events_total"]; ev != 0 {
			t.Fatalf("a joining instance announced %v contact events, want none", ev)
		}
	}
	// Every partition served once, the store read by one of them.
	var owned []float64
	siptest.Eventually(t, func() bool {
		owned = owned[:0]
		sum, readers := 0.0, 0.0
		for _, p := range procs {
			m := scrape(t, p, "regbridge_partitions_owned", "regbridge_store_reader")
			owned = append(owned, m["regbridge_partitions_owned"])
			sum += m["regbridge_partitions_owned"]
			readers += m["regbridge_store_reader"]
		}
		return sum == 16 && readers == 1 && owned[0] > 0 && owned[1] > 0 && owned[2] > 0
	}, "the 16 partitions served by the three instances, one reader")
	three := pollRate(t, procs, 2*time.Second)
	heap3 := heaps(t, procs)
	readers, total := 0, 0.0
	for _, r := range three {
		total += r
		if r > 0 {
			readers++
		}
	}
	if readers != 1 {
		t.Fatalf("store reads/s per instance %v: want exactly one instance reading", three)
	}
	var reader *proc
	for i, r := range three {
		if r > 0 {
			reader = procs[i]
		}
	}

	const subs, aors = 300, 30
	w := newWatchers(t, 4)
	aorOf := func(i int) string { return fmt.Sprintf("sip:u%d@example.com", i%aors) }
	callOf := func(i int) string { return fmt.Sprintf("pt-%d", i) }
	w.subscribeAll(subs, procs, callOf, aorOf)

	want, killAt := churnKilling(t, db, aors, reader)
	w.converge(subs, callOf, aorOf, want)
	own := w.checkOwned(subs, callOf, kill{reader.port, killAt})

	w.once(subs, callOf)

	// The new reader: one survivor, and when it started reading.
	var survivors []*proc
	var took time.Duration
	for _, p := range procs {
		if p == reader {
			continue
		}
		survivors = append(survivors, p)
		for _, at := range readerStarts(p) {
			if at.After(killAt) {
				took = at.Sub(killAt)
			}
		}
	}
	after := pollRate(t, survivors, 2*time.Second)
	if (after[0] > 0) == (after[1] > 0) {
		t.Fatalf("store reads/s of the survivors %v: want exactly one reading", after)
	}
	if took == 0 || took > 2*time.Second+time.Second/2 {
		t.Errorf("a survivor started reading %v after the reader's death, want within about 1.5 x the lease (1s) plus a renewal round", took)
	}
	heapAfter := heaps(t, survivors)

	// The new reader pauses past its lease (SIGSTOP) while the store
	// changes: the other survivor takes the lease over and announces the
	// changes; the paused one, resumed, finds its lease gone and stops
	// reading, announcing nothing twice.
	paused, other := survivors[0], survivors[1]
	if after[1] > 0 {
		paused, other = other, paused
	}
	paused.cmd.Process.Signal(syscall.SIGSTOP)
	for i := range 5 {
		if _, err := db.Exec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
			VALUES (?, ?, ?, ?, -1, ?, 1, ?, 'paused')`, fmt.Sprintf("p%d", i), fmt.Sprintf("u%d", i), fmt.Sprintf("sip:u%d@203.0.113.%d", i, i+1),
			kamailio.TimeToJulian(time.Now().Add(time.Hour)), fmt.Sprintf("paused-%d", i), kamailio.TimeToJulian(time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	paused.cmd.Process.Signal(syscall.SIGCONT)
	siptest.Eventually(t, func() bool { return strings.Contains(paused.log.String(), "reader lease lost") }, "the resumed reader stopping")
	w.converge(subs, callOf, aorOf, storeState(t, db))
	w.once(subs, callOf)
	if rates := pollRate(t, []*proc{paused, other}, time.Second); rates[0] != 0 || rates[1] == 0 {
		t.Errorf("store reads/s after the pause: %v by the resumed one, %v by the other; want none and some", rates[0], rates[1])
	}

	t.Logf("store reads/s: 1 instance %.1f; 3 instances %v (total %.1f); after the reader's SIGKILL %v; new reader after %v (lease 1s); "+
		"partitions owned %v of 16, contacts held by the three owners %v of %d; "+
		"%d subscriptions, %d NOTIFYs checked, %d sender changes (%d skipping a version), slowest takeover after the SIGKILL %v; heap: 1 instance %v, 3 instances %v, survivors %v",
		one[0], three, total, after, took.Round(time.Millisecond), owned, held, seeded, subs, own.notifies, own.moved, own.gaps, own.maxTakeover(0).Round(time.Millisecond), heap1, heap3, heapAfter)
}

// kill is an instance SIGKILLed by a test: its SIP port, and when.
type kill struct {
	port int
	at   time.Time
}

// ownedCheck is what checkOwned found.
type ownedCheck struct {
	notifies, moved, gaps int
	// takeovers, per kill (in the order given), holds for each
	// subscription the victim sent for when it died the time from the
	// kill to the first NOTIFY from another instance (a full document
	// from the partition's new owner).
	takeovers [][]time.Duration
}

// maxTakeover is the slowest takeover after kill i.
func (o ownedCheck) maxTakeover(i int) time.Duration {
	var m time.Duration
	for _, d := range o.takeovers[i] {
		m = max(m, d)
	}
	return m
}

// checkOwned checks each subscription's NOTIFYs under partition owners:
// versions follow on, except that a full document may skip versions (a
// dead owner may have taken one it never sent; full state replaces what
// was missed, RFC 3680 4.1); the first NOTIFY from a new sender is a
// full document (an owner continuing the subscription).
func (w *watchers) checkOwned(subs int, callOf func(int) string, kills ...kill) ownedCheck {
	t := w.t
	w.mu.Lock()
	defer w.mu.Unlock()
	o := ownedCheck{takeovers: make([][]time.Duration, len(kills))}
	for i := range subs {
		id := callOf(i)
		next, sender := uint32(0), -1
		for k, n := range w.log[id] {
			if n.retrans {
				continue
			}
			o.notifies++
			if n.doc.State == "full" && n.doc.Version > next {
				o.gaps++
				next = n.doc.Version
			}
			if n.doc.Version != next {
				t.Errorf("%s: version %d (%s), want %d (NOTIFY %d)", id, n.doc.Version, n.doc.State, next, k)
				break
			}
			next++
			// No check that nothing comes from a killed instance after
			// its death: it is reaped before the kill time is taken, so
			// what arrives from it later left it before (read late from
			// the socket on a loaded machine); a stale NOTIFY after
			// another owner's would break the version order above.
			if n.from != sender {
				if sender >= 0 && n.doc.State != "full" {
					t.Errorf("%s: first NOTIFY from a new sender (%d after %d) is %s", id, n.from, sender, n.doc.State)
				}
				if sender >= 0 {
					o.moved++
				}
				for j, kl := range kills {
					if sender == kl.port && n.at.After(kl.at) {
						o.takeovers[j] = append(o.takeovers[j], n.at.Sub(kl.at))
					}
				}
				sender = n.from
			}
		}
	}
	return o
}
