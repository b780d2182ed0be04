package partition_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/partition/clustertest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond every 20 ms for up to d, and stops the test if
// it never holds.
func eventually(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	if !waitFor(t, d, cond, what) {
		t.FailNow()
	}
}

// TestCluster runs the partition machinery against a local Redis Cluster
// of three masters and three replicas (partition/clustertest).
func TestCluster(t *testing.T) {
	c := clustertest.Start(t)
	rdb := c.Client()
	ctx := context.Background()

	// No subtests: the cluster's helpers fail the test they were started
	// with.
	func() {
		m, _ := partition.NewMap("slots", 64)
		for p := range 64 {
			k := m.Key(p, "state")
			got, err := rdb.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if int(got) != partition.Slot(k) {
				t.Fatalf("CLUSTER KEYSLOT %s = %d, Slot = %d", k, got, partition.Slot(k))
			}
		}
	}()
	testOwners(t, c, rdb)
	testFanout(t, c, rdb)
	testSim(t, c, rdb)
	testStreams(t, c, rdb)
}

// fleet is a set of Owners stepped by the test, so that one can be
// frozen (a SIGKILLed or paused process: no more rounds, no release).
type fleet struct {
	t      *testing.T
	rdb    redis.Cmdable
	m      *partition.Map
	ttl    time.Duration
	mu     sync.Mutex
	owners map[string]*partition.Owner
	stop   map[string]context.CancelFunc
	// holding is who holds each partition by the owners' own callbacks;
	// a gain while another live owner holds it is a violation.
	holding map[int]string
	frozen  map[string]bool
	doubles []string
}

func newFleet(t *testing.T, rdb redis.Cmdable, m *partition.Map, ttl time.Duration) *fleet {
	return &fleet{t: t, rdb: rdb, m: m, ttl: ttl, owners: map[string]*partition.Owner{}, stop: map[string]context.CancelFunc{},
		holding: map[int]string{}, frozen: map[string]bool{}}
}

