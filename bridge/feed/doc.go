// Package feed carries the bridge's registration changes to consumers that
// do not speak SIP: a Server-Sent Events hub for dashboards and scripts
// (the HTML Living Standard's text/event-stream format) and webhooks that
// POST each event as signed JSON.
//
// Both are bridge.Publisher consumers. The bridge calls Publish with its lock
// held, so Publish never blocks and never waits for the network
// (docs/design.md#the-data-path: publishing to one consumer never blocks
// another): each SSE client and each webhook URL has a bounded queue, and
// what does not fit is dropped and counted. One JSON object is sent per
// contact event, with the RFC 3680 section 4.7.1 event names as reginfo uses
// them.
package feed
