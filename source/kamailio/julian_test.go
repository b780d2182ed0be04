package kamailio

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestJulianRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	epochs := []int64{
		1, 10, // permanent neighbours; 10 is usrloc's "un-registered" marker
		-1, -86400, minUnix, maxUnix, lo, hi,
		1<<31 - 1, 1 << 31, 1 << 32,
		1700000003, // truncation would give ...002 (see below)
	}
	for range 100_000 {
		epochs = append(epochs, lo+rng.Int64N(hi-lo))
	}
	truncWrong := 0
	for _, sec := range epochs {
		want := time.Unix(sec, 0).UTC()
		v := TimeToJulian(want)
		if got := JulianToTime(v); !got.Equal(want) {
			t.Fatalf("JulianToTime(TimeToJulian(%d)) = %v (%d), want %v", sec, got, got.Unix(), want)
		}
		if got, ok := storedTime(v); !ok || !got.Equal(want) {
			t.Fatalf("storedTime(%v) = %v, %v; want %v", v, got, ok, want)
		}
		if int64(86400*(v-unixEpochJulian)+0.5) != sec {
			truncWrong++
		}
	}
	// The pitfall is real: truncation is wrong for a large share.
	if truncWrong < len(epochs)/5 {
		t.Errorf("truncating was wrong for only %d of %d epochs; the sample does not show the pitfall", truncWrong, len(epochs))
	}
	t.Logf("truncating instead of rounding is off by one for %d of %d epochs", truncWrong, len(epochs))
}

func TestJulianEdges(t *testing.T) {
	tests := []struct {
		name string
		v    float64
		want time.Time
	}{
		{"permanent (epoch 0 as db_sqlite writes it)", TimeToJulian(time.Unix(0, 0)), time.Time{}},
		{"zero Time encodes as permanent", TimeToJulian(time.Time{}), time.Time{}},
		{"unregistered marker epoch 10", TimeToJulian(time.Unix(10, 0)), time.Unix(10, 0).UTC()},
		// Value Kamailio writes for 1700000003: 86400*(v-2440587.5)+0.5
		// is 1700000002.999999, so truncation gives ...002.
		{"truncation pitfall", 2460263.4259548611, time.Unix(1700000003, 0).UTC()},
		{"NaN", math.NaN(), time.Time{}},
		{"+Inf", math.Inf(1), time.Time{}},
		{"-Inf", math.Inf(-1), time.Time{}},
		{"Julian day 0 (4713 BC)", 0, time.Time{}},
		{"year 10000", 5373484.5 + 1, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := JulianToTime(tt.v); !got.Equal(tt.want) {
				t.Errorf("JulianToTime(%v) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
	v := 2460263.4259548611 // a float64 variable: constant arithmetic would be exact
	if trunc := int64(86400*(v-unixEpochJulian) + 0.5); trunc != 1700000002 {
		t.Errorf("pitfall example: truncation gives %d, expected the off-by-one 1700000002", trunc)
	}
}

// An INTEGER Julian day comes from a tool storing a true Julian day (SQLite's
// own julianday()), not from db_sqlite; it must decode to the exact instant.
func TestExactJulian(t *testing.T) {
	tests := []struct {
		name string
		v    int64
		want time.Time
		ok   bool
	}{
		{"noon 2024-01-01", 2460311, time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC), true},
		{"first valid", 1721426, time.Date(1, 1, 1, 12, 0, 0, 0, time.UTC), true},
		{"last valid", 5373484, time.Date(9999, 12, 31, 12, 0, 0, 0, time.UTC), true},
		{"before year 1", 1721425, time.Time{}, false},
		{"after year 9999", 5373485, time.Time{}, false},
		{"zero", 0, time.Time{}, false},
		{"negative", -5, time.Time{}, false},
		{"huge", math.MaxInt64, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := storedTime(tt.v)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("storedTime(int64 %d) = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.ok)
			}
		})
	}
}
