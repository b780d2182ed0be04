package partition_test

import (
	"context"
	"testing"
	"time"

	"github.com/regbridge/regbridge/partition"
)

// TestSingleRedis runs owners and streams on one ordinary Redis (the
// local one, under a prefix of the test's own): without Cluster every
// partition lives on that one shard and all of it works the same.
func TestSingleRedis(t *testing.T) {
	rdb, prefix := localRedis(t)
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 16)
	f := newFleet(t, rdb, m, 900*time.Millisecond)
	f.start("a")
	eventually(t, 5*time.Second, func() bool { return f.balanced("a") }, "one owner holding all 16 partitions")
	f.start("b")
	eventually(t, 5*time.Second, func() bool { return f.balanced("a", "b") }, "two owners sharing 16 partitions")

	s := partition.NewStreams(rdb, m, 0)
	cs := newConsumer(t, s, 16)
	st := newRegistrar(m, 2000, 5)
	if err := s.Stamp(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b := make([]partition.Change, 30)
		for i := range b {
			b[i] = st.change()
		}
		if _, err := s.Append(ctx, 1, b); err != nil {
			t.Fatal(err)
		}
	}
	for cs.poll(ctx) > 0 {
	}
	if cs.applied != 300 {
		t.Errorf("consumer applied %d changes, want 300", cs.applied)
	}
	_, base, err := s.OpenReader(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 16 {
		if d := partition.Diff(p, base[p].State, st.state[p]); len(d) != 0 {
			t.Errorf("partition %d: a new reader would append %d changes again", p, len(d))
		}
	}
	f.mu.Lock()
	for _, d := range f.doubles {
		t.Error(d)
	}
	f.mu.Unlock()
}
