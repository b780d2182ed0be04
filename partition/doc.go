// Package partition spreads regbridge's shared state over a Redis
// Cluster: the AOR space is cut into a fixed number of partitions, each
// with its own hash tag (so Cluster spreads partitions over its shards),
// one instance at a time reads the location store and appends every
// contact change to its partition's Redis Stream, and each partition is
// owned by one live instance at a time by a fenced lease.
//
// The pieces: Map (partition of an AOR, its hash tag, and Advance, the
// fence of a NOTIFY), Lease (one fenced, expiring holder of a key),
// Members and Assign (the live instances and the balanced assignment of
// partitions to them), Owner (acquires, renews and hands over the
// partition leases this instance is assigned), Streams (fenced appends
// with the partition's contact state kept beside its stream), Reader (the
// store's one reader: stamps, baselines, appends, syncs), Follower (an
// owner's gap-checked reads of its partitions' streams) and Subs (the
// subscription records kept in their AOR's partition, with an inbox per
// partition through which its owner learns of saves made elsewhere).
//
// The design, and what of it is wired into regbridge, is in
// docs/cluster.md.
package partition
