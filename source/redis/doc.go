// Package redis reads contact bindings kept in Redis and reports them as
// source batches. Two layouts are understood:
//
//   - LayoutKamailio: Kamailio's db_redis `location` table
//     (docs/stores.md#kamailios-db_redis-layout):
//     one hash per binding under "<version:><table>:entry::<ruid>", every
//     value text, times as "YYYY-MM-DD HH:MM:SS" in the registrar's time
//     zone (Config.Location; the zone database is embedded) or as epoch
//     seconds with usrloc expires_type=1, epoch 0 meaning permanent, absent
//     and empty fields alike meaning NULL. The ruid is the key.
//     Mapping keys (usrdom, timer) are never read: Kamailio does not always
//     build them.
//   - LayoutGeneric: one hash per binding under a configurable prefix, for
//     home-grown registrars; the fields are documented in
//     docs/stores.md#the-generic-layout and generic.go.
//
// Change capture (docs/stores.md#redis): keyspace notifications on
// "__keyspace@<db>__:<prefix>*". Every session subscribes first and then
// reads a full snapshot (SCAN plus pipelined HGETALL), so nothing written
// in between is missed; every later re-subscription, which go-redis does
// by itself after a dropped connection, means notifications were lost and
// triggers another full snapshot. Changed keys are collected for a few
// milliseconds and re-read together; whatever the event (hset, del,
// expired, ...), the key's current content decides, and a key that is
// gone or no longer decodes is reported in Batch.Deleted. A full reconcile
// every Config.Reconcile catches anything lost without a sign.
//
// notify-keyspace-events needs K, g, h and x. The watcher checks it with
// CONFIG GET at start and at every reconcile and never changes it: when
// classes are missing it says so at warn level, naming the fix, and falls
// back to a full scan every PollInterval until they are enabled; when
// CONFIG is refused it warns that it cannot check and trusts the server.
//
// Outages (a failed ping, scan or read) end the session: Stats.Up turns
// false, the outage is logged once, and Run retries with capped backoff,
// starting each new session with subscribe-then-snapshot. Bad entries are
// skipped, counted in Stats.Skipped and logged once per key.
package redis
