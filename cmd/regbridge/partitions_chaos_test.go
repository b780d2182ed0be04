package main

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/source/kamailio"
)

// insertContact writes one binding of user u to the Kamailio location
// table through ex (the store or a transaction), an hour from expiring.
func insertContact(t *testing.T, ex interface {
	Exec(string, ...any) (sql.Result, error)
}, ruid, u, uri, agent string) error {
	now := time.Now()
	_, err := ex.Exec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
		VALUES (?, ?, ?, ?, -1, ?, 1, ?, ?)`, ruid, u, uri, kamailio.TimeToJulian(now.Add(time.Hour)), "call-"+ruid,
		kamailio.TimeToJulian(now), agent)
	return err
}

// insertEach writes one new binding for each of users u0..u(aors-1) in
// one transaction: a change of every AOR at once.
func insertEach(t *testing.T, db *sql.DB, aors int, tag string) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for u := range aors {
		if err := insertContact(t, tx, fmt.Sprintf("%s-%d", tag, u), fmt.Sprintf("u%d", u),
			fmt.Sprintf("sip:u%d-%s@192.0.2.1", u, tag), tag); err != nil {
			tx.Rollback()
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// churner changes the store continuously, about every 20 ms, until
// stopped: a new binding (every contact URI new) or, one time in three,
// the removal of one of the AOR's bindings.
type churner struct {
	stop    chan struct{}
	done    chan struct{}
	changes int
}

func startChurn(t *testing.T, db *sql.DB, aors int) *churner {
	c := &churner{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		rnd := rand.New(rand.NewPCG(3, 4))
		live := map[int][]string{} // user -> ruids written here
		for step := 0; ; step++ {
			select {
			case <-c.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			u := rnd.IntN(aors)
			if rs := live[u]; len(rs) > 0 && rnd.IntN(3) == 0 {
				if _, err := db.Exec(`DELETE FROM location WHERE ruid = ?`, rs[0]); err != nil {
					t.Error(err)
					return
				}
				live[u] = rs[1:]
			} else {
				ruid := fmt.Sprintf("ch%d", step)
				if err := insertContact(t, db, ruid, fmt.Sprintf("u%d", u), fmt.Sprintf("sip:u%d-%s@192.0.2.2", u, ruid), "churn"); err != nil {
					t.Error(err)
					return
				}
				live[u] = append(live[u], ruid)
			}
			c.changes++
		}
	}()
	return c
}

// end stops the churn and returns the number of changes written.
func (c *churner) end() int {
	close(c.stop)
	<-c.done
	return c.changes
}

// readingProc returns the one process of procs whose store reads grow.
func readingProc(t testing.TB, procs []*proc) *proc {
	t.Helper()
	var reader *proc
	siptest.Eventually(t, func() bool {
		rates := pollRate(t, procs, 300*time.Millisecond)
		reader = nil
		for i, r := range rates {
			if r > 0 {
				if reader != nil {
					return false
				}
				reader = procs[i]
			}
		}
		return reader != nil
	}, "exactly one instance reading the store")
	return reader
}

// percentile is the p-th percentile (0 to 100) of ds, nearest rank.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// roundTrips is one process's 'shared state closed' line.
type roundTrips struct{ total, fences, polls, other, sent uint64 }

var closedLine = regexp.MustCompile(`redis_round_trips=(\d+) notifies_sent=(\d+) fence_round_trips=(\d+) inbox_poll_round_trips=(\d+) other_round_trips=(\d+)`)

// stopForTrips SIGTERMs p and reads its Redis round trips at exit.
func stopForTrips(t *testing.T, p *proc) roundTrips {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	m := closedLine.FindStringSubmatch(p.log.String())
	if m == nil {
		t.Fatalf("no 'shared state closed' line with the round trips in the log:\n%s", tail(p.log.String(), 2000))
	}
	n := func(i int) uint64 { v, _ := strconv.ParseUint(m[i], 10, 64); return v }
	return roundTrips{total: n(1), sent: n(2), fences: n(3), polls: n(4), other: n(5)}
}

// spread is each value's percentage of their mean.
func spread(vals []int64) []string {
	var sum int64
	for _, v := range vals {
		sum += v
	}
	mean := float64(sum) / float64(len(vals))
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = fmt.Sprintf("%d (%.0f%%)", v, 100*float64(v)/mean)
	}
	return out
}

// TestClusterPartitionsChaos: the partitioned design end to end under
// faults, on real processes. Three regbridge processes with
// REGBRIDGE_PARTITIONS=64 over one Kamailio SQLite store and a local
// Redis Cluster of three masters and three replicas; 2,400 subscriptions
// over 400 AORs, spread over the instances; the store changing about 50
// times a second throughout while, in turn, an instance that does not
// read the store is SIGKILLed, a fourth instance joins, the reading
// instance is SIGKILLed, and a Redis master is SIGKILLed (its replica
// takes over). An independent subscriber-side record checks every
// subscription: versions in order, a full document from each new
// sender (which may skip versions a dead owner took), nothing from a
// killed instance, every contact announced active and terminated once
// at most, and at the end every subscriber's view equal to the store.
//
// It logs the figures docs/cluster.md ("Measured") quotes: Redis
// commands per shard during a fan-out of one change to every AOR, the
// takeover time per subscription after each SIGKILL, and the Redis
// round trips per NOTIFY of the surviving instances.
func TestClusterPartitionsChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs four processes and a Redis Cluster")
	}
	rc, state := startCluster(t, "rbc")
	bin, dbPath, src := buildWithStore(t)
	const parts = "REGBRIDGE_PARTITIONS=64"
	procs := []*proc{startProc(t, bin, src, state, "c0", parts)}
	db := openLocation(t, dbPath)
	const subs, aors = 2400, 400
	insertEach(t, db, aors, "first") // every full document lists a contact
	procs = append(procs, startProc(t, bin, src, state, "c1", parts), startProc(t, bin, src, state, "c2", parts))

	w := newWatchers(t, 8)
	aorOf := func(i int) string { return fmt.Sprintf("sip:u%d@example.com", i%aors) }
	callOf := func(i int) string { return fmt.Sprintf("pc-%d", i) }
	w.subscribeAll(subs, procs, callOf, aorOf)
	w.converge(subs, callOf, aorOf, storeState(t, db))

	// Fan-out: one new contact for every AOR at once, a partial NOTIFY
	// to every subscription; Redis commands counted per shard.
	rc.ResetStats()
	fanStart := time.Now()
	insertEach(t, db, aors, "fan")
	w.converge(subs, callOf, aorOf, storeState(t, db))
	stats := rc.CommandStats()
	fanTook := time.Since(fanStart)
	var shards []string
	var all, scripts, reads []int64
	for addr, st := range stats {
		var n int64
		for _, s := range st {
			n += s.Calls
		}
		shards = append(shards, addr)
		all = append(all, n)
		scripts = append(scripts, st["evalsha"].Calls+st["eval"].Calls)
		reads = append(reads, st["xrange"].Calls)
	}
	// The fences' share of each shard, from where the subscriptions'
	// partitions live: what the scripts above should spread as.
	pm, err := partition.NewMap("rbc", 64)
	if err != nil {
		t.Fatal(err)
	}
	masterOf := map[int]string{}
	fences := map[string]int64{}
	for i := range subs {
		p := pm.Of(bridge.CanonicalAOR(aorOf(i)))
		if _, ok := masterOf[p]; !ok {
			masterOf[p] = rc.MasterOf(pm.Key(p, "subs"))
		}
		fences[masterOf[p]]++
	}
	var byShard []int64
	for _, addr := range shards {
		byShard = append(byShard, fences[addr])
	}

	// The chaos, the store changing throughout.
	ch := startChurn(t, db, aors)
	reader := readingProc(t, procs)
	var victim *proc
	for _, p := range procs {
		if p != reader {
			victim = p
			break
		}
	}
	time.Sleep(time.Second)
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.cmd.Wait()
	kills := []kill{{victim.port, time.Now()}}
	time.Sleep(2500 * time.Millisecond)
	procs = append(procs, startProc(t, bin, src, state, "c3", parts))
	time.Sleep(2500 * time.Millisecond)
	reader.cmd.Process.Signal(syscall.SIGKILL)
	reader.cmd.Wait()
	kills = append(kills, kill{reader.port, time.Now()})
	time.Sleep(2500 * time.Millisecond)
	master := rc.Masters()[rand.IntN(3)]
	rc.Kill(master)
	masterKilled := time.Now()
	rc.WaitOK()
	failover := time.Since(masterKilled)
	time.Sleep(time.Second)
	changes := ch.end()

	want := storeState(t, db)
	w.converge(subs, callOf, aorOf, want)
	own := w.checkOwned(subs, callOf, kills...)
	w.once(subs, callOf)
	var survivors []*proc
	for _, p := range procs {
		if p != victim && p != reader {
			survivors = append(survivors, p)
		}
	}
	if r := readingProc(t, survivors); r == nil {
		t.Fatal("no survivor reads the store")
	}
	if len(own.takeovers[0]) == 0 || len(own.takeovers[1]) == 0 {
		t.Fatalf("takeovers after the two SIGKILLs: %d and %d subscriptions, want some of each", len(own.takeovers[0]), len(own.takeovers[1]))
	}

	var trips []string
	var sum roundTrips
	for _, p := range survivors {
		rt := stopForTrips(t, p)
		trips = append(trips, fmt.Sprintf("%d fences, %d inbox polls, %d other for %d NOTIFYs", rt.fences, rt.polls, rt.other, rt.sent))
		sum.fences, sum.polls, sum.other, sum.sent = sum.fences+rt.fences, sum.polls+rt.polls, sum.other+rt.other, sum.sent+rt.sent
	}
	perNotify := func(n uint64) float64 { return float64(n) / float64(max(sum.sent, 1)) }

	t.Logf("%d subscriptions over %d AORs, 64 partitions; %d store changes during the chaos; %d NOTIFYs checked, %d sender changes, %d full documents skipping a version",
		subs, aors, changes, own.notifies, own.moved, own.gaps)
	t.Logf("fan-out of %d NOTIFYs in %v: Redis commands per shard %v, of them scripts (fences, appends, leases) %v and XRANGE (stream and inbox polls, every 20 ms per owned partition) %v; the fences alone, by the subscriptions' partitions, %v",
		subs, fanTook.Round(time.Millisecond), spread(all), spread(scripts), spread(reads), spread(byShard))
	for i, what := range []string{"an instance not reading the store", "the reading instance"} {
		t.Logf("takeover after SIGKILL of %s (lease 1s): %d subscriptions, first full NOTIFY from the new owner after p50 %v, max %v",
			what, len(own.takeovers[i]), percentile(own.takeovers[i], 50).Round(time.Millisecond), own.maxTakeover(i).Round(time.Millisecond))
	}
	t.Logf("Redis master %s SIGKILLed: cluster ok again after %v", master, failover.Round(100*time.Millisecond))
	t.Logf("Redis round trips of the survivors' subscription stores: %v; per NOTIFY: %.2f fences, %.2f other (saves, takes, loads on gains), inbox polls %.2f (one per 20 ms tick, whatever the NOTIFYs)",
		trips, perNotify(sum.fences), perNotify(sum.other), perNotify(sum.polls))
}
