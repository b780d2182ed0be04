package sqlwatch

import (
	"hash/maphash"
	"unsafe"
)

// keyIndex finds a row of snapshotState by the text of its key column:
// open addressing with linear probing over positions in rows. It keeps
// about 8 bytes per row where a map[string]int32 keeps about 50, and no
// key of its own (it compares with the rows' keys).
type keyIndex struct {
	slots []int32 // position in rows plus one; 0 is empty
	n     int
}

const minIndexSlots = 64

func (st *snapshotState) home(key []byte) int {
	return int(maphash.Bytes(st.seed, key) & uint64(len(st.index.slots)-1))
}

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// rawOf is the key column's text of rows[i].
func (st *snapshotState) rawOf(i int32) string { return st.raw(st.rows[i].key) }

// lookup returns the position of the row whose key column reads key.
func (st *snapshotState) lookup(key []byte) (int32, bool) {
	x := &st.index
	if x.n == 0 {
		return 0, false
	}
	mask := len(x.slots) - 1
	for s := st.home(key); ; s = (s + 1) & mask {
		v := x.slots[s]
		if v == 0 {
			return 0, false
		}
		if st.rawOf(v-1) == string(key) {
			return v - 1, true
		}
	}
}

// lookupString is lookup of a string.
func (st *snapshotState) lookupString(key string) (int32, bool) { return st.lookup(bytesOf(key)) }

// indexAdd indexes rows[i], which is in rows already.
func (st *snapshotState) indexAdd(i int32) {
	x := &st.index
	if (x.n+1)*4 > len(x.slots)*3 {
		st.reindex(max(2*len(x.slots), minIndexSlots)) // indexes rows[i] too
		return
	}
	st.place(i)
}

// place puts position i into the first free slot of its probe sequence.
func (st *snapshotState) place(i int32) {
	x := &st.index
	mask := len(x.slots) - 1
	s := st.home(bytesOf(st.rawOf(i)))
	for x.slots[s] != 0 {
		s = (s + 1) & mask
	}
	x.slots[s] = i + 1
	x.n++
}

// slotOf is the slot holding position i.
func (st *snapshotState) slotOf(i int32) int {
	x := &st.index
	mask := len(x.slots) - 1
	s := st.home(bytesOf(st.rawOf(i)))
	for x.slots[s] != i+1 {
		s = (s + 1) & mask
	}
	return s
}

// indexDel removes position i (rows[i] still holds its row).
func (st *snapshotState) indexDel(i int32) {
	x := &st.index
	mask := len(x.slots) - 1
	s := st.slotOf(i)
	// Backward-shift deletion: move later members of the probe run into
	// the hole when their home slot does not lie in (hole, j].
	for j := (s + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		h := st.home(bytesOf(st.rawOf(x.slots[j] - 1)))
		if (j > s && (h <= s || h > j)) || (j < s && h <= s && h > j) {
			x.slots[s] = x.slots[j]
			s = j
		}
	}
	x.slots[s] = 0
	x.n--
}

// indexMove records that the row at position from is now at position to
// (rows[to] holds it already).
func (st *snapshotState) indexMove(from, to int32) {
	x := &st.index
	mask := len(x.slots) - 1
	s := st.home(bytesOf(st.rawOf(to)))
	for x.slots[s] != from+1 {
		s = (s + 1) & mask
	}
	x.slots[s] = to + 1
}

// reindex rebuilds the index over all rows with size slots (a power of
// two), smaller when size is more than rows need.
func (st *snapshotState) reindex(size int) {
	need := minIndexSlots
	for need*3 < len(st.rows)*4+4 {
		need *= 2
	}
	size = max(size, need)
	if size > 4*need {
		size = need
	}
	x := &st.index
	if len(x.slots) == size {
		clear(x.slots)
	} else {
		x.slots = make([]int32, size)
	}
	x.n = 0
	for i := range int32(len(st.rows)) {
		st.place(i)
	}
}
