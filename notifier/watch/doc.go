// Package watch is the subscriber side of the SIP reg event package: it
// subscribes to the registration state of one address-of-record and turns
// the NOTIFYs it receives into parsed documents; or, for the watcher
// information packages reg.winfo and presence.winfo (RFC 3857), to the
// list of that AOR's watchers (ParseWatcherinfo, WatcherView; RFC 3858).
// regbridge uses it for the `regbridge watch` command and for end-to-end
// tests of its own notifier; it works against any RFC 3680 notifier.
//
// What it implements:
//
//   - ParseReginfo: application/reginfo+xml documents (RFC 3680 section
//     5.1 and 5.4) including the GRUU extension (RFC 5628 section 3),
//     ignoring unknown namespaces as receivers must.
//   - View: the subscriber's reconstruction of state from full and partial
//     documents and their version numbers (RFC 3680 sections 4.8 and 5.2).
//   - Subscriber: the subscription itself (RFC 6665 section 4.1 with the
//     package rules of RFC 3680 section 4): initial SUBSCRIBE with Event:
//     reg and Accept: application/reginfo+xml, dialog tracking (the 2xx or
//     the first NOTIFY creates it, forks are refused), refresh before
//     expiry and on a version gap, Subscription-State handling including
//     re-subscription after terminated, and unsubscribe on shutdown.
//
// SIP runs on github.com/emiago/sipgo over UDP or TCP. Over UDP the
// subscriber listens on its own socket and sends from it, so the Contact it
// advertises is where NOTIFYs arrive; over TCP it advertises the local end
// of the connection the SUBSCRIBE uses, which the notifier reuses.
package watch
