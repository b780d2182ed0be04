package bridge

import (
	"log/slog"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// The key index agrees with a map through puts, deletes (backward
// shifts) and resizes both ways.
func TestKeyIndexAgreesWithMap(t *testing.T) {
	var x keyIndex[*binding]
	want := map[string]*binding{}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 40000 {
		n := 3000
		if step > 30000 {
			n = 60 // delete most keys: the table shrinks
		}
		k := "k" + strconv.Itoa(r.IntN(n))
		if step > 30000 && r.IntN(2) == 0 {
			for k = range want {
				break
			}
		}
		bd := x.get(k)
		if bd != want[k] {
			t.Fatalf("step %d: get %s = %p, want %p", step, k, bd, want[k])
		}
		switch {
		case bd != nil && (step > 30000 || r.IntN(2) == 0):
			x.del(bd)
			delete(want, k)
		case bd == nil && step <= 30000:
			bd = &binding{key: k}
			x.put(bd)
			want[k] = bd
		}
	}
	count := 0
	x.each(func(bd *binding) {
		count++
		if want[bd.key] != bd {
			t.Errorf("each yields %s, not indexed", bd.key)
		}
	})
	if count != len(want) || x.n != len(want) || len(x.slots) > 4*minIndexSlots {
		t.Errorf("each yields %d, n %d, want %d; %d slots", count, x.n, len(want), len(x.slots))
	}
}

// The expiry heap pops in order of at.
func TestExpiryHeapOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h expiryHeap
	for range 1000 {
		h.push(expiryItem{at: r.Int64N(500)})
	}
	h = append(h, expiryItem{at: 7}, expiryItem{at: -3})
	h.init()
	last := int64(-1 << 63)
	for len(h) > 0 {
		it := h.pop()
		if it.at < last {
			t.Fatalf("popped %d after %d", it.at, last)
		}
		last = it.at
	}
}

// Bindings whose store writes one AOR differently share a registration,
// and each keeps its own text, also once the first one is gone.
func TestAORTextsPerBinding(t *testing.T) {
	b := New(slog.New(slog.DiscardHandler))
	c1 := source.Contact{Key: "k1", AOR: "sip:alice@EXAMPLE.com", URI: "sip:a@192.0.2.1", Expires: t0.Add(time.Hour), Q: -1, CallID: "c1", CSeq: 1}
	c2 := source.Contact{Key: "k2", AOR: "sip:alice@example.com;x=1", URI: "sip:a@192.0.2.2", Expires: t0.Add(time.Hour), Q: -1, CallID: "c2", CSeq: 1}
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{c1, c2}}, t0)
	reg, _ := b.Lookup("sip:alice@example.com")
	if aors := b.Stats().AORs; aors != 1 || len(reg.Contacts) != 2 || reg.Contacts[0].AOR != c1.AOR || reg.Contacts[1].AOR != c2.AOR {
		t.Fatalf("registration %+v (%d AORs)", reg, aors)
	}
	b.apply(source.Batch{Deleted: []string{"k1"}}, t0)
	b.apply(source.Batch{Full: true, Contacts: []source.Contact{c2}}, t0) // unchanged: no event, same text
	reg, _ = b.Lookup("SIP:alice@Example.com")
	if len(reg.Contacts) != 1 || reg.Contacts[0].AOR != c2.AOR || reg.Contacts[0].Contact != c2 {
		t.Fatalf("after the first binding left: %+v", reg)
	}
}
