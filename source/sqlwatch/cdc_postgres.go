package sqlwatch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/regbridge/regbridge/source"
)

// PostgreSQL change capture: an AFTER INSERT OR UPDATE OR DELETE FOR EACH
// ROW trigger appends to the changelog (changelog.go), as on MySQL. An
// earlier version called pg_notify instead; at COMMIT, PostgreSQL queues
// notifications under one lock for the whole cluster, held until the
// commit is flushed, so every registrar transaction that fired the trigger
// committed one after another (docs/performance.md). OpenFeed refuses
// such an install; `regbridge cdc install` replaces it.

const (
	// pgTrigger is the trigger's name on the registrar's table.
	pgTrigger = "regbridge_cdc"
	// pgPingTimeout bounds the liveness check of a silent replication
	// connection.
	pgPingTimeout = 5 * time.Second
)

var _ Capturer = (*Postgres)(nil)

// ErrOldCapture says the table carries the pg_notify trigger of an older
// regbridge.
var ErrOldCapture = fmt.Errorf("%w: the trigger is an older regbridge's, which calls pg_notify and serialises the registrar's commits; run `regbridge cdc install` again to replace it", ErrNotCaptured)

// pgFunction is the trigger function of t (a plain identifier, at most 63
// bytes as PostgreSQL keeps it).
func pgFunction(t *Table) string {
	fn := "regbridge_cdc_" + t.Name
	if len(fn) > 63 {
		fn = fn[:63]
	}
	return fn
}

// CaptureSQL is the changelog, the trigger function and the trigger
// (install; CREATE OR REPLACE turns the pg_notify function of an older
// install into the new one), or their removal: the changelog goes with
// the last regbridge trigger of the database.
func (d *Postgres) CaptureSQL(t *Table, install bool) []string {
	fn := QuotePostgres(pgFunction(t))
	tbl, key := QuotePostgres(t.Name), QuotePostgres(t.Columns[t.Key])
	dropTrigger := fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgTrigger, tbl)
	if !install {
		return []string{
			dropTrigger,
			fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", fn),
			fmt.Sprintf(`DO $regbridge$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '%s') THEN
    DROP TABLE IF EXISTS %s;
  END IF;
END
$regbridge$`, pgTrigger, Changelog),
		}
	}
	ins := fmt.Sprintf("INSERT INTO %s (tbl, op, k) VALUES ('%s', ", Changelog, strings.ReplaceAll(t.Name, "'", "''"))
	return []string{
		"CREATE TABLE IF NOT EXISTS " + Changelog + ` (
  seq bigserial PRIMARY KEY,
  tbl text NOT NULL,
  op char(1) NOT NULL,
  k text NOT NULL,
  ts timestamptz NOT NULL DEFAULT now()
)`,
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $regbridge$
BEGIN
  IF TG_OP = 'DELETE' THEN
    %s'D', OLD.%s::text);
  ELSE
    %sleft(TG_OP, 1), NEW.%s::text);
    IF TG_OP = 'UPDATE' AND OLD.%s IS DISTINCT FROM NEW.%s THEN
      %s'D', OLD.%s::text);
    END IF;
  END IF;
  RETURN NULL;
