package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
