package partition_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/partition/clustertest"
)

// record is the subscriber side, independent of the instances: per
// subscription the last version seen and the contacts it was told of.
// A partial document must carry the next version; a full one may skip
// versions (a NOTIFY its sender took the version for but never sent);
// an older version is discarded, as subscribers do (RFC 3680 4.1.2).
type record struct {
	mu      sync.Mutex
	last    map[string]int64
	view    map[string]map[string]string
	full    int
	partial int
	stale   int
	errs    []string
}

func (r *record) deliver(sub string, version uint32, full bool, contacts map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, last := int64(version), r.last[sub]
	if _, ok := r.last[sub]; !ok {
		last = -1
	}
	switch {
	case v <= last:
		r.stale++
		return
	case full:
		r.full++
		r.view[sub] = map[string]string{}
		maps.Copy(r.view[sub], contacts)
	case v != last+1:
		r.errs = append(r.errs, fmt.Sprintf("%s: partial document version %d after %d", sub, v, last))
		return
	default:
		r.partial++
		for k, d := range contacts {
			if d == "" {
				delete(r.view[sub], k)
			} else {
				r.view[sub][k] = d
			}
		}
	}
	r.last[sub] = v
}

// instance is one simulated regbridge: an Owner, a Follower of the
// partitions it owns, and the contacts of those partitions; it sends a
// full document to a partition's subscriptions when it gains it or its
// stream has a gap, a partial one per change, each behind the fence.
// Rounds and polls run on one goroutine, so a lost partition sends
// nothing more.
type instance struct {
	id    string
	o     *partition.Owner
	f     *partition.Follower
	view  map[int]map[string]string
	held  map[int]partition.Holder
	dirty map[int]bool // a NOTIFY failed for a reason other than losing p: send full state
	stop  chan struct{}
	done  chan struct{}
	sim   *sim
	sends int
}

type sim struct {
	rdb redis.Cmdable
	m   *partition.Map
	s   *partition.Streams
	rec *record
	ttl time.Duration

	subsOf map[int][]string // AORs with a subscription, by partition
}

// subOf: one subscription per AOR, named after it.
func subOf(aor string) string { return "s:" + aor }

func aorOf(key string) string { aor, _, _ := strings.Cut(key, ";"); return aor }

func (sm *sim) start(id string) *instance {
	in := &instance{id: id, o: partition.NewOwner(sm.rdb, sm.m, id, sm.ttl, quiet), f: sm.s.NewFollower(),
		view: map[int]map[string]string{}, held: map[int]partition.Holder{}, dirty: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{}), sim: sm}
	ctx := context.Background()
	in.o.OnGain = func(p int, h partition.Holder) {
		b, err := in.f.Start(ctx, p)
		if err != nil {
			return // not followed: the next round's renewal keeps it; see below
		}
		in.held[p], in.view[p] = h, b.State
		in.sendFull(ctx, p)
	}
	in.o.OnLose = func(p int) {
		in.f.Stop(p)
		delete(in.held, p)
		delete(in.view, p)
		delete(in.dirty, p)
	}
	go in.run()
	return in
}

// kill stops the instance where it is: no release, no more rounds.
func (in *instance) kill() { close(in.stop); <-in.done }

func (in *instance) run() {
	defer close(in.done)
	ctx := context.Background()
	round := time.NewTicker(in.sim.ttl / 3)
	defer round.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	in.o.Round(ctx)
	for {
		select {
		case <-in.stop:
			return
		case <-round.C:
			in.o.Round(ctx)
			// A partition gained while its baseline could not be loaded
			// (a shard failing over) is retried here.
			for p, h := range in.o.Owned() {
				if _, ok := in.held[p]; !ok {
					in.o.OnGain(p, h)
				}
			}
			for p := range in.dirty {
				delete(in.dirty, p)
				in.sendFull(ctx, p)
			}
		case <-poll.C:
			entries, reload, _ := in.f.Poll(ctx, 200)
			for p, b := range reload {
				if _, ok := in.held[p]; ok {
					in.view[p] = b.State
					in.sendFull(ctx, p)
				}
			}
			for p, es := range entries {
				for _, e := range es {
					if _, ok := in.held[p]; !ok {
						break
					}
					if e.Data == "" {
						delete(in.view[p], e.Key)
					} else {
						in.view[p][e.Key] = e.Data
					}
					in.send(ctx, p, aorOf(e.Key), false, map[string]string{e.Key: e.Data})
				}
			}
		}
		select {
		case <-in.stop:
			return
		default:
		}
	}
}

