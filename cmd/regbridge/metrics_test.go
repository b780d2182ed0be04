package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestMetricsEndpoint scrapes /metrics of a running regbridge after a
// subscription and a registration.
func TestMetricsEndpoint(t *testing.T) {
	s := startServer(t, "", nil)
	p := siptest.New(t, "udp", s.sip)
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	p.Next()
	s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10", time.Now().Add(time.Hour), "c1", 1)
	p.Next()

	scrape := func() string {
		res, err := http.Get("http://" + s.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("/metrics: %d", res.StatusCode)
		}
		return string(b)
	}
	want := []string{
		`regbridge_build_info{goversion="go`,
		`regbridge_subscribe_responses_total{code="200"} 1`,
		`regbridge_notifies_sent_total{transport="udp"} 2`,
		`regbridge_notifies_failed_total{reason="timeout",transport="udp"} 0`,
		`regbridge_notify_duration_seconds_count{transport="udp"} 2`,
		`regbridge_change_to_notify_seconds_count 1`,
		`regbridge_contact_events_total{event="registered"} 1`,
		`regbridge_source_lag_seconds_count 1`,
		`regbridge_aors 1`,
		`regbridge_contacts 1`,
		`regbridge_ready 1`,
		`regbridge_subscriptions{package="reg",transport="udp"} 1`,
		`regbridge_subscriptions_removed_total 0`,
		`regbridge_sip_server_transactions 1`,
		`regbridge_subscribe_overload_total 0`,
		`regbridge_notifies_too_large_total{outcome="ended"} 0`,
		`regbridge_notifies_too_large_total{outcome="udp_fallback"} 0`,
		`regbridge_panics_total{where="sip_handler"} 0`,
		`regbridge_source_up 1`,
		`regbridge_source_polls_total `,
		`regbridge_source_rows_skipped_total 0`,
		`regbridge_sse_clients 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	}
	var body string
	siptest.Eventually(t, func() bool {
		body = scrape()
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}, "every metric")
	if t.Failed() {
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("missing %q", w)
			}
		}
	}
}

// TestObserverHotPathAllocs: measuring a NOTIFY or a change allocates
// nothing for the transports and events the notifier uses.
func TestObserverHotPathAllocs(t *testing.T) {
	m := newMetrics(metricInputs{}).(*promMetrics)
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
