package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regbridge/regbridge/bridge"
)

// TestObserverHotPathAllocs: measuring a NOTIFY or a change allocates
// nothing for the transports and events the notifier uses.
func TestObserverHotPathAllocs(t *testing.T) {
	m := New(Inputs{Transports: []string{"udp", "tcp"}})
	seen := time.Now()
	ch := bridge.Change{Contacts: []bridge.ContactView{{Event: bridge.EventRefreshed}}}
	tests := []struct {
		name string
		f    func()
	}{
		{name: "NOTIFY ok", f: func() { m.NotifyDone("UDP", "ok", time.Millisecond, seen) }},
		{name: "NOTIFY timeout", f: func() { m.NotifyDone("TCP", "timeout", time.Second, time.Time{}) }},
		{name: "SUBSCRIBE 200", f: func() { m.SubscribeAnswered(200) }},
		{name: "contact event", f: func() { m.Publish(ch) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.f); n != 0 {
				t.Errorf("%v allocations per call", n)
			}
		})
	}
}

// TestEventSeries: every contact event of the bridge's list has its
// series from the start, at 0, so a dashboard sees a rate of 0 rather
// than no data.
func TestEventSeries(t *testing.T) {
	m := New(Inputs{})
	ch := make(chan prometheus.Metric, 2*len(bridge.Events))
	m.events.Collect(ch)
	close(ch)
	if n := len(ch); n != len(bridge.Events) {
		t.Errorf("%d regbridge_contact_events_total series, want %d", n, len(bridge.Events))
	}
	for i, ev := range bridge.Events {
		if m.eventsHot[i] == nil {
			t.Errorf("no series for %s", ev)
		}
	}
}
