package sqlwatch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-sql-driver/mysql"
)

// MySQL/MariaDB change capture: AFTER INSERT/UPDATE/DELETE triggers append
// to the changelog (changelog.go). There is no binlog client available to
// this project (docs/stores.md#change-capture-cdctrigger).

var _ Capturer = (*MySQL)(nil)

// mysqlTriggers are the trigger names for t (at most 64 bytes).
func mysqlTriggers(t *Table) [3]string {
	var n [3]string
	for i, op := range []string{"ai", "au", "ad"} {
		s := "regbridge_" + t.Name
		if len(s) > 60 {
			s = s[:60]
		}
		n[i] = s + "_" + op
	}
	return n
}

// CaptureSQL is the changelog table and the three triggers (install), or
// the triggers' removal (the changelog stays: other tables may use it).
// Each trigger body is one statement, so the SQL runs in the mysql client
// as printed, without DELIMITER.
func (d *MySQL) CaptureSQL(t *Table, install bool) []string {
	n := mysqlTriggers(t)
	drops := []string{
		"DROP TRIGGER IF EXISTS " + QuoteMySQL(n[0]),
		"DROP TRIGGER IF EXISTS " + QuoteMySQL(n[1]),
		"DROP TRIGGER IF EXISTS " + QuoteMySQL(n[2]),
	}
	if !install {
		return drops
	}
	tbl, key, name := QuoteMySQL(t.Name), QuoteMySQL(t.Columns[t.Key]), "'"+t.Name+"'"
	ins := "INSERT INTO " + Changelog + " (tbl, op, k) "
	return append([]string{
		"CREATE TABLE IF NOT EXISTS " + Changelog + ` (
  seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  tbl VARCHAR(64) NOT NULL,
  op CHAR(1) NOT NULL,
  k VARCHAR(255) NOT NULL,
  ts TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB`}, append(drops,
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT ON %s FOR EACH ROW %sVALUES (%s, 'I', NEW.%s)", QuoteMySQL(n[0]), tbl, ins, name, key),
		fmt.Sprintf("CREATE TRIGGER %s AFTER UPDATE ON %s FOR EACH ROW %sSELECT %s, 'U', NEW.%s UNION ALL SELECT %s, 'D', OLD.%s FROM DUAL WHERE NOT (OLD.%s <=> NEW.%s)",
			QuoteMySQL(n[1]), tbl, ins, name, key, name, key, key, key),
		fmt.Sprintf("CREATE TRIGGER %s AFTER DELETE ON %s FOR EACH ROW %sVALUES (%s, 'D', OLD.%s)", QuoteMySQL(n[2]), tbl, ins, name, key),
	)...)
}

func (d *MySQL) open() (*sql.DB, error) {
	conn, err := mysql.NewConnector(d.cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

// ExecCapture runs stmts in order (MySQL DDL commits on its own; every
// statement is idempotent, so a failed run can simply be repeated).
func (d *MySQL) ExecCapture(ctx context.Context, stmts []string) error {
	db, err := d.open()
	if err != nil {
		return err
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), explainMySQL(err))
		}
	}
	return nil
}

// explainMySQL names the privilege a failed install lacks.
func explainMySQL(err error) error {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return err
	}
	switch me.Number {
	case 1142, 1227: // command denied, access denied (need privilege)
		return fmt.Errorf("%w (the user needs the TRIGGER privilege on the table, and CREATE, INSERT on %s)", err, Changelog)
	case 1419: // binary logging on, no SUPER
		return fmt.Errorf("%w (binary logging is on: grant SUPER, or set log_bin_trust_function_creators=1)", err)
	}
	return err
}

// OpenFeed checks the triggers and starts at the changelog's newest row.
func (d *MySQL) OpenFeed(ctx context.Context, t *Table, cfg *Config) (Feed, error) {
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	n := mysqlTriggers(t)
	var count int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME IN (?, ?, ?)",
		t.Name, n[0], n[1], n[2]).Scan(&count)
	if err == nil && count != 3 {
		err = fmt.Errorf("%w: %d of 3 triggers on %s", ErrNotCaptured, count, t.Name)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return openChangelogFeed(ctx, db, changelogSQL{
		next: "SELECT seq, tbl, k FROM " + Changelog + " WHERE seq > ? ORDER BY seq LIMIT " + strconv.Itoa(maxFeedKeys),
		max:  "SELECT COALESCE(MAX(seq), 0) FROM " + Changelog,
		prune: fmt.Sprintf("DELETE FROM %s WHERE seq <= ? AND ts < NOW(3) - INTERVAL %d MICROSECOND ORDER BY seq LIMIT %d",
			Changelog, cfg.ChangelogRetention.Microseconds(), pruneChunk),
	}, t, cfg)
}
