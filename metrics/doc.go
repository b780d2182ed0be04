// Package metrics is regbridge's Prometheus instrumentation: it observes
// the notifier's SUBSCRIBE answers and NOTIFY transactions
// (notifier.Observer), counts the bridge's contact events and the
// store's lag (a bridge.Publisher), and reads the state of the parts
// (bridge, notifier, source, SSE hub, webhooks) at scrape time. Metric
// names and labels are a contract with operators' dashboards and alerts:
// docs/operations.md lists them.
//
// The hot path (a NOTIFY answered, a contact event) resolves its series
// ahead of time, so observing is an index and an atomic add.
package metrics
