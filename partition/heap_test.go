package partition_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/partition/clustertest"
)

// BenchmarkOwnerHeap loads 300,000 contacts (30,000 under -short) into
// 256 partitions on a local Redis Cluster and measures the heap an
// owner's Follower holds for them: one owner of every partition, and one
// of three. It also reports the Redis memory per contact (the
// partitions' state hashes and streams, masters only).
//
//	go test -run '^$' -bench OwnerHeap -benchtime 1x ./partition/
func BenchmarkOwnerHeap(b *testing.B) {
	contacts := 300_000
	if testing.Short() {
		contacts = 30_000
	}
	c := clustertest.Start(b)
	rdb := c.Client()
	ctx := context.Background()
	m, _ := partition.NewMap("heap", partition.DefaultCount)
	s := partition.NewStreams(rdb, m, 0)
	before := usedMemory(b, c)
	// About what a contact record costs as JSON: URI, path, user agent,
	// received address, expiry, q, flags.
	pad := strings.Repeat("x", 150)
	const batch = 2000
	for i := 0; i < contacts; i += batch {
		ch := make([]partition.Change, 0, batch)
		for j := i; j < min(i+batch, contacts); j++ {
			aor := fmt.Sprintf("sip:u%d@example.com", j)
			ch = append(ch, partition.Change{P: m.Of(aor), Key: aor + ";c0", Data: fmt.Sprintf(`{"uri":"sip:u%d@10.0.0.1:5060","pad":"%s"}`, j, pad)})
		}
		if _, err := s.Append(ctx, 1, ch); err != nil {
			b.Fatal(err)
		}
	}
	redisPer := float64(usedMemory(b, c)-before) / float64(contacts)
	mine := partition.Assign(m.Count(), []string{"a", "b", "c"})
	for b.Loop() {
		all := followerHeap(b, s, m.Count(), func(int) bool { return true })
		third := followerHeap(b, s, m.Count(), func(p int) bool { return mine[p] == "a" })
		b.ReportMetric(all/(1<<20), "MiB-1-owner")
		b.ReportMetric(third/(1<<20), "MiB-1-of-3")
	}
	b.ReportMetric(redisPer, "redis-B/contact")
}

// followerHeap starts a Follower on the partitions own selects and
// returns the heap their baselines take.
func followerHeap(b *testing.B, s *partition.Streams, n int, own func(int) bool) float64 {
	ctx := context.Background()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	f := s.NewFollower()
	keep := map[int]map[string]string{}
	for p := range n {
		if !own(p) {
			continue
		}
		bl, err := f.Start(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		keep[p] = bl.State
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(keep)
	return float64(ms.HeapAlloc - base)
}

// usedMemory sums used_memory over the masters.
func usedMemory(b *testing.B, c *clustertest.Cluster) int64 {
	var sum int64
	for _, a := range c.Masters() {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		info, err := rdb.Info(context.Background(), "memory").Result()
		rdb.Close()
		if err != nil {
			b.Fatal(err)
		}
		var v int64
		for _, line := range strings.Split(info, "\r\n") {
			if s, ok := strings.CutPrefix(line, "used_memory:"); ok {
				fmt.Sscan(s, &v)
			}
		}
		sum += v
	}
	return sum
}
