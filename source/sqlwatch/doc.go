// Package sqlwatch is the polling machinery every SQL contact store shares:
// it connects, asks a cheap "did anything change" question every poll, reads
// what changed when the answer moved (and the whole table every reconcile
// interval regardless), decodes rows through a registrar's Layout, and hands
// source batches to the sink. On the servers a changed table is read
// incrementally (incremental.go: rows by last_modified, deletes by a key
// scan, checked against the server's count and hash sum, else a full read),
// or, with Config.CDC, from change-capture triggers (cdc.go: a changelog
// table read by sequence number, changelog.go;
// docs/stores.md#change-capture-cdctrigger) that Capturer installs for
// `regbridge cdc`, or with CDCLogical from a PostgreSQL logical replication
// slot (logical.go: rows decoded from the pgoutput stream, applied per
// transaction at commit, resumed from the delivered position); beside a
// trigger feed the periodic reconcile verifies the table on a second
// connection while the feed goes on, and reads by key only the rows that
// differ (verify.go). Outages are retried with capped exponential backoff,
// logged once per state change and reported through Stats; after every
// recovery a fresh Full batch lets the bridge reconcile (invariant 1,
// docs/design.md#invariants). Bad rows are skipped, counted and logged once
// per key (invariant 5).
//
// What differs per store is small and pluggable:
//
//   - a Dialect (MySQL, Postgres, SQLite here) connects, quotes identifiers,
//     probes column types and implements the change check: COUNT(*) plus a
//     sum of per-row hashes of the watched columns on a server
//     (docs/stores.md#sql-servers: deletes are invisible to last_modified),
//     PRAGMA data_version on a dedicated connection for SQLite;
//   - a Layout (in the registrar's package: source/kamailio,
//     source/opensips) names the table and columns and decodes one row
//     into a source.Contact, choosing its time decoding from the column
//     types the dialect reports.
//
// Rows reach the watcher as Values that point into the driver's buffers
// (MySQL's text protocol, PostgreSQL's simple protocol, SQLite's values).
// The watcher does not keep the decoded contacts (the sink does): per row
// it keeps the key, a 64-bit hash of every column read and the server's
// hash (snapshot.go, about 40 bytes besides the key string it shares with
// the bridge), and decodes only rows whose hash moved. To a KeyedSink (the
// bridge) a Full batch then carries only the new and changed rows and
// names the rest by key, so a steady-state snapshot allocates next to
// nothing per contact; other sinks get every row decoded, as before. The
// first Full batch, and the first after the sink rejected one or the
// column types changed, is complete.
package sqlwatch
