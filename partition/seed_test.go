package partition_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/source"
)

// TestSeed: a reader that seeds some partitions and dies leaves them
// whole; the next one seeds the rest and leaves the seeded ones, and a
// partition with stream history, as they are. An older reader is
// refused.
func TestSeed(t *testing.T) {
	rdb, prefix := localRedis(t)
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 8)
	s := partition.NewStreams(rdb, m, 0)
	var old []source.Contact
	for i := range 40 {
		old = append(old, source.Contact{Key: fmt.Sprintf("k%d", i), AOR: fmt.Sprintf("sip:u%d@example.com", i), URI: fmt.Sprintf("sip:u%d@192.0.2.1", i), Q: -1})
	}
	perP := map[int]int{}
	for _, c := range old {
		perP[m.Of(bridge.CanonicalAOR(c.AOR))]++
	}

	if err := s.Stamp(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Partition 7 already has history: a change appended by reader 1.
	if _, err := s.Append(ctx, 1, []partition.Change{{P: 7, Key: "x", Data: `{"Key":"x"}`}}); err != nil {
		t.Fatal(err)
	}
	// Reader 1 seeds partitions 0 to 2, then dies.
	if n, err := s.Seed(ctx, 1, []int{0, 1, 2}, old); err != nil || n != 3 {
		t.Fatalf("first seed: %d partitions, %v; want 3", n, err)
	}
	un, err := s.Unseeded(ctx)
	if err != nil || fmt.Sprint(un) != "[3 4 5 6]" {
		t.Fatalf("unseeded %v (%v), want [3 4 5 6]", un, err)
	}
	// Reader 2 takes over and seeds what is left; reader 1 is refused.
	if err := s.Stamp(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seed(ctx, 1, un, old); !errors.Is(err, partition.ErrFenced) {
		t.Fatalf("seed by an older reader: %v, want ErrFenced", err)
	}
	if n, err := s.Seed(ctx, 2, []int{0, 1, 2, 3, 4, 5, 6, 7}, old); err != nil || n != 4 {
		t.Fatalf("second seed: %d partitions, %v; want 4", n, err)
	}
	if un, err := s.Unseeded(ctx); err != nil || len(un) != 0 {
		t.Fatalf("unseeded %v (%v), want none", un, err)
	}
	_, base, err := s.OpenReader(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 7 {
		if len(base[p].State) != perP[p] || base[p].Seq != 0 {
			t.Errorf("partition %d: %d contacts at sequence %d, want %d at 0 (no stream entry)", p, len(base[p].State), base[p].Seq, perP[p])
		}
	}
	if len(base[7].State) != 1 || base[7].Seq != 1 {
		t.Errorf("partition 7 (with history): %v, want its one appended contact", base[7])
	}
}
