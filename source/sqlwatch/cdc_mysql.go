package sqlwatch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL/MariaDB change capture: AFTER INSERT/UPDATE/DELETE triggers append
// (seq, tbl, op, key, ts) to regbridge_changelog; the feed reads it by
// sequence number every ChangelogPoll (a range read on the primary key)
// and prunes rows it has read once they are ChangelogRetention old. There
// is no binlog client available to this project
// (docs/stores.md#change-capture-cdctrigger).

// Changelog is the table the MySQL triggers write.
const Changelog = "regbridge_changelog"

const (
	// prunePeriod is how often read changelog rows are pruned.
	prunePeriod = 10 * time.Second
	// pruneChunk bounds one DELETE (short locks on a table the
	// registrar's transactions insert into), pruneChunks one pruning.
	pruneChunk  = 1000
	pruneChunks = 20
	// holeWait is how long a missing sequence number holds the read
	// position back: AUTO_INCREMENT hands out numbers at INSERT, not at
	// COMMIT, so a row may appear behind rows already read (a transaction
	// committing late). After holeWait the number is taken as rolled back.
	holeWait = time.Second
)

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
	f := &mysqlFeed{db: db, table: t.Name, poll: cfg.ChangelogPoll, keep: cfg.ChangelogRetention, pruned: time.Now()}
	n := mysqlTriggers(t)
	var count int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME IN (?, ?, ?)",
		t.Name, n[0], n[1], n[2]).Scan(&count)
	if err == nil && count != 3 {
		err = fmt.Errorf("%w: %d of 3 triggers on %s", ErrNotCaptured, count, t.Name)
	}
	if err == nil {
		f.last, err = f.max(ctx)
		f.low = f.last
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	f.next = "SELECT seq, tbl, k FROM " + Changelog + " WHERE seq > ? ORDER BY seq LIMIT " + strconv.Itoa(maxFeedKeys)
	f.seen = make(map[uint64]struct{})
	return f, nil
}

// mysqlFeed reads the changelog rows of one table. Every row up to low
// has been read (or its number was skipped for longer than holeWait);
// seen holds the numbers read above low, last is the highest.
type mysqlFeed struct {
	db         *sql.DB
	table      string
	next       string
	poll, keep time.Duration
	low, last  uint64
	seen       map[uint64]struct{}
	holeSince  time.Time
	pruned     time.Time
}

func (f *mysqlFeed) max(ctx context.Context) (uint64, error) {
	var n uint64
	err := f.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM "+Changelog).Scan(&n)
	return n, err
}

// Next waits one ChangelogPoll and reads the changelog rows after the
// last one read (no keys: nothing new).
func (f *mysqlFeed) Next(ctx context.Context) ([]string, bool, error) {
	t := time.NewTimer(f.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-t.C:
	}
	keys, err := f.read(ctx)
	if err != nil || len(keys) > 0 {
		return keys, false, err
	}
	// Nothing new. A changelog emptied by hand, or an AUTO_INCREMENT
	// restarted below our position, may hide changes: report a gap.
	max, err := f.max(ctx)
	if err != nil {
		return nil, false, err
	}
	if max < f.last {
		f.low, f.last = max, max
		clear(f.seen)
		return nil, true, nil
	}
	if time.Since(f.pruned) >= min(prunePeriod, f.keep) {
		if err := f.prune(ctx); err != nil {
			return nil, false, err
		}
	}
	return nil, false, nil
}

func (f *mysqlFeed) read(ctx context.Context) ([]string, error) {
	rows, err := f.db.QueryContext(ctx, f.next, f.low)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	low, hole := f.low, false
	for rows.Next() {
		var seq uint64
		var tbl, k string
		if err := rows.Scan(&seq, &tbl, &k); err != nil {
			return nil, err
		}
		switch {
		case !hole && seq == low+1:
			low = seq
		default:
			hole = true
		}
		f.last = max(f.last, seq)
		if _, ok := f.seen[seq]; ok {
			continue
		}
		f.seen[seq] = struct{}{}
		if tbl == f.table {
			keys = append(keys, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case !hole:
		f.holeSince = time.Time{}
	case f.holeSince.IsZero():
		f.holeSince = time.Now()
	case time.Since(f.holeSince) >= holeWait:
		low, f.holeSince = f.last, time.Time{}
	}
	f.low = low
	for seq := range f.seen {
		if seq <= low {
			delete(f.seen, seq)
		}
	}
	return keys, nil
}

// prune deletes read rows older than the retention, in small chunks.
func (f *mysqlFeed) prune(ctx context.Context) error {
	f.pruned = time.Now()
	q := fmt.Sprintf("DELETE FROM %s WHERE seq <= ? AND ts < NOW(3) - INTERVAL %d MICROSECOND ORDER BY seq LIMIT %d",
		Changelog, f.keep.Microseconds(), pruneChunk)
	for range pruneChunks {
		res, err := f.db.ExecContext(ctx, q, f.low)
		if err != nil {
			return fmt.Errorf("pruning %s: %w", Changelog, err)
		}
		if n, _ := res.RowsAffected(); n < pruneChunk {
			break
		}
	}
	return nil
}

func (f *mysqlFeed) Close() error { return f.db.Close() }
