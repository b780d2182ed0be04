// Package kamailio reads Kamailio's usrloc contact store and reports it as
// source batches: the `location` table of Kamailio 5.6 to 6.1 (table
// version 9) in SQLite (db_sqlite), MySQL/MariaDB (db_mysql) or PostgreSQL
// (db_postgres). The polling itself is source/sqlwatch's; this package is
// the Kamailio layout of the table and its encodings.
//
// Store facts implemented here (docs/stores.md: #creating-the-table,
// #kamailio, #time-encoding, #sql-servers):
//
//   - the 23-column `location` layout and its indexes, used verbatim when
//     SQLiteConfig.Create makes a new file (schema.go); the tests create the
//     MySQL and PostgreSQL tables from Kamailio's DDL (testdata/);
//   - ruid is the binding's key, a ruid starting "ulcx" marks a binding
//     added by the ul.add RPC (Administrative), expires == epoch 0 means
//     permanent, q == -1 means unspecified, a NULL domain means use_domain=0
//     and the AOR domain comes from configuration;
//   - db_sqlite stores times as a REAL Julian day, decoded with the
//     rounding rule (truncating is off by one second for about half of all
//     values); NUMERIC affinity may turn an integral value into INTEGER, and
//     rows written by other tools may hold TEXT, so all three are accepted.
//     db_mysql and db_postgres write DATETIME / TIMESTAMP WITHOUT TIME ZONE
//     as the registrar's wall clock: read as text and decoded client-side in
//     the configured zone (DBConfig.TZ, zone database embedded), so MariaDB
//     servers without time zone tables work. Columns an admin altered to
//     BIGINT for usrloc expires_type=1 are detected by their type and read
//     as epochs (layout.go, decode.go);
//   - change detection by PRAGMA data_version for SQLite and by an
//     aggregate fingerprint plus a periodic full reconcile on servers,
//     with incremental reads by last_modified, or opt-in trigger-based
//     change capture (DBConfig.CDC; sqlwatch); diffing is the bridge's job;
//   - the SQLite file is opened read-only, reads are tiny and happen
//     only after data_version moved, and a loud warning names Kamailio's
//     db_set_journal_mode modparam when the file is not in WAL mode,
//     because in rollback-journal mode every read lock can make a Kamailio
//     COMMIT fail with "database is locked" (sqlite.go); `partition` is
//     quoted in MySQL (sqlwatch quotes every identifier).
//
// Deployment note: on a WAL file even a read-only SQLite connection needs the
// -shm (and -wal) side files; when Kamailio is not running and they are
// missing, the first reader creates them with the database file's mode. Run
// regbridge as the same user as Kamailio (or as root, where SQLite hands the
// files to the database file's owner), or the side files it creates may not
// be writable by Kamailio.
package kamailio
