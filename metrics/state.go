package metrics

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// slotLagger is a source that reads a replication slot (sqlwatch under
// cdc=logical).
type slotLagger interface {
	SlotLag() (sqlwatch.SlotLag, bool)
}

// stateCollector reads the state of the parts at scrape time: one
// Collect, no goroutine, nothing cached.
type stateCollector struct {
	in Inputs

	aors, contacts, ready, subs, removed                *prometheus.Desc
	sipTxs, overloaded, tooLarge, panics                *prometheus.Desc
	srcUp, srcPolls, srcErrors, srcSkipped, srcLastFull *prometheus.Desc
	slotLagBytes, slotLagSeconds                        *prometheus.Desc
	srcInfo                                             *prometheus.Desc
	sseClients, sseEvents, sseDropped                   *prometheus.Desc
	hookEvents, hookRetries, hookQueue                  *prometheus.Desc
	partsOwned, storeReader                             *prometheus.Desc
}

func newStateCollector(in Inputs) *stateCollector {
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
		srcInfo:     d("regbridge_source_info", "Always 1; scheme is REGBRIDGE_SOURCE's, mode how changes are learnt right now (poll, trigger, keyspace...).", "scheme", "mode"),
		srcPolls:    d("regbridge_source_polls_total", "Reads of the contact store (change checks and snapshots)."),
		srcErrors:   d("regbridge_source_errors_total", "Failed reads of the contact store."),
		srcSkipped:  d("regbridge_source_rows_skipped_total", "Store rows skipped because they could not be decoded."),
		srcLastFull: d("regbridge_source_last_full_snapshot_timestamp_seconds", "When the last full snapshot of the store was delivered (Unix time)."),
		slotLagBytes: d("regbridge_source_slot_lag_bytes",
			"WAL the PostgreSQL server keeps for the replication slot of cdc=logical: its current position minus the slot's confirmed one.", "slot"),
		slotLagSeconds: d("regbridge_source_slot_lag_seconds",
			"Age of the oldest WAL the replication slot of cdc=logical has not confirmed (0 when caught up).", "slot"),
		sseClients:  d("regbridge_sse_clients", "Connected /v1/events streams."),
		sseEvents:   d("regbridge_sse_events_total", "Contact events queued to /v1/events streams."),
		sseDropped:  d("regbridge_sse_clients_dropped_total", "/v1/events streams dropped for falling behind."),
		hookEvents:  d("regbridge_webhook_events_total", "Contact events per webhook URL by outcome: delivered, failed (after retries or refused) or dropped (queue full).", "webhook", "host", "outcome"),
		hookRetries: d("regbridge_webhook_retries_total", "Repeated webhook POST attempts.", "webhook", "host"),
		hookQueue:   d("regbridge_webhook_queue_length", "Events waiting for a webhook URL.", "webhook", "host"),
		partsOwned:  d("regbridge_partitions_owned", "Partitions this instance serves (REGBRIDGE_PARTITIONS): their contacts, subscriptions and NOTIFYs."),
		storeReader: d("regbridge_store_reader", "1 while this instance holds the reader lease and reads the store (REGBRIDGE_PARTITIONS)."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.aors, c.contacts, c.ready, c.subs, c.removed, c.sipTxs, c.overloaded, c.tooLarge, c.panics,
		c.srcUp, c.srcPolls, c.srcErrors, c.srcSkipped, c.srcLastFull, c.srcInfo, c.slotLagBytes, c.slotLagSeconds,
		c.sseClients, c.sseEvents, c.sseDropped, c.hookEvents, c.hookRetries, c.hookQueue, c.partsOwned, c.storeReader} {
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
	bs := in.Bridge.Stats()
	gauge(c.aors, float64(bs.AORs))
	gauge(c.contacts, float64(bs.Contacts))
	ready := 0.0
	if in.Ready == nil || in.Ready() {
		ready = 1
	}
	gauge(c.ready, ready)
	if in.Partitions != nil {
		owned, reader := in.Partitions()
		gauge(c.partsOwned, float64(owned))
		gauge(c.storeReader, map[bool]float64{true: 1}[reader])
	}

	type key struct{ pkg, transport string }
	counts := map[key]int{}
	for _, s := range in.Notifier.Subscriptions() {
		pkg, _, _ := strings.Cut(s.Event, ";")
		counts[key{strings.ToLower(strings.TrimSpace(pkg)), strings.ToLower(s.Transport)}]++
	}
	for k, n := range counts {
		gauge(c.subs, float64(n), k.pkg, k.transport)
	}
	counter(c.removed, in.Notifier.Counters().Removed.Load())
	gauge(c.sipTxs, float64(in.Notifier.Transactions()))
	counter(c.overloaded, in.Notifier.Counters().Overloaded.Load())
	counter(c.tooLarge, in.Notifier.Counters().LargeOverTCP.Load(), "tcp")
	counter(c.tooLarge, in.Notifier.Counters().LargeOverUDP.Load(), "udp_fallback")
	counter(c.tooLarge, in.Notifier.Counters().LargeEnded.Load(), "ended")
	counter(c.panics, in.Notifier.Counters().HandlerPanics.Load(), "sip_handler")
	counter(c.panics, in.Notifier.Counters().DeliveryPanics.Load(), "delivery")
	if in.HTTPPanics != nil {
		counter(c.panics, in.HTTPPanics(), "http")
	}

	mode := source.ModePoll // adapters that do not say (Asterisk's astdb) poll
	if rep, ok := in.Source.(source.Reporter); ok {
		st := rep.Stats()
		if st.Mode != "" {
			mode = st.Mode
		}
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
	if sl, ok := in.Source.(slotLagger); ok {
		if lag, ok := sl.SlotLag(); ok {
			gauge(c.slotLagBytes, float64(lag.Bytes), lag.Slot)
			gauge(c.slotLagSeconds, lag.Seconds, lag.Slot)
		}
	}

	if in.Source != nil {
		gauge(c.srcInfo, 1, in.SourceScheme, mode)
	}

	hs := in.Hub.Stats()
	gauge(c.sseClients, float64(hs.Clients))
	counter(c.sseEvents, hs.Queued)
	counter(c.sseDropped, hs.Dropped)

	for _, w := range in.Webhooks.Stats() {
		idx := strconv.Itoa(w.Index)
		counter(c.hookEvents, w.Delivered, idx, w.Host, "delivered")
		counter(c.hookEvents, w.Failed, idx, w.Host, "failed")
		counter(c.hookEvents, w.Dropped, idx, w.Host, "dropped")
		counter(c.hookRetries, w.Retries, idx, w.Host)
		gauge(c.hookQueue, float64(w.Queued), idx, w.Host)
	}
}
