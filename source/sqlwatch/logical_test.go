package sqlwatch

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// The slot's age is that of the oldest WAL position sample it has not
// confirmed; caught up is 0.
func TestLagTracker(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var l lagTracker
	for _, c := range []struct {
		name               string
		at                 time.Duration
		current, confirmed int64
		want               time.Duration
	}{
		{"caught up", 0, 1000, 1000, 0},
		{"behind since the last sample", 2 * time.Second, 2000, 1000, 0},
		{"still behind", 4 * time.Second, 3000, 1000, 2 * time.Second},
		{"confirmed up to the second sample", 6 * time.Second, 4000, 2000, 2 * time.Second},
		{"caught up again", 8 * time.Second, 5000, 5000, 0},
	} {
		if got := l.observe(t0.Add(c.at), c.current, c.confirmed); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	for range 2 * slotLagSamples {
		l.observe(t0, 1, 1)
	}
	if len(l.at) != slotLagSamples || len(l.pos) != slotLagSamples {
		t.Errorf("history holds %d samples, want at most %d", len(l.at), slotLagSamples)
	}
}

// Passing slot_lag_warn is logged once, and so is falling back below it;
// SlotLag reports the last measurement.
func TestSlotLagWarn(t *testing.T) {
	var buf bytes.Buffer
	w := &Watcher{cfg: Config{SlotLagWarn: 1 << 20}, log: slog.New(slog.NewTextHandler(&buf, nil))}
	if _, ok := w.SlotLag(); ok {
		t.Fatal("SlotLag known before any measurement")
	}
	slot := "s1"
	w.logical.slot.Store(&slot)
	now := time.Now()
	for i, behind := range []int64{10, 2 << 20, 3 << 20, 100, 50} {
		w.noteSlotLag(slot, now.Add(time.Duration(i)*time.Second), 100<<20+int64(i)<<20, behind)
	}
	log := buf.String()
	if strings.Count(log, "lag above slot_lag_warn") != 1 || strings.Count(log, "back below slot_lag_warn") != 1 {
		t.Errorf("want one warning and one recovery:\n%s", log)
	}
	if lag, ok := w.SlotLag(); !ok || lag.Slot != slot || lag.Bytes != 50 || lag.Seconds != 0 {
		t.Errorf("SlotLag() = %+v, %v", lag, ok)
	}
}

// A sink is the same only when it is the very same comparable value.
func TestSameSink(t *testing.T) {
	type ptrSink struct{ source.Sink }
	a, b := &ptrSink{}, &ptrSink{}
	f := funcSink(func() {})
	for _, c := range []struct {
		name string
		x, y source.Sink
		want bool
	}{
		{"same pointer", a, a, true},
		{"other pointer", a, b, false},
		{"nil", a, nil, false},
		{"not comparable", f, f, false},
	} {
		if got := sameSink(c.x, c.y); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

type funcSink func()

func (funcSink) Apply(_ context.Context, _ source.Batch) error { return nil }
