// Package policy decides who may watch which AOR: the authorization
// step the notifier takes before it answers a SUBSCRIBE with 200 OK, so
// that no subscription exists that its subscriber was not allowed
// (invariant 6, docs/design.md#invariants).
//
// Registration state tells where and when a user is reachable, so RFC 3680
// section 7 asks notifiers to authenticate and authorize subscriptions under
// local policy; RFC 3680 4.6 recommends letting users watch their own AOR and
// expects pre-provisioned application subscribers (welcome notices, presence
// servers). The rules here (RFC 3680 section 7; docs/security.md):
//
//   - sources in the open networks (loopback by default) may watch any AOR
//     without authentication;
//   - a user may watch its own AOR: the authenticated identity equals the
//     AOR after canonicalization;
//   - configured watcher identities (application servers, P-CSCFs) may
//     watch any AOR of the configured domains;
//   - from trusted networks a P-Asserted-Identity (RFC 3325) stands in for
//     authentication;
//   - anyone else without an identity is challenged (401, RFC 6665
//     4.2.1.3), and any other request is refused with 403 or, when polite
//     blocking is on, accepted with neutral state (RFC 6665 4.2.1.3 and
//     6.2: 200 and a document saying nothing, so the refusal does not leak
//     that a policy exists).
//
// Decide is a pure function of its input and the configuration.
package policy
