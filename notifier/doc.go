// Package notifier is regbridge's SIP side: the notifier of the RFC 3680
// `reg` event package over the RFC 6665 (and RFC 3265) events framework,
// built on sipgo.
//
// It accepts, refreshes and ends subscriptions (SUBSCRIBE with Event: reg),
// keeps each subscription's dialog itself (sipgo has no SUBSCRIBE dialogs),
// and sends NOTIFYs carrying application/reginfo+xml: full state first and
// after every refresh, partial state (only the changed contacts) after each
// change, with one version counter per subscription starting at 0.
//
// Changes from the bridge are coalesced per subscription, and at most one
// NOTIFY per dialog is in flight (DESIGN.md invariant 4): a slow subscriber
// gets fewer, larger documents, never a growing queue.
package notifier
