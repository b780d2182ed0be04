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
