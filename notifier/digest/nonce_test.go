package digest

import (
	"encoding/base64"
	"testing"
	"time"
)

func TestNonceVerify(t *testing.T) {
	n, err := newNonces(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	good := n.issue("example.com", now)
	flip := func(s string, i int) string {
		raw, _ := base64.RawURLEncoding.DecodeString(s)
		raw[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	tests := []struct {
		name  string
		nonce string
		realm string
		at    time.Time
		ok    bool
	}{
		{"fresh", good, "example.com", now, true},
		{"old but ours (age is judged by the caller)", good, "example.com", now.Add(time.Hour), true},
		{"another realm", good, "example.org", now, false},
		{"timestamp changed", flip(good, 7), "example.com", now, false},
		{"random part changed", flip(good, 9), "example.com", now, false},
		{"mac changed", flip(good, nonceRawLen-1), "example.com", now, false},
		{"truncated", good[:len(good)-1], "example.com", now, false},
		{"not base64", "!" + good[1:], "example.com", now, false},
		{"empty", "", "example.com", now, false},
		{"issued in the future beyond the skew", n.issue("example.com", now.Add(time.Minute)), "example.com", now, false},
		{"issued within the skew", n.issue("example.com", now.Add(nonceSkew)), "example.com", now, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issued, _, ok := n.verify(tt.nonce, tt.realm, tt.at)
			if ok != tt.ok {
				t.Fatalf("verify ok = %v, want %v", ok, tt.ok)
			}
			if ok && issued.After(tt.at.Add(nonceSkew)) {
				t.Errorf("issued %v after now %v", issued, tt.at)
			}
		})
	}
	if a, b := n.issue("example.com", now), n.issue("example.com", now); a == b {
		t.Errorf("two nonces in one second are equal: %s", a)
	}
}

func TestReplayWindow(t *testing.T) {
	tests := []struct {
		name string
		ncs  []uint32
		want []bool
	}{
		{"increasing", []uint32{1, 2, 3}, []bool{true, true, true}},
		{"repeat", []uint32{1, 1}, []bool{true, false}},
		{"gap then fill", []uint32{1, 5, 3, 4, 2, 3}, []bool{true, true, true, true, true, false}},
		{"jump beyond the window forgets the old counts", []uint32{1, 200, 1, 137, 136}, []bool{true, true, false, true, false}},
		{"max count", []uint32{0xffffffff, 0xffffffff, 0xfffffffe}, []bool{true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e replayEntry
			for i, nc := range tt.ncs {
				if got := e.use(nc); got != tt.want[i] {
					t.Fatalf("use(%d) #%d = %v, want %v", nc, i, got, tt.want[i])
				}
			}
		})
	}
}

func TestReplayTableBounded(t *testing.T) {
	const capacity, ttl = 1024, 300 * time.Second
	tab := newReplayTable(capacity, ttl)
	now := time.Unix(1_800_000_000, 0)
	id := func(i int) nonceID {
		var x nonceID
		x[0], x[1], x[2] = byte(i), byte(i>>8), byte(i>>16)
		return x
	}
	// Nonces issued one second apart, used once each: the table keeps
	// the most recent capacity of them.
	for i := range 3 * capacity {
		issued := now.Add(time.Duration(i) * time.Second / 100)
		if !tab.accept(id(i), issued, 1, issued) {
			t.Fatalf("fresh nonce %d refused", i)
		}
	}
	if n := tab.len(); n > capacity {
		t.Fatalf("table holds %d entries, cap %d", n, capacity)
	}
	last := now.Add(time.Duration(3*capacity-1) * time.Second / 100)
	// A nonce pushed out cannot be replayed: its issue time is at or
	// below the floor, so it is refused rather than taken as new.
	if tab.accept(id(0), now, 1, last) {
		t.Errorf("evicted nonce replayed")
	}
	// A nonce still held keeps its own window.
	if tab.accept(id(3*capacity-1), last, 1, last) {
		t.Errorf("held nonce replayed")
	}
	if !tab.accept(id(3*capacity-1), last, 2, last) {
		t.Errorf("held nonce refused its next count")
	}
	// Expired entries go without raising the floor: after the TTL the
	// table empties on the next insert and new nonces are welcome.
	later := last.Add(2 * ttl)
	floor := tab.floor
	if !tab.accept(id(9_999_999), later, 1, later) {
		t.Errorf("fresh nonce after expiry refused")
	}
	if tab.floor != floor {
		t.Errorf("floor moved from %d to %d when only expired entries went", floor, tab.floor)
	}
	if n := tab.len(); n != 1 {
		t.Errorf("table holds %d entries after all others expired, want 1", n)
	}
}
