package metrics

import (
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/source"
)

// Label values the hot path resolves ahead of time, so that observing a
// NOTIFY is an index and an atomic add, without a map lookup.
var (
	metricTransports = [...]string{"udp", "tcp", "tls", "ws", "wss"}
	notifyFailures   = [...]string{"1xx", "3xx", "4xx", "5xx", "6xx", "timeout", "transport"}
	subscribeCodes   = [...]int{200, 202, 400, 403, 404, 406, 423, 481, 489, 500, 503}
)

// Histogram buckets, in seconds.
var (
	// rttBuckets span a loopback answer to SIP Timer F (32 s).
	rttBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 32}
	// latencyBuckets span an in-process hop to a subscriber that answers
	// after retransmissions.
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Metrics measures the notifier (as its Observer) and the bridge's
// contact events (as a bridge.Publisher), and serves /metrics.
type Metrics struct {
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
	eventsHot    [len(bridge.Events)]prometheus.Counter
}

// Inputs are the parts /metrics reads at scrape time, and the labels
// fixed at start.
type Inputs struct {
	Bridge   *bridge.Bridge
	Notifier *notifier.Notifier
	Source   source.Source // read through source.Reporter when it implements it
	Hub      *feed.Hub
	Webhooks *feed.Webhooks
	// Ready reports whether /readyz would answer 200.
	Ready func() bool
	// HTTPPanics is the number of panics recovered in HTTP handlers.
	HTTPPanics func() uint64
	// Transports are the SIP transports listened on, lower case
	// (Transports): only they get NOTIFY series up front.
	Transports []string
	// SourceScheme is the scheme label of regbridge_source_info
	// (SourceScheme).
	SourceScheme string
	// Version is the version label of regbridge_build_info.
	Version string
	// Partitions, under REGBRIDGE_PARTITIONS only, reports how many
	// partitions this instance serves and whether it reads the store
	// (holds the reader lease).
	Partitions func() (owned int, reader bool)
}

var (
	_ notifier.Observer = (*Metrics)(nil)
	_ bridge.Publisher  = (*Metrics)(nil)
)

// New registers every regbridge metric, the Go runtime's and the
// process's in a registry of its own.
func New(in Inputs) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
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
		if !slices.Contains(in.Transports, tr) {
			continue // no series for a transport nothing listens on
		}
		m.sentHot[i] = m.sent.WithLabelValues(tr)
		m.rttHot[i] = m.rtt.WithLabelValues(tr)
		for j, reason := range notifyFailures {
			m.failedHot[i][j] = m.failed.WithLabelValues(tr, reason)
		}
	}
	for i, ev := range bridge.Events {
		m.eventsHot[i] = m.events.WithLabelValues(string(ev))
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "regbridge_build_info",
		Help:        "Always 1; the labels say which regbridge and Go built this process.",
		ConstLabels: prometheus.Labels{"version": in.Version, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(m.subscribes, m.sent, m.failed, m.rtt, m.latency, m.sourceLag, m.events, build,
		newStateCollector(in),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SubscribeAnswered counts a SUBSCRIBE response (notifier.Observer).
func (m *Metrics) SubscribeAnswered(code int) {
	for i, c := range subscribeCodes {
		if c == code {
			m.subscribeHot[i].Inc()
			return
		}
	}
	m.subscribes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// NotifyDone measures a finished NOTIFY transaction (notifier.Observer).
func (m *Metrics) NotifyDone(transport, outcome string, rtt time.Duration, seenAt time.Time) {
	ti := transportIndex(transport)
	if ti < 0 || m.sentHot[ti] == nil {
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
func (m *Metrics) notifyDoneSlow(transport, outcome string, rtt time.Duration, seenAt time.Time) {
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
func (m *Metrics) Publish(c bridge.Change) {
	for i := range c.Contacts {
		v := &c.Contacts[i]
		if v.Written && v.State == bridge.ContactActive && !v.Modified.IsZero() && !c.SeenAt.IsZero() {
			// Stores keep last_modified to the second: the lag is
			// accurate to a second, enough to see a polling or
			// write-back delay.
			m.sourceLag.Observe(max(c.SeenAt.Sub(v.Modified), 0).Seconds())
		}
		ev := v.Event
		if j := ev.Index(); j >= 0 {
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
