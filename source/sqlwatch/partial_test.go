package sqlwatch

import (
	"testing"
	"time"
)

func TestSinceCond(t *testing.T) {
	lit := func(w string, s int64) string { return "T(" + w + ")-" + string(rune('0'+s)) }
	for _, tt := range []struct {
		name string
		v    Value
		want string
		ok   bool
	}{
		{"epoch int", Value{Kind: Int, Int: 1000}, "c >= 998", true},
		{"epoch text", Value{Kind: Text, Bytes: []byte("1000")}, "c >= 998", true},
		{"wall clock", Value{Kind: Text, Bytes: []byte("2026-11-22 10:30:15")}, "c >= T(2026-11-22 10:30:15)-2", true},
		{"fraction", Value{Kind: Text, Bytes: []byte("2026-11-22 10:30:15.25")}, "c >= T(2026-11-22 10:30:15.25)-2", true},
		{"injection", Value{Kind: Text, Bytes: []byte("2026-11-22 10:30:15' OR 1=1")}, "", false},
		{"float", Value{Kind: Float, Float: 2.5}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sinceCond("c", &tt.v, 2*time.Second, lit)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSafeKeyAndInKeys(t *testing.T) {
	for k, want := range map[string]bool{"uloc-5f3a-1": true, "1234567890": true, "": false, "a'b": false, `a\b`: false, "a b": false} {
		if SafeKey(k) != want {
			t.Errorf("SafeKey(%q) = %v", k, !want)
		}
	}
	if got := InKeys(`"ruid"`, []string{"a", "b"}); got != `"ruid" IN ('a','b')` {
		t.Errorf("InKeys = %s", got)
	}
}

func TestLaterValueAndAggregate(t *testing.T) {
	a, b := Value{Kind: Text, Bytes: []byte("1000")}, Value{Kind: Text, Bytes: []byte("999")}
	if !laterValue(&a, &b) || laterValue(&b, &a) {
		t.Error("numeric text must compare as numbers")
	}
	if n, s, err := aggregate("5,-123,", nil); n != 5 || s != -123 || err != nil {
		t.Errorf("aggregate = %d, %d, %v", n, s, err)
	}
	if _, _, err := aggregate("x,", nil); err == nil {
		t.Error("bad fingerprint accepted")
	}
}
