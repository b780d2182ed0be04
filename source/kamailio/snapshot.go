package kamailio

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/regbridge/regbridge/source"
)

// dataVersion asks PRAGMA data_version through a statement prepared on the
// watcher's one connection: the number only means something when compared
// with an earlier answer of the same connection.
func dataVersion(ctx context.Context, dv *sql.Stmt) (int64, error) {
	var v int64
	if err := dv.QueryRowContext(ctx).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading data_version: %w", err)
	}
	return v, nil
}

// checkJournalMode warns, once per watcher, when Kamailio's file is not in
// WAL mode. We must not switch it ourselves (a mode=ro connection cannot,
// and the registrar owns the file).
func (w *SQLite) checkJournalMode(ctx context.Context, conn *sql.Conn) error {
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("reading journal_mode: %w", err)
	}
	if strings.EqualFold(mode, "wal") || w.journalWarned {
		return nil
	}
	w.journalWarned = true
	// Loud on purpose: in rollback-journal mode every read we make holds
	// a lock that makes Kamailio's COMMIT fail at once (it sets no busy
	// timeout), and the registration is lost.
	w.log.Warn("DATABASE NOT IN WAL MODE: Kamailio writes can fail with \"database is locked\" while regbridge reads, losing registrations; "+
		"set the fix in kamailio.cfg (the file name must match the db_url path exactly) and restart Kamailio",
		"journal_mode", mode,
		"fix", `modparam("db_sqlite","db_set_journal_mode","`+w.cfg.Path+`=WAL")`)
	return nil
}

// snapshot reads the whole table in one statement (one short read
// transaction) into w.contacts, skipping and logging bad rows.
func (w *SQLite) snapshot(ctx context.Context, stmt *sql.Stmt) error {
	rows, err := stmt.QueryContext(ctx)
	if err != nil {
		return fmt.Errorf("reading location table: %w", err)
	}
	defer rows.Close()
	clear(w.badSeen)
	w.contacts = w.contacts[:0]
	for rows.Next() {
		if err := rows.Scan(w.scanArgs[:]...); err != nil {
			return fmt.Errorf("reading location table: %w", err)
		}
		w.contacts = append(w.contacts, source.Contact{})
		c := &w.contacts[len(w.contacts)-1]
		if err := decodeRow(&w.row, w.cfg.Domain, c); err != nil {
			w.contacts = w.contacts[:len(w.contacts)-1]
			w.skip(&w.row, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading location table: %w", err)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("reading location table: %w", err)
	}
	// Drop the previous, longer snapshot's strings kept alive by the
	// reused array's tail.
	clear(w.contacts[len(w.contacts):cap(w.contacts)])
	w.badLogged, w.badSeen = w.badSeen, w.badLogged
	if len(w.badLogged) < maxLoggedBadRows {
		w.badCapped = false
	}
	return nil
}

// skip counts a bad row and logs it unless it was already in the previous
// snapshot.
func (w *SQLite) skip(r *rawRow, why error) {
	w.skipped.Add(1)
	key := rowKey(r)
	if _, ok := w.badSeen[key]; ok {
		return
	}
	if len(w.badSeen) >= maxLoggedBadRows {
		if !w.badCapped {
			w.badCapped = true
			w.log.Warn("too many bad rows; further ones are skipped without a log line", "limit", maxLoggedBadRows)
		}
		return
	}
	w.badSeen[key] = struct{}{}
	if _, ok := w.badLogged[key]; !ok {
		w.log.Warn("skipping location row", "key", key, "err", why)
	}
}
