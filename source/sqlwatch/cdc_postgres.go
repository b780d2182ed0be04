package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regbridge/regbridge/source"
)

// PostgreSQL change capture: an AFTER INSERT OR UPDATE OR DELETE FOR EACH
// ROW trigger calls pg_notify(channel, op || ':' || key). Notifications
// are delivered at COMMIT to the sessions listening then, so the feed's
// connection LISTENs before the watcher's snapshot; the payload is only
// the key, far below the 8000-byte limit.

const (
	// pgTrigger is the trigger's name on the registrar's table.
	pgTrigger = "regbridge_cdc"
	// pgPingTimeout bounds the liveness check of a silent LISTEN
	// connection.
	pgPingTimeout = 5 * time.Second
)

var _ Capturer = (*Postgres)(nil)

// pgNames are the function and channel of t (plain identifiers, at most
// 63 bytes as PostgreSQL keeps them).
func pgNames(t *Table) (fn, channel string) {
	fn = "regbridge_cdc_" + t.Name
	if len(fn) > 63 {
		fn = fn[:63]
	}
	return fn, fn
}

// CaptureSQL is the trigger function and trigger (install), or their
// removal. Nothing else of the table changes.
func (d *Postgres) CaptureSQL(t *Table, install bool) []string {
	fn, ch := pgNames(t)
	tbl, key := QuotePostgres(t.Name), QuotePostgres(t.Columns[t.Key])
	if !install {
		return []string{
			fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgTrigger, tbl),
			fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", QuotePostgres(fn)),
		}
	}
	return []string{
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $regbridge$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('%s', 'D:' || OLD.%s::text);
  ELSE
    PERFORM pg_notify('%s', left(TG_OP, 1) || ':' || NEW.%s::text);
    IF TG_OP = 'UPDATE' AND OLD.%s IS DISTINCT FROM NEW.%s THEN
      PERFORM pg_notify('%s', 'D:' || OLD.%s::text);
    END IF;
  END IF;
  RETURN NULL;
END
$regbridge$`, QuotePostgres(fn), ch, key, ch, key, key, key, ch, key),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgTrigger, tbl),
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()",
			pgTrigger, tbl, QuotePostgres(fn)),
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

// OpenFeed connects, checks the trigger and LISTENs.
func (d *Postgres) OpenFeed(ctx context.Context, t *Table, _ *Config) (Feed, error) {
	conn, err := pgx.ConnectConfig(ctx, d.cfg)
	if err != nil {
		return nil, err
	}
	f := &pgFeed{conn: conn}
	_, ch := pgNames(t)
	var ok bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)",
		QuotePostgres(t.Name), pgTrigger).Scan(&ok)
	if err == nil && !ok {
		err = ErrNotCaptured
	}
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+QuotePostgres(ch))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type pgFeed struct {
	conn *pgx.Conn
}

func (f *pgFeed) Next(ctx context.Context) ([]string, bool, error) {
	kctx, cancel := context.WithTimeout(ctx, feedKeepalive)
	n, err := f.conn.WaitForNotification(kctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil || kctx.Err() == nil || f.conn.IsClosed() {
			return nil, false, err
		}
		pctx, cancel := context.WithTimeout(ctx, pgPingTimeout)
		defer cancel()
		return nil, false, f.conn.Ping(pctx) // silent: is it alive?
	}
	keys := []string{payloadKey(n.Payload)}
	deadline := time.Now().Add(feedLinger)
	for len(keys) < maxFeedKeys {
		lctx, cancel := context.WithDeadline(ctx, deadline)
		n, err := f.conn.WaitForNotification(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && lctx.Err() != nil && !f.conn.IsClosed() {
				break // linger over; the connection stays usable
			}
			return nil, false, err
		}
		keys = append(keys, payloadKey(n.Payload))
	}
	return keys, false, nil
}

// payloadKey takes the key from "op:key" ("" when malformed: the caller
// then reads the whole table).
func payloadKey(p string) string {
	_, k, ok := strings.Cut(p, ":")
	if !ok {
		return ""
	}
	return k
}

func (f *pgFeed) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), pgCloseTimeout)
	defer cancel()
	return f.conn.Close(ctx)
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
-- and run uninstall (it drops the slot) when regbridge is retired.`

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
