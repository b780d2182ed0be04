package sqlwatch

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// The key index agrees with a map through inserts, swap-removes and
// rebuilds, including the probe runs that backward-shift deletion moves.
func TestKeyIndexAgreesWithMap(t *testing.T) {
	var st snapshotState
	st.init(-1)
	want := map[string]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		k := "k" + strconv.Itoa(r.IntN(3000))
		switch i, ok := st.lookupString(k); {
		case ok && r.IntN(2) == 0:
			st.remove(i)
			delete(want, k)
		case !ok:
			st.rows = append(st.rows, rowState{key: k, sum: 1})
			st.indexAdd(int32(len(st.rows) - 1))
			want[k] = true
		}
		if step%997 == 0 {
			st.reindex(len(st.index.slots))
		}
	}
	if len(st.rows) != len(want) || st.index.n != len(want) {
		t.Fatalf("%d rows, %d indexed, want %d", len(st.rows), st.index.n, len(want))
	}
	for i := range 3000 {
		k := "k" + strconv.Itoa(i)
		j, ok := st.lookupString(k)
		if ok != want[k] || (ok && st.rows[j].key != k) {
			t.Fatalf("lookup %s = %d, %v; want present=%v", k, j, ok, want[k])
		}
	}
}

// Marks of a verifying reconcile follow rows through swap-removes: a row
// keeps its mark, whatever position it moves to.
func TestSeenMarksFollowRows(t *testing.T) {
	var st snapshotState
	st.init(-1)
	seen := map[string]bool{}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		k := "k" + strconv.Itoa(i)
		st.rows = append(st.rows, rowState{key: k, sum: 1})
		st.indexAdd(int32(i))
		if r.IntN(2) == 0 {
			st.markSeen(int32(i))
			seen[k] = true
		}
	}
	for range 200 {
		i := int32(r.IntN(len(st.rows)))
		delete(seen, st.rows[i].key)
		st.remove(i)
	}
	for i := range int32(len(st.rows)) {
		if got := st.isSeen(i); got != seen[st.rows[i].key] {
			t.Fatalf("row %s at %d: seen %v, want %v", st.rows[i].key, i, got, !got)
		}
	}
	for i := int32(len(st.rows)); i < 300; i++ {
		if st.isSeen(i) {
			t.Fatalf("position %d past the rows is still marked", i)
		}
	}
}
