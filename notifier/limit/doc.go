// Package limit bounds what one stranger can make the notifier do: SUBSCRIBE
// rates per source address, per authenticated identity and in total (token
// buckets), and concurrent subscriptions per source, per identity, per AOR
// and in total. Every table it keeps has a fixed maximum size, so an attacker
// cycling source addresses cannot grow memory (invariant 4,
// docs/design.md#invariants): when the rate table is full and no entry is
// idle, new sources share one overflow bucket instead of getting fresh ones.
//
// A refusal comes with the SIP answer for it: 503 (Service Unavailable)
// with Retry-After for rates and for a full server (RFC 3261 21.5.4, the
// overload answer SIP has instead of HTTP's 429), and 403 (Forbidden) for
// a per-source, per-identity or per-AOR subscription cap, which waiting
// does not lift. RFC 3680 7 and RFC 6665 6 ask notifiers to protect
// themselves and their users against such floods; RFC 6665 6.3 names
// SUBSCRIBE as an amplifier (one request, several NOTIFYs).
package limit
