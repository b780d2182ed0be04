package partition

import (
	"fmt"
	"testing"
)

func TestSlot(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		want      int
	}{
		{"plain key", "foo", 12182},
		{"check value of CRC-16/XMODEM", "123456789", 0x31C3},
		{"hash tag", "{user1000}.following", Slot("user1000")},
		{"empty tag hashes the whole key", "foo{}{bar}", int(crc16("foo{}{bar}") % Slots)},
		{"first tag only", "foo{{bar}}zap", Slot("{bar")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Slot(tc.key); got != tc.want {
				t.Errorf("Slot(%q) = %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}

func TestMapTagsSpreadOverSlots(t *testing.T) {
	for _, n := range []int{1, 3, 256, 1024} {
		m, err := NewMap("regbridge", n)
		if err != nil {
			t.Fatal(err)
		}
		for p := range n {
			k := m.Key(p, "state")
			if s := Slot(k); s*n/Slots != p {
				t.Fatalf("n=%d: partition %d's key %s is in slot %d, outside its slice", n, p, k, s)
			}
			if Slot(m.Key(p, "owner")) != Slot(k) {
				t.Fatalf("n=%d: partition %d's keys are in different slots", n, p)
			}
		}
	}
	if _, err := NewMap("x", 0); err == nil {
		t.Error("a count of 0 was accepted")
	}
	if _, err := NewMap("x", MaxCount+1); err == nil {
		t.Error("a count past MaxCount was accepted")
	}
}

func TestMapOfIsStableAndEven(t *testing.T) {
	m, _ := NewMap("regbridge", 256)
	if a, b := m.Of("sip:alice@example.com"), m.Of("sip:alice@example.com"); a != b {
		t.Fatal("the same AOR went to two partitions")
	}
	// A fixed value: the partition of an AOR must never change across
	// releases, or an upgrade would move every subscription.
	if got := m.Of("sip:alice@example.com"); got != 160 {
		t.Errorf("Of(sip:alice@example.com) = %d, want 160 (the hash must stay stable)", got)
	}
	count := make([]int, 256)
	const aors = 256 * 400
	for i := range aors {
		count[m.Of(fmt.Sprintf("sip:user%d@example.com", i))]++
	}
	for p, c := range count {
		if c < 300 || c > 500 {
			t.Errorf("partition %d got %d of %d AORs (want about 400)", p, c, aors)
		}
	}
}

func TestAssign(t *testing.T) {
	const n = 256
	three := []string{"a", "b", "c"}
	before := Assign(n, three)
	share := map[string]int{}
	for _, o := range before {
		share[o]++
	}
	for _, m := range three {
		if share[m] < n/3 || share[m] > n/3+1 {
			t.Errorf("%s got %d partitions, want %d or %d", m, share[m], n/3, n/3+1)
		}
	}
	after := Assign(n, []string{"a", "b", "c", "d"})
	moved, shuffled := 0, 0
	for p := range n {
		if before[p] != after[p] {
			moved++
			if after[p] != "d" {
				shuffled++ // bounded shares shift a few among the old members
			}
		}
	}
	if shuffled > n/16 {
		t.Errorf("a join moved %d partitions between members that stayed", shuffled)
	}
	// A fourth member should take about a quarter; allow some churn from
	// the bounded shares, but far from reshuffling everything.
	if moved < n/4 || moved > n/2 {
		t.Errorf("a join moved %d of %d partitions, want about %d", moved, n, n/4)
	}
	if got := Assign(n, nil); got[0] != "" {
		t.Error("no members, yet an owner")
	}
}

func TestDiff(t *testing.T) {
	from := map[string]string{"k1": "a", "k2": "b", "k3": "c"}
	want := map[string]string{"k1": "a", "k2": "B", "k4": "d"}
	got := map[string]string{}
	for _, c := range Diff(7, from, want) {
		if c.P != 7 {
			t.Errorf("change of partition %d", c.P)
		}
		got[c.Key] = c.Data
	}
	exp := map[string]string{"k2": "B", "k3": "", "k4": "d"}
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Errorf("Diff = %v, want %v", got, exp)
	}
}