// sendFull sends every subscription of p its AOR's contacts.
func (in *instance) sendFull(ctx context.Context, p int) {
	byAOR := map[string]map[string]string{}
	for k, d := range in.view[p] {
		a := aorOf(k)
		if byAOR[a] == nil {
			byAOR[a] = map[string]string{}
		}
		byAOR[a][k] = d
	}
	for _, aor := range in.sim.subsOf[p] {
		in.send(ctx, p, aor, true, byAOR[aor])
	}
}

func (in *instance) send(ctx context.Context, p int, aor string, full bool, contacts map[string]string) {
	h, ok := in.held[p]
	if !ok || !full && in.dirty[p] {
		// Not ours, or a fence's outcome is unknown (it may have taken a
		// version): only a full document may follow.
		return
	}
	_, v, err := in.sim.m.Advance(ctx, in.sim.rdb, p, h, subOf(aor))
	if errors.Is(err, partition.ErrNotOwner) {
		return // the next owner sends full state
	}
	if err != nil {
		in.dirty[p] = true // the shard is failing over: full state later
		return
	}
	in.sends++
	in.sim.rec.deliver(subOf(aor), v, full, contacts)
}

// registrar is the location store the readers read: its contacts by
// partition, changed at random (each change numbered, so that an old
// value differs from a new one; a quarter of them removals).
type registrar struct {
	mu    sync.Mutex
	state map[int]map[string]string
	n     int
	r     *rand.Rand
	aors  int
	m     *partition.Map
}

func newRegistrar(m *partition.Map, aors int, seed uint64) *registrar {
	return &registrar{state: map[int]map[string]string{}, r: rand.New(rand.NewPCG(seed, seed+1)), aors: aors, m: m}
}

func (g *registrar) change() partition.Change {
	g.mu.Lock()
	defer g.mu.Unlock()
	aor := fmt.Sprintf("sip:s%d@example.com", g.r.IntN(g.aors))
	p := g.m.Of(aor)
	key := fmt.Sprintf("%s;c%d", aor, g.r.IntN(2))
	g.n++
	data := fmt.Sprintf("v%d", g.n)
	if g.r.IntN(4) == 0 {
		data = ""
	}
	if g.state[p] == nil {
		g.state[p] = map[string]string{}
	}
	if data == "" {
		delete(g.state[p], key)
	} else {
		g.state[p][key] = data
	}
	return partition.Change{P: p, Key: key, Data: data}
}

func (g *registrar) snapshot(p int) map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.state[p])
}

// reader runs as the store's one reader while it holds the reader
// lease: it polls the store and diffs each partition against what it
// last appended (as the bridge diffs snapshots), starting from the
// recorded state when it takes over, and syncs partitions that need it.
type reader struct {
	id   string
	stop chan struct{}
	done chan struct{}
}

func (sm *sim) startReader(id string, g *registrar) *reader {
	rd := &reader{id: id, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		ctx := context.Background()
		lease := sm.m.ReaderLease()
		var h partition.Holder
		var r *partition.Reader
		var known map[int]map[string]string
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		renewed := time.Now()
		for {
			select {
			case <-rd.stop:
				return
			case <-tick.C:
			}
			if r == nil { // not the reader (yet)
				var err error
				if h, err = lease.Acquire(ctx, sm.rdb, id, sm.ttl); err != nil {
					continue
				}
				renewed = time.Now()
				rr, base, err := sm.s.OpenReader(ctx, h.Epoch)
				if err != nil {
					continue
				}
				r, known = rr, map[int]map[string]string{}
				for p, b := range base {
					known[p] = b.State
				}
			}
			if time.Since(renewed) > sm.ttl/3 {
				ok, err := lease.Renew(ctx, sm.rdb, h, sm.ttl)
				if err == nil && !ok {
					return // lost the lease
				}
				if ok {
					renewed = time.Now()
				}
			}
			var changes []partition.Change
			snaps := map[int]map[string]string{}
			for p := range sm.m.Count() {
				snaps[p] = g.snapshot(p)
				changes = append(changes, partition.Diff(p, known[p], snaps[p])...)
			}
			resync, err := r.Append(ctx, changes)
			if errors.Is(err, partition.ErrFenced) {
				return
			}
			bad := map[int]bool{}
			for _, p := range resync {
				bad[p] = true
				if r.Sync(ctx, p, snaps[p]) == nil {
					bad[p] = false
				}
			}
			for p, snap := range snaps {
				if !bad[p] {
					known[p] = snap
				}
			}
		}
	}()
	return rd
}

func (rd *reader) kill() { close(rd.stop); <-rd.done }

