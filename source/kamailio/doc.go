// Package kamailio reads Kamailio's usrloc contact store and reports it as
// source batches. This file set covers the SQLite backend (db_sqlite): the
// `location` table of Kamailio 5.6 to 6.1 (table version 9), read from the
// database file that Kamailio writes.
//
// Store facts implemented here (docs: STORES.md section 1):
//
//   - 1.1: the 23-column `location` layout and its indexes, used verbatim when
//     SQLiteConfig.Create makes a new file (schema.go);
//   - 1.2: ruid is the binding's key, a ruid starting "ulcx" marks a binding
//     added by the ul.add RPC (Administrative), expires == epoch 0 means
//     permanent, q == -1 means unspecified, a NULL domain means use_domain=0
//     and the AOR domain comes from configuration;
//   - 1.3: db_sqlite stores times as a REAL Julian day, decoded with the
//     rounding rule (truncating is off by one second for about half of all
//     values); NUMERIC affinity may turn an integral value into INTEGER, and
//     rows written by other tools may hold TEXT, so all three are accepted
//     (decode.go);
//   - 1.5: change detection by polling PRAGMA data_version on one dedicated
//     connection, then one full snapshot read (diffing is the bridge's job);
//   - 1.6: the file is opened read-only, reads are tiny and happen only after
//     data_version moved, and a loud warning names Kamailio's
//     db_set_journal_mode modparam when the file is not in WAL mode, because
//     in rollback-journal mode every read lock can make a Kamailio COMMIT fail
//     with "database is locked" (sqlite.go).
//
// Deployment note: on a WAL file even a read-only SQLite connection needs the
// -shm (and -wal) side files; when Kamailio is not running and they are
// missing, the first reader creates them with the database file's mode. Run
// regbridge as the same user as Kamailio (or as root, where SQLite hands the
// files to the database file's owner), or the side files it creates may not
// be writable by Kamailio.
package kamailio