func (f *fleet) start(id string) {
	o := partition.NewOwner(f.rdb, f.m, id, f.ttl, quiet)
	o.OnGain = func(p int, h partition.Holder) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if prev, ok := f.holding[p]; ok && prev != id && !f.frozen[prev] {
			f.doubles = append(f.doubles, fmt.Sprintf("partition %d gained by %s while %s holds it", p, id, prev))
		}
		f.holding[p] = id
	}
	o.OnLose = func(p int) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.holding[p] == id {
			delete(f.holding, p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.owners[id], f.stop[id] = o, cancel
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(f.ttl / 3)
		defer tick.Stop()
		for {
			o.Round(ctx) // errors: the lease runs out, as it should
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	f.t.Cleanup(func() { cancel(); <-done })
}

// freeze stops id's rounds without releasing anything.
func (f *fleet) freeze(id string) {
	f.mu.Lock()
	f.frozen[id] = true
	f.stop[id]()
	f.mu.Unlock()
}

// balanced reports whether the live owners hold every partition, each
// once, in shares differing by at most one.
func (f *fleet) balanced(live ...string) bool {
	seen := map[int]bool{}
	lo, hi := 1<<30, 0
	for _, id := range live {
		got := f.owners[id].Owned()
		for p := range got {
			if seen[p] {
				return false
			}
			seen[p] = true
		}
		lo, hi = min(lo, len(got)), max(hi, len(got))
	}
	return len(seen) == f.m.Count() && hi-lo <= 1
}

func testOwners(t *testing.T, c *clustertest.Cluster, rdb *redis.ClusterClient) {
	ctx := context.Background()
	const ttl = 900 * time.Millisecond
	m, _ := partition.NewMap("owners", 64)
	f := newFleet(t, rdb, m, ttl)
	for _, id := range []string{"a", "b", "c"} {
		f.start(id)
	}
	eventually(t, 10*time.Second, func() bool { return f.balanced("a", "b", "c") }, "three owners sharing 64 partitions")

	// A join: d gets its share, handed over without two holders at once.
	f.start("d")
	eventually(t, 10*time.Second, func() bool { return f.balanced("a", "b", "c", "d") }, "four owners sharing 64 partitions")

	// A crash: c stops renewing and releases nothing. Its partitions are
	// taken over once its membership and leases run out.
	victim := f.owners["c"].Owned()
	var vp int
	var vh partition.Holder
	for vp, vh = range victim {
		break
	}
	// A subscription in one of the victim's partitions, to show the fence.
	sub := m.Key(vp, "sub:dlg1")
	rdb.HSet(ctx, sub, "cseq", 1, "ver", 0)
	if _, _, err := m.Advance(ctx, rdb, vp, vh, "dlg1"); err != nil {
		t.Fatalf("the owner's fence refused it: %v", err)
	}
	killed := time.Now()
	f.freeze("c")
	eventually(t, 10*time.Second, func() bool { return f.balanced("a", "b", "d") }, "takeover of the crashed owner's partitions")
	took := time.Since(killed)
	t.Logf("takeover of %d partitions after a crash: %v (lease %v, %.2f x lease)", len(victim), took.Round(10*time.Millisecond), ttl, float64(took)/float64(ttl))
	if _, _, err := m.Advance(ctx, rdb, vp, vh, "dlg1"); !errors.Is(err, partition.ErrNotOwner) {
		t.Errorf("the crashed owner's fence still passes after takeover: %v", err)
	}
	var nh partition.Holder
	for _, id := range []string{"a", "b", "d"} {
		if h, ok := f.owners[id].Owned()[vp]; ok {
			nh = h
		}
	}
	if nh.Epoch <= vh.Epoch {
		t.Errorf("new holder %v has no higher epoch than %v", nh, vh)
	}
	cseq, _, err := m.Advance(ctx, rdb, vp, nh, "dlg1")
	if err != nil || cseq != 3 {
		t.Errorf("new owner's fence: cseq %d, %v; want 3 (the counters continue)", cseq, err)
	}
	f.mu.Lock()
	for _, d := range f.doubles {
		t.Error(d)
	}
	for _, stop := range f.stop {
		stop()
	}
	f.mu.Unlock()
}

// consumer is an owner's side of the streams in the tests: a Follower of
// every partition, with the contacts it has been told of.
type consumer struct {
	f       *partition.Follower
	view    map[int]map[string]string
	applied int
	gaps    map[int]int
}

func newConsumer(t *testing.T, s *partition.Streams, n int) *consumer {
	cs := &consumer{f: s.NewFollower(), view: map[int]map[string]string{}, gaps: map[int]int{}}
	for p := range n {
		b, err := cs.f.Start(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		cs.view[p] = b.State
	}
	return cs
}

// poll reads once; errors (a shard failing over) are retried next time.
func (cs *consumer) poll(ctx context.Context) int {
	entries, reload, _ := cs.f.Poll(ctx, 500)
	for p, b := range reload {
		cs.gaps[p]++
		cs.view[p] = b.State
	}
	n := 0
	for p, es := range entries {
		for _, e := range es {
			if e.Data == "" {
				delete(cs.view[p], e.Key)
			} else {
				cs.view[p][e.Key] = e.Data
			}
			n++
		}
	}
	cs.applied += n
	return n
}

func testStreams(t *testing.T, c *clustertest.Cluster, rdb *redis.ClusterClient) {
	ctx := context.Background()
	const n = 48
	m, _ := partition.NewMap("streams", n)
	s := partition.NewStreams(rdb, m, 200)
	st := newRegistrar(m, 2000, 1)
	cs := newConsumer(t, s, n)
	lease := m.ReaderLease()

	// Reader A takes the lease, stamps, appends in batches.
	ha, err := lease.Acquire(ctx, rdb, "A", 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stamp(ctx, ha.Epoch); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		batch := make([]partition.Change, 25)
		for i := range batch {
			batch[i] = st.change()
		}
		if _, err := s.Append(ctx, ha.Epoch, batch); err != nil {
			t.Fatal(err)
		}
		cs.poll(ctx)
	}
	for cs.poll(ctx) > 0 {
	}
	if cs.applied != 1000 {
		t.Errorf("consumer applied %d changes, want each of 1000 once", cs.applied)
	}

	// A stops renewing (SIGKILLed); B takes the lease after it runs out,
	// stamps, and diffs the store against the recorded state: nothing was
	// lost, so nothing is announced again.
	eventually(t, 5*time.Second, func() bool {
		_, ok, _ := lease.Current(ctx, rdb)
		return !ok
	}, "reader lease running out")
	hb, err := lease.Acquire(ctx, rdb, "B", 2*time.Second)
	if err != nil || hb.Epoch <= ha.Epoch {
		t.Fatalf("B took the reader lease as %v (%v), after A's %v", hb, err, ha)
	}
	rd, base, err := s.OpenReader(ctx, hb.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	resent := 0
	for p := range n {
		resent += len(partition.Diff(p, base[p].State, st.state[p]))
	}
	if resent != 0 {
		t.Errorf("the new reader would announce %d changes again", resent)
	}
	// A wakes up and tries to append: fenced, on every partition.
	for p := range n {
		if _, err := s.Append(ctx, ha.Epoch, []partition.Change{{P: p, Key: "late", Data: "x"}}); !errors.Is(err, partition.ErrFenced) {
			t.Fatalf("the old reader's append to partition %d: %v, want ErrFenced", p, err)
		}
	}

	// A master dies while B appends: its replica takes over. The reader
	// syncs the partitions whose appends failed (or whose sequence came
	// back short: writes lost by the failover) against its view.
	c.WaitOK() // replicas caught up with everything so far
	victim := c.MasterOf(m.Key(0, "changes"))
	var killedAt time.Time
	pending := map[int]bool{}
	resyncs := 0
	for i, after := 0, 0; after < 30; i++ {
		if i == 30 {
			killedAt = time.Now()
			c.Kill(victim)
		}
		if i > 30 && c.Healthy() {
			after++
		}
		batch := make([]partition.Change, 25)
		for j := range batch {
			batch[j] = st.change()
		}
		again, err := rd.Append(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range again {
			pending[p] = true
			resyncs++
		}
		for p := range pending {
			if rd.Sync(ctx, p, st.state[p]) == nil {
				delete(pending, p)
			}
		}
		cs.poll(ctx)
		if len(again) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	c.WaitOK()
	failover := time.Since(killedAt)
	for p := range pending {
		eventually(t, 20*time.Second, func() bool { return rd.Sync(ctx, p, st.state[p]) == nil }, fmt.Sprintf("syncing partition %d", p))
	}
	// Nothing left for a full reconcile to do.
	for p := range n {
		if err := rd.Sync(ctx, p, st.state[p]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Baselines(ctx, []int{0})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(b[0].State, st.state[0]) {
		t.Error("partition 0's recorded state differs from the store after the failover")
	}
	eventually(t, 10*time.Second, func() bool {
		cs.poll(ctx)
		for p := range n {
			if !maps.Equal(cs.view[p], st.state[p]) && len(cs.view[p])+len(st.state[p]) > 0 {
				return false
			}
		}
		return true
	}, "the consumer's view matching the store after the failover")
	gaps := 0
	for _, g := range cs.gaps {
		gaps += g
	}
	t.Logf("failover: %v until the cluster was ok again; %d partition syncs by the reader; consumer reloaded %d partitions (gaps)", failover.Round(100*time.Millisecond), resyncs, gaps)
	for p, g := range cs.gaps {
		if c.MasterOf(m.Key(p, "changes")) == c.MasterOf(m.Key(0, "changes")) {
			continue
		}
		t.Errorf("partition %d, on a shard that did not fail, had %d gaps", p, g)
	}
}

// trips counts what a client sends: each command or pipeline is one
// round trip (a Cluster pipeline goes to its shards in parallel).
type trips struct{ n atomic.Int64 }

func (h *trips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *trips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *trips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// testFanout measures a NOTIFY fan-out over three owners: Redis commands
// per shard (they should be even: partitions are spread over the slot
// space), round trips per NOTIFY, and what the fence and the stream
// appends cost Redis.
func testFanout(t *testing.T, c *clustertest.Cluster, rdb *redis.ClusterClient) {
	ctx := context.Background()
	const n, subs = 256, 3000
	m, _ := partition.NewMap("fanout", n)
	f := newFleet(t, rdb, m, 3*time.Second)
	for _, id := range []string{"a", "b", "c"} {
		f.start(id)
	}
	eventually(t, 10*time.Second, func() bool { return f.balanced("a", "b", "c") }, "three owners sharing 256 partitions")
	byP := map[int][]string{}
	_, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i := range subs {
			aor := fmt.Sprintf("sip:f%d@example.com", i)
			p, id := m.Of(aor), fmt.Sprintf("d%d", i)
			byP[p] = append(byP[p], id)
			pl.HSet(ctx, m.Key(p, "sub:"+id), "cseq", 1, "ver", 0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A client of their own, so that the round trips counted are the
	// NOTIFYs' only.
	cl := c.Client()
	counter := &trips{}
	cl.AddHook(counter)
	for _, id := range []string{"a", "b", "c"} { // load the script once
		for p, h := range f.owners[id].Owned() {
			if len(byP[p]) > 0 {
				m.Advance(ctx, cl, p, h, byP[p][0])
				break
			}
		}
	}
	c.ResetStats()
	counter.n.Store(0)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for _, id := range []string{"a", "b", "c"} {
		owned := f.owners[id].Owned()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p, h := range owned {
				for _, sub := range byP[p] {
					if _, _, err := m.Advance(ctx, cl, p, h, sub); err != nil {
						t.Errorf("fence of the owner of partition %d: %v", p, err)
						return
					}
					sent.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	stats := c.CommandStats()
	var total, usec int64
	for _, st := range stats {
		total += st["evalsha"].Calls
		usec += st["evalsha"].Usec
	}
	mean := float64(total) / float64(len(stats))
	for addr, st := range stats {
		got := float64(st["evalsha"].Calls)
		t.Logf("fan-out: shard %s ran %d fences (%.0f%% of the mean)", addr, st["evalsha"].Calls, 100*got/mean)
		if got < 0.8*mean || got > 1.2*mean {
			t.Errorf("shard %s ran %.0f fences, mean %.0f: outside +-20%%", addr, got, mean)
		}
	}
	t.Logf("fan-out: %d NOTIFY fences, %.2f round trips per NOTIFY, %.1f us of Redis CPU each",
		sent.Load(), float64(counter.n.Load())/float64(sent.Load()), float64(usec)/float64(total))

	// The reader's appends and an owner's reads, per change.
	s := partition.NewStreams(cl, m, 0)
	st := newRegistrar(m, 2000, 3)
	cs := newConsumer(t, s, n)
	c.ResetStats()
	counter.n.Store(0)
	const changes, batch = 6000, 200
	for range changes / batch {
		b := make([]partition.Change, batch)
		for i := range b {
			b[i] = st.change()
		}
		if _, err := s.Append(ctx, 1, b); err != nil {
			t.Fatal(err)
		}
	}
	appendTrips := counter.n.Load()
	stats = c.CommandStats()
	var evals, evalUsec int64
	for _, st := range stats {
		evals += st["eval"].Calls
		evalUsec += st["eval"].Usec
	}
	c.ResetStats()
	counter.n.Store(0)
	for cs.poll(ctx) > 0 {
	}
	if cs.applied != changes {
		t.Errorf("consumer read %d changes, want %d", cs.applied, changes)
	}
	stats = c.CommandStats()
	var xr, xrUsec int64
	for _, st := range stats {
		xr += st["xrange"].Calls
		xrUsec += st["xrange"].Usec
	}
	t.Logf("streams: %d changes appended in %d round trips (batches of %d), %d scripts, %.1f us of Redis CPU per change; read in %d round trips, %d XRANGE, %.1f us of Redis CPU per change",
		changes, appendTrips, batch, evals, float64(evalUsec)/changes, counter.n.Load(), xr, float64(xrUsec)/changes)
	f.mu.Lock()
	for _, stop := range f.stop {
		stop()
	}
	f.mu.Unlock()
}
