// Package notifier is regbridge's SIP side: the notifier of the RFC 3680
// `reg` event package, and of `presence` derived from registrations (RFC
// 3680 3.2, RFC 3856, PIDF of RFC 3863), over the RFC 6665 (and RFC 3265)
// events framework, built on sipgo, on UDP, TCP, TLS, WS and WSS (RFC
// 7118). It also serves the watcher information template packages
// reg.winfo and presence.winfo (RFC 3857, documents of RFC 3858) over
// the same machinery: who subscribes to an AOR, on every instance when
// they share Redis (watchers.go). The documents themselves are written by
// notifier/render; this package decides what each one holds and when it
// leaves.
//
// It accepts, refreshes and ends subscriptions, keeps each subscription's
// dialog itself (sipgo has no SUBSCRIBE dialogs; route sets, CSeq and
// targets per RFC 3261 12), and sends NOTIFYs carrying
// application/reginfo+xml (full state first and after every refresh,
// partial state after each change, one version counter per subscription
// starting at 0, RFC 5628 GRUUs) or complete application/pidf+xml
// documents. It answers the responses to NOTIFY as RFC 6665 4.2.2 says,
// including digest challenges, and CANCEL as 4.6 says.
//
// Changes from the bridge are coalesced per subscription, at most one NOTIFY
// per dialog is in flight (invariant 4, docs/design.md#invariants), and an
// optional minimum interval between NOTIFYs (RFC 3680 4.10) makes changes
// inside it leave together: a slow subscriber gets fewer, larger documents,
// never a growing queue.
//
// NOTIFYs over UDP to an IP address run lean client transactions of
// their own (udptx.go): sent from the listener the subscription came to,
// retransmitted on Timer E, answered through the listener's reader before
// sipgo parses anything. NOTIFYs on the TCP, TLS, WS or WSS connection
// the SUBSCRIBE came on run the same transactions (conntx.go, wsconn.go):
// Timer F only, writes batched per connection, the responses taken out of
// the byte stream (or the WebSocket frames) before sipgo's reader, which
// still gets every request. Every other NOTIFY (a Record-Route hop, a new
// connection to the Contact once the subscriber's is gone) goes through
// sipgo's client.
// SUBSCRIBEs over UDP likewise run lean server transactions (udpsrv.go):
// a retransmission is answered from the stored response without reaching
// the handler again, and an answered transaction costs about 670 bytes
// until Timer J ends it, where sipgo's cost about 4 KB; a SUBSCRIBE
// refused by a rate, or over the configured number of transactions, is
// answered without one. SUBSCRIBEs over TCP, TLS and WebSocket, and every
// other request, go through sipgo's server. A NOTIFY of a UDP subscription
// over 1300 bytes goes over TCP when the subscriber takes it there, else
// over UDP (RFC 3261 18.1.1, large.go). Handlers and
// deliveries recover from panics (recover.go).
package notifier
