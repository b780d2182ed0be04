// Package bridge owns the truth about registrations: the last known
// contacts of every address-of-record. It diffs what a source reports
// against that state, classifies each difference as an RFC 3680 section
// 4.7.1 contact event, expires contacts on its own clock, and publishes
// per-AOR changes to every consumer without letting one block another.
//
// The classification rules (store differences rarely say why a row changed):
//
//   - a new binding is registered, or created when the store marks it as
//     made administratively;
//   - a new REGISTER (Call-ID or CSeq changed) with a future expiry is
//     refreshed; with a past expiry it is unregistered;
//   - an expiry moved earlier without a new REGISTER is shortened;
//   - a binding whose expiry passes without a refresh is expired at that
//     instant, by the bridge's clock, whether or not the row is still there;
//     the later DELETE of that row reports nothing;
//   - a binding removed before its expiry is unregistered;
//   - a binding whose URI changes in place (same store key) is the old
//     contact deactivated and the new one registered (RFC 3680 5.1: contact
//     ids differ for different URIs).
//
// The first full snapshot after start is the baseline: it is loaded without
// events (invariant 1, docs/design.md#invariants: no invented events).
//
// A partition owner (docs/cluster.md#scaling-out-partitions-over-redis-cluster)
// holds only some AORs' contacts: Adopt takes in the contacts of a gained
// partition and Forget drops those of a lost one, both without announcing
// anything, in order with Apply. Changes after Adopt are classified against
// the adopted contacts as against a baseline's; a contact of a forgotten AOR
// applied later is new.
package bridge