END
$regbridge$`, fn, ins, key, ins, key, key, key, ins, key),
		dropTrigger,
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()",
			pgTrigger, tbl, fn),
	}
}

// ExecCapture runs stmts in one transaction (DDL is transactional in
// PostgreSQL: the trigger is never half installed).
func (d *Postgres) ExecCapture(ctx context.Context, stmts []string) error {
	conn, err := pgx.ConnectConfig(ctx, d.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", firstLine(s), err)
			}
		}
		return nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" { // insufficient_privilege
		return fmt.Errorf("%w (the user needs the TRIGGER privilege on the table and CREATE on its schema, or to own the table)", err)
	}
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// OpenFeed checks the trigger and its function, and starts at the
// changelog's newest row.
func (d *Postgres) OpenFeed(ctx context.Context, t *Table, cfg *Config) (Feed, error) {
	db := stdlib.OpenDB(*d.cfg)
	db.SetMaxOpenConns(1)
	// The function's source tells the current install from an older one
	// (pg_notify); no function, no changelog or no trigger: not installed.
	var src sql.NullString
	var changelog bool
	err := db.QueryRowContext(ctx, `SELECT (SELECT p.prosrc FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
  WHERE g.tgrelid = to_regclass($1) AND g.tgname = $2), to_regclass($3) IS NOT NULL`,
		QuotePostgres(t.Name), pgTrigger, Changelog).Scan(&src, &changelog)
	switch {
	case err != nil:
	case src.Valid && strings.Contains(src.String, "pg_notify"):
		err = fmt.Errorf("%w (table %s)", ErrOldCapture, t.Name)
	case !src.Valid || !changelog:
		err = fmt.Errorf("%w: no %s trigger on %s, or no %s", ErrNotCaptured, pgTrigger, t.Name, Changelog)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return openChangelogFeed(ctx, db, changelogSQL{
		next: "SELECT seq, tbl, k FROM " + Changelog + " WHERE seq > $1 ORDER BY seq LIMIT " + strconv.Itoa(maxFeedKeys),
		max:  "SELECT COALESCE(MAX(seq), 0) FROM " + Changelog,
		prune: fmt.Sprintf("DELETE FROM %s WHERE seq IN (SELECT seq FROM %s WHERE seq <= $1 AND ts < now() - interval '%d microseconds' ORDER BY seq LIMIT %d)",
			Changelog, Changelog, cfg.ChangelogRetention.Microseconds(), pruneChunk),
	}, t, cfg)
}

// What `regbridge cdc install|uninstall` does for cdc=logical: a
// publication of the location table, a logical replication slot using the
// pgoutput plugin, and a replica identity that puts the watcher's key in
// every DELETE (the watcher keys rows by a column, such as Kamailio's
// ruid, that need not be the primary key: Kamailio's key is id). Nothing
// else touches the registrar's table: no trigger, no changelog.

const (
	// slotDropWait bounds how long uninstall waits for a streaming
	// regbridge to let go of its slot after it was told to stop.
	slotDropWait = 10 * time.Second
	// sqlObjectInUse is SQLSTATE 55006 (a slot still active).
	sqlObjectInUse = "55006"
)

// LogicalSettings says what the server needs for cdc=logical; `regbridge
// cdc` prints it.
const LogicalSettings = `-- cdc=logical needs, on the PostgreSQL server:
--   wal_level = logical            (postgresql.conf; a restart applies it)
--   max_replication_slots >= 1 free slot per regbridge instance (default 10)
--   max_wal_senders >= 1 free sender per regbridge instance (default 10)
--   a user with the REPLICATION attribute (or a superuser) that may read
--   the table and, for install, owns it (CREATE PUBLICATION, ALTER TABLE)
--   pg_hba.conf: the user may connect to the database (replication=database
--   connections match the database's own lines)
-- The table's REPLICA IDENTITY must include the watched key: install keeps
-- the primary key when it is the key, else uses a unique index on the key
-- (Kamailio: the ruid index), else FULL.
-- A slot keeps WAL until regbridge confirms it: watch slot lag in /metrics,
-- and run uninstall (it drops the slot) when regbridge is retired.
-- Latency: a change is streamed once its commit is flushed. With
-- synchronous_commit = off for the table's writers that waits for the WAL
-- writer (wal_writer_delay, 200ms by default): keep it on for them, or
-- lower wal_writer_delay. The WAL sender also needs a free CPU at once:
-- see docs/postgres-logical.md, "Where the tail comes from".`

