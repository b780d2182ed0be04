package main

import (
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

// Label values the hot path resolves ahead of time, so that observing a
// NOTIFY is an index and an atomic add, without a map lookup.
var (
	metricTransports = [...]string{"udp", "tcp", "tls", "ws", "wss"}
	notifyFailures   = [...]string{"1xx", "3xx", "4xx", "5xx", "6xx", "timeout", "transport"}
	subscribeCodes   = [...]int{200, 202, 400, 403, 404, 406, 423, 481, 489, 500, 503}
	contactEvents    = [...]bridge.Event{
		bridge.EventRegistered, bridge.EventCreated, bridge.EventRefreshed, bridge.EventShortened, bridge.EventExpired,
		bridge.EventDeactivated, bridge.EventProbation, bridge.EventUnregistered, bridge.EventRejected,
	}
)

// Histogram buckets, in seconds.
var (
	// rttBuckets span a loopback answer to SIP Timer F (32 s).
	rttBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 32}
	// latencyBuckets span an in-process hop to a subscriber that answers
	// after retransmissions.
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

type promMetrics struct {
	reg *prometheus.Registry

	subscribes   *prometheus.CounterVec
	subscribeHot [len(subscribeCodes)]prometheus.Counter
	sent         *prometheus.CounterVec
	sentHot      [len(metricTransports)]prometheus.Counter
	failed       *prometheus.CounterVec
	failedHot    [len(metricTransports)][len(notifyFailures)]prometheus.Counter
	rtt          *prometheus.HistogramVec
	rttHot       [len(metricTransports)]prometheus.Observer
	latency      prometheus.Histogram
	sourceLag    prometheus.Histogram
	events       *prometheus.CounterVec
	eventsHot    [len(contactEvents)]prometheus.Counter
}

// newMetrics registers every regbridge metric, the Go runtime's and the
// process's in a registry of its own.
func newMetrics(in metricInputs) metricsSink {
	m := &promMetrics{reg: prometheus.NewRegistry()}
	m.subscribes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regbridge_subscribe_responses_total",
		Help: "Final responses to SUBSCRIBE, by status code.",
	}, []string{"code"})
	m.sent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regbridge_notifies_sent_total",
		Help: "NOTIFY requests answered with 2xx, by transport.",
	}, []string{"transport"})
	m.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regbridge_notifies_failed_total",
		Help: "NOTIFY requests that failed, by transport and reason (status class, timeout or transport).",
	}, []string{"transport", "reason"})
	m.rtt = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "regbridge_notify_duration_seconds",
		Help:    "NOTIFY transaction round-trip time, from sending to the final response or failure.",
		Buckets: rttBuckets,
	}, []string{"transport"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "regbridge_change_to_notify_seconds",
		Help:    "Time from the source seeing a contact change to the subscriber's 2xx for the NOTIFY carrying it.",
		Buckets: latencyBuckets,
	})
	m.sourceLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "regbridge_source_lag_seconds",
		Help:    "Time from the registrar writing a binding (its last_modified, where the store keeps one) to regbridge seeing the change.",
		Buckets: latencyBuckets,
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regbridge_contact_events_total",
		Help: "RFC 3680 contact events the bridge produced, by event.",
	}, []string{"event"})
	for i, code := range subscribeCodes {
		m.subscribeHot[i] = m.subscribes.WithLabelValues(strconv.Itoa(code))
	}
	for i, tr := range metricTransports {
		m.sentHot[i] = m.sent.WithLabelValues(tr)
		m.rttHot[i] = m.rtt.WithLabelValues(tr)
		for j, reason := range notifyFailures {
			m.failedHot[i][j] = m.failed.WithLabelValues(tr, reason)
		}
	}
	for i, ev := range contactEvents {
		m.eventsHot[i] = m.events.WithLabelValues(string(ev))
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "regbridge_build_info",
		Help:        "Always 1; the labels say which regbridge and Go built this process.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(m.subscribes, m.sent, m.failed, m.rtt, m.latency, m.sourceLag, m.events, build,
		newStateCollector(in),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *promMetrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SubscribeAnswered counts a SUBSCRIBE response (notifier.Observer).
func (m *promMetrics) SubscribeAnswered(code int) {
	for i, c := range subscribeCodes {
		if c == code {
			m.subscribeHot[i].Inc()
			return
		}
	}
	m.subscribes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// NotifyDone measures a finished NOTIFY transaction (notifier.Observer).
func (m *promMetrics) NotifyDone(transport, outcome string, rtt time.Duration, seenAt time.Time) {
	ti := transportIndex(transport)
	if ti < 0 {
		m.notifyDoneSlow(strings.ToLower(transport), outcome, rtt, seenAt)
		return
	}
	m.rttHot[ti].Observe(rtt.Seconds())
	if outcome == "ok" {
		m.sentHot[ti].Inc()
		if !seenAt.IsZero() {
			m.latency.Observe(time.Since(seenAt).Seconds())
		}
		return
	}
	if fi := failureIndex(outcome); fi >= 0 {
		m.failedHot[ti][fi].Inc()
		return
	}
	m.failed.WithLabelValues(metricTransports[ti], outcome).Inc()
}

// notifyDoneSlow handles a transport the hot path does not know.
func (m *promMetrics) notifyDoneSlow(transport, outcome string, rtt time.Duration, seenAt time.Time) {
	m.rtt.WithLabelValues(transport).Observe(rtt.Seconds())
	if outcome == "ok" {
		m.sent.WithLabelValues(transport).Inc()
		if !seenAt.IsZero() {
			m.latency.Observe(time.Since(seenAt).Seconds())
		}
		return
	}
	m.failed.WithLabelValues(transport, outcome).Inc()
}

// Publish counts the contact events of a change and, for bindings the
// registrar just wrote, the source's lag (bridge.Publisher).
func (m *promMetrics) Publish(c bridge.Change) {
	for i := range c.Contacts {
		v := &c.Contacts[i]
		if v.State == bridge.ContactActive && !v.Modified.IsZero() && !c.SeenAt.IsZero() {
			// Stores keep last_modified to the second: the lag is
			// accurate to a second, enough to see a polling or
			// write-back delay.
			m.sourceLag.Observe(max(c.SeenAt.Sub(v.Modified), 0).Seconds())
		}
		ev := v.Event
		if j := eventIndex(ev); j >= 0 {
			m.eventsHot[j].Inc()
		} else {
			m.events.WithLabelValues(string(ev)).Inc()
		}
	}
}

func transportIndex(t string) int {
	switch t {
	case "UDP", "udp":
		return 0
	case "TCP", "tcp":
		return 1
	case "TLS", "tls":
		return 2
	case "WS", "ws":
		return 3
	case "WSS", "wss":
		return 4
	}
	return -1
}

func failureIndex(outcome string) int {
	for i, f := range notifyFailures {
		if f == outcome {
			return i
		}
	}
	return -1
}

func eventIndex(ev bridge.Event) int {
	for i, e := range contactEvents {
		if e == ev {
			return i
		}
	}
	return -1
}

// stateCollector reads the state of the parts at scrape time: one
// Collect, no goroutine, nothing cached.
type stateCollector struct {
	in metricInputs

	aors, contacts, ready, subs, removed                *prometheus.Desc
	sipTxs, overloaded, tooLarge, panics                *prometheus.Desc
	srcUp, srcPolls, srcErrors, srcSkipped, srcLastFull *prometheus.Desc
	sseClients, sseEvents, sseDropped                   *prometheus.Desc
	hookEvents, hookRetries, hookQueue                  *prometheus.Desc
}

func newStateCollector(in metricInputs) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		in:          in,
		aors:        d("regbridge_aors", "Addresses-of-record with at least one active contact."),
		contacts:    d("regbridge_contacts", "Active contacts the bridge tracks."),
		ready:       d("regbridge_ready", "1 when /readyz would answer 200."),
		subs:        d("regbridge_subscriptions", "Active SIP subscriptions, by event package and transport.", "package", "transport"),
		removed:     d("regbridge_subscriptions_removed_total", "Subscriptions removed because a NOTIFY failed (481, timeout, transport error...)."),
		sipTxs:      d("regbridge_sip_server_transactions", "UDP SUBSCRIBE transactions held (running, or answered and absorbing retransmissions for 32 s); at most REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS."),
		overloaded:  d("regbridge_subscribe_overload_total", "UDP SUBSCRIBEs answered 503 without a transaction because REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS were held or every handler was busy."),
		tooLarge:    d("regbridge_notifies_too_large_total", "NOTIFYs of UDP subscriptions over 1300 bytes (RFC 3261 18.1.1), by outcome: tcp (answered over TCP), udp_fallback (answered over UDP because the subscriber took no TCP), ended (too large for a UDP datagram too: the subscription ended with terminated;reason=probation).", "outcome"),
		panics:      d("regbridge_panics_total", "Panics recovered, by where: a SIP request handler (answered 500), a NOTIFY delivery (the subscription ends) or an HTTP handler (answered 500).", "where"),
		srcUp:       d("regbridge_source_up", "1 while the contact store answers."),
		srcPolls:    d("regbridge_source_polls_total", "Reads of the contact store (change checks and snapshots)."),
		srcErrors:   d("regbridge_source_errors_total", "Failed reads of the contact store."),
		srcSkipped:  d("regbridge_source_rows_skipped_total", "Store rows skipped because they could not be decoded."),
		srcLastFull: d("regbridge_source_last_full_snapshot_timestamp_seconds", "When the last full snapshot of the store was delivered (Unix time)."),
		sseClients:  d("regbridge_sse_clients", "Connected /v1/events streams."),
		sseEvents:   d("regbridge_sse_events_total", "Contact events queued to /v1/events streams."),
		sseDropped:  d("regbridge_sse_clients_dropped_total", "/v1/events streams dropped for falling behind."),
		hookEvents:  d("regbridge_webhook_events_total", "Contact events per webhook URL by outcome: delivered, failed (after retries or refused) or dropped (queue full).", "webhook", "host", "outcome"),
		hookRetries: d("regbridge_webhook_retries_total", "Repeated webhook POST attempts.", "webhook", "host"),
		hookQueue:   d("regbridge_webhook_queue_length", "Events waiting for a webhook URL.", "webhook", "host"),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.aors, c.contacts, c.ready, c.subs, c.removed, c.sipTxs, c.overloaded, c.tooLarge, c.panics,
		c.srcUp, c.srcPolls, c.srcErrors, c.srcSkipped, c.srcLastFull,
		c.sseClients, c.sseEvents, c.sseDropped, c.hookEvents, c.hookRetries, c.hookQueue} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	in := c.in
	aors, contacts := in.bridge.Stats()
	gauge(c.aors, float64(aors))
	gauge(c.contacts, float64(contacts))
	ready := 1.0
	for _, rc := range in.ready {
		if !rc.ok() {
			ready = 0
		}
	}
	gauge(c.ready, ready)

	type key struct{ pkg, transport string }
	counts := map[key]int{}
	for _, s := range in.notifier.Subscriptions() {
		pkg, _, _ := strings.Cut(s.Event, ";")
		counts[key{strings.ToLower(strings.TrimSpace(pkg)), strings.ToLower(s.Transport)}]++
	}
	for k, n := range counts {
		gauge(c.subs, float64(n), k.pkg, k.transport)
	}
	counter(c.removed, in.notifier.Stats().Removed.Load())
	gauge(c.sipTxs, float64(in.notifier.Transactions()))
	counter(c.overloaded, in.notifier.Stats().Overloaded.Load())
	counter(c.tooLarge, in.notifier.Stats().LargeOverTCP.Load(), "tcp")
	counter(c.tooLarge, in.notifier.Stats().LargeOverUDP.Load(), "udp_fallback")
	counter(c.tooLarge, in.notifier.Stats().LargeEnded.Load(), "ended")
	counter(c.panics, in.notifier.Stats().HandlerPanics.Load(), "sip_handler")
	counter(c.panics, in.notifier.Stats().DeliveryPanics.Load(), "delivery")
	counter(c.panics, httpPanics.Load(), "http")

	if rep, ok := in.source.(source.Reporter); ok {
		st := rep.Stats()
		up := 0.0
		if st.Up {
			up = 1
		}
		gauge(c.srcUp, up)
		counter(c.srcPolls, st.Polls)
		counter(c.srcErrors, st.Errors)
		counter(c.srcSkipped, st.Skipped)
		if !st.LastFull.IsZero() {
			gauge(c.srcLastFull, float64(st.LastFull.UnixNano())/1e9)
		}
	}

	hs := in.hub.Stats()
	gauge(c.sseClients, float64(hs.Clients))
	counter(c.sseEvents, hs.Queued)
	counter(c.sseDropped, hs.Dropped)

	for _, w := range in.webhooks.Stats() {
		idx := strconv.Itoa(w.Index)
		counter(c.hookEvents, w.Delivered, idx, w.Host, "delivered")
		counter(c.hookEvents, w.Failed, idx, w.Host, "failed")
		counter(c.hookEvents, w.Dropped, idx, w.Host, "dropped")
		counter(c.hookRetries, w.Retries, idx, w.Host)
		gauge(c.hookQueue, float64(w.Queued), idx, w.Host)
	}
}
