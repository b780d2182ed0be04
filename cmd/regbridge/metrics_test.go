package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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

	scrape := func() string { return scrapeMetrics(t, s) }
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

// TestMetricsHygiene: with one UDP listener /metrics has no series for
// other transports; regbridge_source_lag_seconds counts only rows whose
// last_modified moved; regbridge_source_info names scheme and mode.
func TestMetricsHygiene(t *testing.T) {
	s := startServer(t, "", map[string]string{"REGBRIDGE_SIP_LISTEN": fmt.Sprintf("udp://127.0.0.1:%d", freePort(t))})
	scrape := func() string { return scrapeMetrics(t, s) }
	body := scrape()
	t.Logf("/metrics with one UDP listener: %d lines", strings.Count(body, "\n"))
	for _, tr := range []string{"tcp", "tls", "ws", "wss"} {
		if strings.Contains(body, `transport="`+tr+`"`) {
			t.Errorf("series for %s, which nothing listens on", tr)
		}
	}
	for _, want := range []string{
		`regbridge_notifies_sent_total{transport="udp"} 0`,
		`regbridge_source_info{mode="poll",scheme="kamailio+sqlite"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}

	s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10", time.Now().Add(time.Hour), "c1", 1)
	siptest.Eventually(t, func() bool {
		return strings.Contains(scrape(), "regbridge_source_lag_seconds_count 1\n")
	}, "lag of the new row")
	// An operator tool extends the expiry without touching last_modified:
	// an event (refreshed), but no registrar write to measure.
	s.exec(t, `UPDATE location SET expires = expires + 1 WHERE ruid = 'uloc-1'`)
	siptest.Eventually(t, func() bool {
		return strings.Contains(scrape(), `regbridge_contact_events_total{event="refreshed"} 1`)
	}, "the refreshed event")
	// A REGISTER refresh writes last_modified: measured.
	s.exec(t, `UPDATE location SET expires = expires + 1, cseq = 2, last_modified = last_modified + 0.00001 WHERE ruid = 'uloc-1'`)
	siptest.Eventually(t, func() bool {
		return strings.Contains(scrape(), `regbridge_contact_events_total{event="refreshed"} 2`)
	}, "the second refreshed event")
	if body := scrape(); !strings.Contains(body, "regbridge_source_lag_seconds_count 2\n") {
		t.Errorf("lag counted %q, want 2 (the new row and the REGISTER refresh only)", grepLine(body, "regbridge_source_lag_seconds_count"))
	}
}

func grepLine(body, prefix string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// scrapeMetrics reads /metrics of a running instance.
func scrapeMetrics(t *testing.T, s *server) string {
	t.Helper()
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