// logicalNames are the publication and slot of t (slot: the configured
// one, else regbridge_<database>_<table>, which keeps two databases on one
// server apart, since slots are per server).
func (d *Postgres) logicalNames(t *Table, slot string) (pub, slotName string) {
	pub = strings.ToLower("regbridge_" + t.Name)
	if len(pub) > 63 {
		pub = pub[:63]
	}
	if slot != "" {
		return pub, slot
	}
	b := []byte(strings.ToLower("regbridge_" + d.cfg.Database + "_" + t.Name))
	for i, c := range b {
		if !(c == '_' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	return pub, string(b)
}

// LogicalSQL is the SQL of `regbridge cdc install` (install) or
// `uninstall` for cdc=logical; every statement is idempotent and runs on
// its own (a slot cannot be created in a transaction that wrote).
// Uninstall keeps the replica identity: it costs nothing but a key in the
// WAL of each DELETE, and another consumer may rely on it.
func (d *Postgres) LogicalSQL(t *Table, slot string, install bool) []string {
	pub, slot := d.logicalNames(t, slot)
	tbl := QuotePostgres(t.Name)
	if !install {
		return []string{
			"DROP PUBLICATION IF EXISTS " + pub,
			// A running regbridge holds its slot: end its stream (it
			// finds the publication gone and polls), then drop the slot.
			fmt.Sprintf("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%s' AND active_pid IS NOT NULL", slot),
			fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s'", slot),
		}
	}
	return []string{
		fmt.Sprintf(`DO $regbridge$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '%s') THEN
    CREATE PUBLICATION %s FOR TABLE %s;
  END IF;
END
$regbridge$`, pub, pub, tbl),
		fmt.Sprintf(`DO $regbridge$
DECLARE
  rel regclass := '%s'::regclass;
  keycol smallint := (SELECT attnum FROM pg_attribute WHERE attrelid = '%s'::regclass AND attname = '%s');
  idx text;
BEGIN
  -- Already enough: FULL, or an identity whose columns include the key.
  IF (SELECT relreplident FROM pg_class WHERE oid = rel) = 'f' OR EXISTS (
      SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
      WHERE i.indrelid = rel AND keycol = ANY (i.indkey::smallint[])
        AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))) THEN
    RETURN;
  END IF;
  -- A unique index on the key alone (NOT NULL, not partial, immediate).
  SELECT quote_ident(ic.relname) INTO idx
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = keycol
    WHERE i.indrelid = rel AND i.indisunique AND i.indimmediate AND i.indpred IS NULL
      AND i.indnatts = 1 AND i.indkey[0] = keycol AND a.attnotnull
    LIMIT 1;
  IF idx IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %%s REPLICA IDENTITY USING INDEX %%s', rel, idx);
  ELSE
    ALTER TABLE %s REPLICA IDENTITY FULL;
  END IF;
END
$regbridge$`, tbl, tbl, t.Columns[t.Key], tbl),
		fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s')", slot, slot),
	}
}

// ExecLogical runs stmts from LogicalSQL one by one on a connection of its
// own, after checking that the server can do logical replication at all.
func (d *Postgres) ExecLogical(ctx context.Context, stmts []string) error {
	conn, err := pgx.ConnectConfig(ctx, d.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var level string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&level); err != nil {
		return err
	}
	if level != "logical" {
		return fmt.Errorf("wal_level is %s: set wal_level = logical in postgresql.conf and restart PostgreSQL", level)
	}
	for _, s := range stmts {
		deadline := time.Now().Add(slotDropWait)
		for {
			_, err = conn.Exec(ctx, s)
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == sqlObjectInUse && time.Now().Before(deadline) {
				// The stream just told to stop still holds the slot.
				if !source.Sleep(ctx, 100*time.Millisecond) {
					return ctx.Err()
				}
				continue
			}
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), explainLogical(err))
		}
	}
	return nil
}

// explainLogical names the privilege or setting a failed statement lacks.
func explainLogical(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case "42501": // insufficient_privilege
		return fmt.Errorf("%w (the user needs the REPLICATION attribute, or superuser, and must own the table)", err)
	case "53400": // configuration_limit_exceeded
		return fmt.Errorf("%w (raise max_replication_slots, or drop a slot nobody uses)", err)
	case sqlObjectInUse:
		return fmt.Errorf("%w (the slot is in use: by this regbridge's previous connection until the server notices it is gone, see wal_sender_timeout, or by another regbridge: give each its own slot=)", err)
	case "55000": // object_not_in_prerequisite_state
		return fmt.Errorf("%w (logical replication needs wal_level = logical)", err)
	}
	return err
}
