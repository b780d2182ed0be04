// Package substore keeps SIP event subscriptions (RFC 6665 dialogs, their
// CSeq and reginfo version counters, RFC 3680 4.1) outside one process, so
// that they survive a restart and can be shared by several regbridge
// instances.
//
// Each subscription is owned by exactly one live instance. Ownership is a
// field of the record, changed only by atomic compare-and-set scripts, and
// every NOTIFY is fenced: Advance checks the owner and increments CSeq and
// version in one round trip, so an instance that lost a subscription (it
// was taken over while it paused, or a refresh moved it) finds out before
// it sends anything. Liveness is one heartbeat key per instance with a TTL
// (the lease); instances whose heartbeat is gone have their subscriptions
// claimed in bounded batches by the live ones.
//
// Memory is the single-process store; Redis is the shared one. The same
// Redis also holds the bridge's last known contacts (contacts.go, a
// bridge.StateWriter), the baseline a restarted instance diffs its first
// snapshot against. substore therefore serves two layers: the bridge
// (the contacts record) and the notifier (subscriptions, leases,
// watchers); it imports neither, and only source of the layers before.
//
// Every value is stored in a JSON format of this package's own types,
// with a format version (format.go), so a deployment upgrades in place.
package substore
