// Package asterisk reads the contacts Asterisk's res_pjsip registrar keeps
// and reports them as source batches (docs/stores.md#asterisk). Both sorcery
// back ends are covered, on top of source/sqlwatch's polling watcher:
//
//   - AstDB (the default wizard, NewAstDB): the astdb(key, value) table of
//     astdb.sqlite3, keys "/registrar/contact/<id>", each value a JSON
//     object of string members (uri, expiration_time, user_agent, call_id,
//     path, ...; unknown members ignored, missing ones empty). The file is
//     opened read-only. Asterisk writes it in rollback-journal mode with
//     no busy timeout and rolls a second's writes back when its COMMIT
//     meets a reader, so the change check is a stat() of the file (no
//     lock); only after the file changed does it ask PRAGMA data_version,
//     and only when that moved does it run one indexed range query; while
//     Asterisk's journal shows a write pending it waits (astdbfile.go).
//   - Realtime (NewRealtime): the ps_contacts table in MySQL, MariaDB or
//     PostgreSQL, read with sqlwatch's dialects (snapshot plus an aggregate
//     change check over the columns a REGISTER rewrites).
//
// The key is the contact id "<aor>;@<md5 of the URI>"; the AOR is the
// id's part before ";@" completed with the configured domain. Asterisk
// stores no q, CSeq, instance or last-modified time: Q is -1, CSeq 0, and
// CallID is the Call-ID of the REGISTER that created the binding
// (refreshes do not rewrite it). expiration_time is epoch seconds in
// both back ends, so no time zone is involved. The same URI on the same
// AOR always has the same id, so a binding that expired and registers again
// reuses its key; the bridge's own expiry clock tells the two apart.
package asterisk
