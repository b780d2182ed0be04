package partition_test

import (
	"context"
	"testing"
	"time"

	"github.com/regbridge/regbridge/partition"
)

// TestOwnerLateRenewal: a round that renews a partition's lease only
// after the owner's local deadline passed (the process was starved, or
// Redis slow) reports the partition lost and gained again: while the
// deadline had passed Holder said no, so the notifier dropped the
// partition's subscriptions at their fences, and only a gain makes the
// instance load them anew. A round in time reports nothing.
func TestOwnerLateRenewal(t *testing.T) {
	rdb, prefix := localRedis(t)
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 2)
	const ttl = 300 * time.Millisecond
	o := partition.NewOwner(rdb, m, "me", ttl, quiet)
	var events []string
	o.OnGain = func(p int, _ partition.Holder) { events = append(events, "gain") }
	o.OnLose = func(p int) { events = append(events, "lose") }
	if err := o.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("first round: %v, want a gain of each partition", events)
	}
	events = nil
	if err := o.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Fatalf("a round in time: %v, want nothing", events)
	}
	// Redis still holds the leases for this instance (as when the
	// renewal was merely late); the local deadline passes.
	for p := range 2 {
		if err := rdb.PExpire(ctx, m.PartitionLease(p).Key, 10*ttl).Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(ttl + 50*time.Millisecond)
	if _, ok := o.Holder(0); ok {
		t.Fatal("Holder after the local deadline: still held")
	}
	if err := o.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 || events[0] != "lose" || events[3] != "gain" {
		t.Errorf("a late renewal: %v, want each partition lost and gained again", events)
	}
	if _, ok := o.Holder(0); !ok {
		t.Error("not held after the late renewal")
	}
}