// testSim runs three simulated instances and the store's reader over
// 2,000 subscriptions on 64 partitions while the store changes, and
// checks the subscriber side: every change delivered in version order or
// covered by a full document, and each subscriber's contacts equal to
// the store's at the end, while an instance is killed, one joins, the
// reader is killed and another takes over, and a Redis master dies.
func testSim(t *testing.T, c *clustertest.Cluster, rdb *redis.ClusterClient) {
	ctx := context.Background()
	const n, aors = 64, 2000
	m, _ := partition.NewMap("sim", n)
	sm := &sim{rdb: rdb, m: m, s: partition.NewStreams(rdb, m, 0), ttl: 900 * time.Millisecond,
		rec: &record{last: map[string]int64{}, view: map[string]map[string]string{}}, subsOf: map[int][]string{}}
	_, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i := range aors {
			aor := fmt.Sprintf("sip:s%d@example.com", i)
			p := m.Of(aor)
			sm.subsOf[p] = append(sm.subsOf[p], aor)
			pl.HSet(ctx, m.Key(p, "sub:"+subOf(aor)), "cseq", 1, "ver", 0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newRegistrar(m, aors, 7)
	stopChanges := make(chan struct{})
	changed := make(chan struct{})
	go func() { // the registrar: 10 changes every 10 ms
		defer close(changed)
		for {
			select {
			case <-stopChanges:
				return
			case <-time.After(10 * time.Millisecond):
			}
			for range 10 {
				g.change()
			}
		}
	}()
	ins := map[string]*instance{}
	for _, id := range []string{"a", "b", "c"} {
		ins[id] = sm.start(id)
	}
	r1 := sm.startReader("r1", g)
	r2 := sm.startReader("r2", g)
	time.Sleep(1500 * time.Millisecond)
	ins["c"].kill()
	time.Sleep(1500 * time.Millisecond)
	ins["d"] = sm.start("d")
	time.Sleep(1000 * time.Millisecond)
	// The reader (whichever holds the lease) is killed; a standby takes
	// over, and a new standby starts.
	readers := map[string]*reader{"r1": r1, "r2": r2}
	h, ok, _ := m.ReaderLease().Current(ctx, rdb)
	if !ok {
		t.Fatal("no reader holds the lease")
	}
	readers[h.ID].kill()
	delete(readers, h.ID)
	readers["r3"] = sm.startReader("r3", g)
	defer func() {
		for _, rd := range readers {
			rd.kill()
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	c.WaitOK()
	c.Kill(c.MasterOf(m.Key(n/2, "changes")))
	time.Sleep(2000 * time.Millisecond)
	close(stopChanges)
	<-changed
	c.WaitOK()
	want := map[string]map[string]string{}
	for p := range n {
		for k, d := range g.snapshot(p) {
			s := subOf(aorOf(k))
			if want[s] == nil {
				want[s] = map[string]string{}
			}
			want[s][k] = d
		}
	}
	waitFor(t, 20*time.Second, func() bool {
		sm.rec.mu.Lock()
		defer sm.rec.mu.Unlock()
		for i := range aors {
			s := subOf(fmt.Sprintf("sip:s%d@example.com", i))
			if len(want[s])+len(sm.rec.view[s]) > 0 && !maps.Equal(want[s], sm.rec.view[s]) {
				return false
			}
		}
		return true
	}, "every subscriber's contacts equal to the store's")
	if t.Failed() {
		sm.rec.mu.Lock()
		bad := map[int]int{}
		for i := range aors {
			aor := fmt.Sprintf("sip:s%d@example.com", i)
			s := subOf(aor)
			if len(want[s])+len(sm.rec.view[s]) > 0 && !maps.Equal(want[s], sm.rec.view[s]) {
				bad[m.Of(aor)]++
			}
		}
		sm.rec.mu.Unlock()
		b, _ := sm.s.Baselines(ctx, []int{0, n / 2})
		t.Logf("mismatching subscriptions by partition: %v; killed master served partition %d; state of %d matches store: %v", bad, n/2, n/2, maps.Equal(b[n/2].State, g.snapshot(n/2)))
		for p := range bad {
			h, ok, err := m.PartitionLease(p).Current(ctx, rdb)
			b, _ := sm.s.Baselines(ctx, []int{p})
			t.Logf("partition %d: lease %v %v %v; state matches store: %v", p, h, ok, err, maps.Equal(b[p].State, g.snapshot(p)))
		}
	}
	for _, id := range []string{"a", "b", "d"} {
		ins[id].kill()
	}
	sm.rec.mu.Lock()
	defer sm.rec.mu.Unlock()
	for _, e := range sm.rec.errs {
		t.Error(e)
	}
	t.Logf("simulation: %d store changes; %d partial and %d full documents delivered, %d stale ones discarded", g.n, sm.rec.partial, sm.rec.full, sm.rec.stale)
}

// waitFor polls cond every 20 ms for up to d; if it never holds it
// marks the test failed (going on) and returns false.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
