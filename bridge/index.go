package bridge

import "hash/maphash"

// keyIndex finds bindings by store key and registrations by canonical
// AOR: open addressing with linear probing over pointers, about 13 bytes
// per entry where a map[string]*binding keeps about 40 (issue: a million
// contacts in well under 1 GiB). The key is the entry's own.
type keyIndex[P keyed] struct {
	seed  maphash.Seed
	slots []P // len is a power of two, or 0
	n     int
}

// keyed is what a keyIndex holds: a pointer that knows its key.
type keyed interface {
	comparable
	indexKey() string
}

func (bd *binding) indexKey() string { return bd.key }
func (a *aorState) indexKey() string { return a.key() }

const minIndexSlots = 64

func (x *keyIndex[P]) home(key string) int {
	return int(maphash.String(x.seed, key) & uint64(len(x.slots)-1))
}

// get returns the entry with key, or nil.
func (x *keyIndex[P]) get(key string) P {
	var none P
	if x.n == 0 {
		return none
	}
	mask := len(x.slots) - 1
	for s := x.home(key); x.slots[s] != none; s = (s + 1) & mask {
		if x.slots[s].indexKey() == key {
			return x.slots[s]
		}
	}
	return none
}

// put adds e, whose key is not indexed.
func (x *keyIndex[P]) put(e P) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.resize(max(2*len(x.slots), minIndexSlots))
	}
	x.place(e)
	x.n++
}

func (x *keyIndex[P]) place(e P) { x.slots[x.slotOf(e)] = e }

// slotOf is the slot of e's probe run that holds e, or the empty slot
// that ends the run when e is not indexed.
func (x *keyIndex[P]) slotOf(e P) int {
	var none P
	mask := len(x.slots) - 1
	s := x.home(e.indexKey())
	for x.slots[s] != none && x.slots[s] != e {
		s = (s + 1) & mask
	}
	return s
}

// del removes e (indexed).
func (x *keyIndex[P]) del(e P) {
	var none P
	mask := len(x.slots) - 1
	s := x.slotOf(e)
	// Backward-shift deletion: move later members of the probe run into
	// the hole when their home slot does not lie in (hole, j].
	for j := (s + 1) & mask; x.slots[j] != none; j = (j + 1) & mask {
		h := x.home(x.slots[j].indexKey())
		if (j > s && (h <= s || h > j)) || (j < s && h <= s && h > j) {
			x.slots[s] = x.slots[j]
			s = j
		}
	}
	x.slots[s] = none
	x.n--
	if len(x.slots) > minIndexSlots && x.n*8 < len(x.slots) {
		x.resize(len(x.slots) / 2) // give memory back after mass removal
	}
}

func (x *keyIndex[P]) resize(size int) {
	var none P
	old := x.slots
	if x.slots == nil {
		x.seed = maphash.MakeSeed()
	}
	x.slots = make([]P, size)
	for _, e := range old {
		if e != none {
			x.place(e)
		}
	}
}

// each calls fn for every entry; fn must not change the index.
func (x *keyIndex[P]) each(fn func(e P)) {
	var none P
	for _, e := range x.slots {
		if e != none {
			fn(e)
		}
	}
}
