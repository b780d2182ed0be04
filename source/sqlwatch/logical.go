package sqlwatch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regbridge/regbridge/source"
)

// Change capture by PostgreSQL logical replication (Config.CDC =
// CDCLogical). The server decodes its WAL with the pgoutput plugin for
// the publication `regbridge cdc install` created and streams, per
// committed transaction in commit order, the rows inserted, updated and
// deleted, on a replication connection (replication=database) bound to a
// replication slot. The slot remembers the position regbridge confirmed,
// and the server keeps WAL from there on, so:
//
//   - Rows come from the stream itself (the text form a query returns):
//     the table is not read again for a change, and a transaction's
//     changes reach the sink as one batch at its commit.
//   - The position is confirmed to the server only once the sink accepted
//     the batch, so a change is never confirmed before it was delivered.
//   - When the stream breaks, or Run is stopped and started again with
//     the same sink, the watcher resumes at the position it delivered
//     last: it replays nothing the sink has and loses nothing the server
//     kept. It catches up to the server's position at reconnect and then
//     hands the sink one Full batch built from its state (changed rows,
//     and the keys of the rest), without reading the table.
//   - A full read happens only when the watcher has no state the sink
//     holds (first start, a new sink, new column types) or the slot is
//     gone. It then drops and recreates the slot, exporting the snapshot
//     of the slot's starting point, and reads the table in that snapshot:
//     every transaction committed before the point is in the read, every
//     one after it comes from the stream. Nothing is read twice or
//     missed.
//
// The periodic reconcile of the trigger feed is not run: a verification
// that reads rows by key would race the stream (a row read newer than the
// stream position followed by an older change from the stream would
// invent events), and the stream misses nothing while the slot exists.

const (
	// logicalAckEvery is how often, at most, the delivered position is
	// confirmed to the server while changes flow; the slot lag this adds
	// is a few hundred kilobytes at the busiest.
	logicalAckEvery = 100 * time.Millisecond
	// logicalIdle is how long the stream may stay silent before the
	// watcher asks the server for a keepalive (as feedKeepalive); with
	// pgPingTimeout it turns a black-holed connection into an outage.
	logicalIdle = feedKeepalive
	// logicalStatusEvery keeps the server's wal_sender_timeout (60 s by
	// default) from ending a quiet stream.
	logicalStatusEvery = 10 * time.Second
	// slotLagEvery is how often the slot's lag is read from the server:
	// one catalog row, cheap at this rate.
	slotLagEvery = 2 * time.Second
	// slotLagSamples bounds the history that turns a lag in bytes into
	// one in seconds (an hour at slotLagEvery).
	slotLagSamples = 1800
)

// errLogicalNotInstalled says the publication (or the replica identity)
// is missing: the watcher polls until `regbridge cdc install` ran.
var errLogicalNotInstalled = errors.New("the publication is missing (run `regbridge cdc install` with the same REGBRIDGE_SOURCE)")

// logicalState is what the watcher keeps between sessions under
// CDCLogical.
type logicalState struct {
	// lsn is the end of the last transaction the sink accepted, which is
	// also what was (or is about to be) confirmed to the server; 0 when
	// the sink holds nothing from the stream.
	lsn  pglogrepl.LSN
	sink source.Sink // the sink that accepted lsn
	// temporary: lsn is a position of a temporary slot, gone with its
	// connection.
	temporary bool
	// warned: the missing installation was logged; lagWarned: the lag
	// above SlotLagWarn was.
	warned, lagWarned bool
	lag               lagTracker
	// Read by Stats' callers on other goroutines.
	lagBytes  atomic.Int64
	lagMillis atomic.Int64
	lagKnown  atomic.Bool
	slot      atomic.Pointer[string]
}

// sameSink reports whether a and b are one sink, without panicking on
// sinks that cannot be compared.
func sameSink(a, b source.Sink) bool {
	if a == nil || b == nil {
		return false
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Type() == vb.Type() && va.Comparable() && va.Equal(vb)
}

// replConn opens a replication connection (replication=database: the
// walsender takes replication commands and plain SQL).
func (d *Postgres) replConn(ctx context.Context) (*pgconn.PgConn, error) {
	cfg := d.cfg.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	return pgconn.ConnectConfig(ctx, cfg)
}

// logicalCheck is what the server has of the installation.
type logicalCheck struct {
	published, identity, slot bool
	slotDB                    string
	confirmed                 pglogrepl.LSN // the slot's confirmed_flush_lsn
	// lost: the server invalidated the slot (max_slot_wal_keep_size);
	// it cannot stream any more. active: a process streams from it.
	lost, active bool
}

// checkLogical asks, in one query on the replication connection, whether
// the publication covers t, whether its replica identity includes the key
// and whether the slot exists (and in which database).
func checkLogical(ctx context.Context, conn *pgconn.PgConn, t *Table, pub, slot string) (logicalCheck, error) {
	tbl := QuotePostgres(t.Name)
	q := fmt.Sprintf(`SELECT
  EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
          WHERE p.pubname = '%s' AND pr.prrelid = to_regclass('%s')),
  coalesce((SELECT c.relreplident = 'f' OR EXISTS (
      SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
        AND (SELECT attnum FROM pg_attribute WHERE attrelid = c.oid AND attname = '%s') = ANY (i.indkey::smallint[])
        AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
    FROM pg_class c WHERE c.oid = to_regclass('%s')), false),
  coalesce((SELECT database FROM pg_replication_slots WHERE slot_name = '%s'), ''),
  coalesce((SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'), '0/0'),
  coalesce((SELECT wal_status FROM pg_replication_slots WHERE slot_name = '%s'), ''),
  EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s' AND active_pid IS NOT NULL)`,
		pub, tbl, t.Columns[t.Key], tbl, slot, slot, slot, slot)
	res, err := conn.Exec(ctx, q).ReadAll()
	if err != nil {
		return logicalCheck{}, err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 6 {
		return logicalCheck{}, errors.New("unexpected answer to the installation check")
	}
	r := res[0].Rows[0]
	c := logicalCheck{published: string(r[0]) == "t", identity: string(r[1]) == "t", slotDB: string(r[2])}
	c.slot, c.lost, c.active = c.slotDB != "", string(r[4]) == "lost", string(r[5]) == "t"
	c.confirmed, err = pglogrepl.ParseLSN(string(r[3]))
	return c, err
}

// logicalSession runs one session under CDCLogical on the open session s.
// handled is false when logical replication is not installed: the caller
// polls instead.
func (w *Watcher) logicalSession(ctx context.Context, sink source.Sink, s Session, recovered func()) (handled bool, err error) {
	d, ok := w.dialect.(*Postgres)
	ps, ok2 := s.(*pgSession)
	if !ok || !ok2 {
		if !w.logical.warned {
			w.logical.warned = true
			w.log.Warn("cdc=logical ignored: it needs a PostgreSQL store; polling", "poll_interval", w.cfg.PollInterval)
		}
		return false, nil
	}
	pub, slot := d.logicalNames(&w.table, w.cfg.Slot)
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	conn, err := d.replConn(qctx)
	if err != nil {
		return true, fmt.Errorf("opening replication connection: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), pgCloseTimeout)
		defer cancel()
		conn.Close(cctx)
	}()
	chk, err := checkLogical(qctx, conn, &w.table, pub, slot)
	if err != nil {
		return true, fmt.Errorf("checking logical replication of %s: %w", w.table.Name, err)
	}
	switch {
	case !chk.published || !chk.identity:
		if !w.logical.warned {
			w.logical.warned = true
			why := errLogicalNotInstalled.Error()
			if chk.published {
				why = "the table's REPLICA IDENTITY lacks the key " + w.table.Columns[w.table.Key] + ", so deletes cannot be told apart (run `regbridge cdc install`)"
			}
			w.log.Warn("cdc=logical configured but not usable; polling until it is", "why", why, "publication", pub, "poll_interval", w.cfg.PollInterval)
		}
		w.cdcRunning = false
		w.feedMode.Store(nil)
		return false, nil
	case chk.slot && chk.slotDB != d.cfg.Database:
		return true, fmt.Errorf("replication slot %s belongs to database %s: give this source its own with slot=", slot, chk.slotDB)
	}
	if w.logical.warned || !w.cdcRunning {
		w.log.Info("change capture by logical replication active", "publication", pub, "slot", slot)
	}
	w.logical.warned, w.cdcRunning = false, true
	w.feedMode.Store(&modeLogical)

	resume := w.keyed != nil && w.snap.synced && w.logical.lsn != 0 && sameSink(sink, w.logical.sink) && !w.logical.temporary
	if chk.lost {
		// Dropped below: a full read and a new slot follow.
		w.log.Warn("replication slot was invalidated by the server (max_slot_wal_keep_size): changes it held are lost; recreating it and reading the table in full", "slot", slot)
		resume = false
	}
	if resume && (!chk.slot || chk.confirmed > w.logical.lsn) {
		// Gone, or made anew (its position is past ours: the server
		// would skip what lies between).
		w.log.Warn("replication slot is gone: changes after the last delivered position may be lost; recreating it and reading the table in full",
			"slot", slot, "lsn", w.logical.lsn.String(), "slot_confirmed", chk.confirmed.String())
		resume = false
	}
	temporary := !resume && chk.slot && chk.active && !chk.lost
	if temporary {
		// Another process streams from the slot: most likely another
		// regbridge with the same slot. A temporary slot of our own
		// serves this session and vanishes with its connection, so
		// nothing is left behind; it cannot be resumed.
		w.log.Warn("replication slot is in use by another process; using a temporary slot (a reconnect reads the table in full): give each regbridge its own slot= to resume instead", "slot", slot)
		slot = temporarySlot(slot)
	}
	w.logical.slot.Store(&slot)
	ls := &logicalStream{w: w, ps: ps, conn: conn, sink: sink, slot: slot, recovered: recovered,
		row: make([]Value, len(w.table.Columns)+1), touched: make(map[string]struct{})}
	var start pglogrepl.LSN
	if resume {
		sys, err := pglogrepl.IdentifySystem(qctx, conn)
		if err != nil {
			return true, fmt.Errorf("identifying the server: %w", err)
		}
		start, ls.catchUp, ls.target = w.logical.lsn, true, sys.XLogPos
		w.log.Info("resuming replication", "slot", slot, "lsn", start.String(), "server_lsn", sys.XLogPos.String())
	} else {
		if start, err = w.logicalSnapshot(ctx, qctx, conn, ps, sink, slot, chk.slot && !temporary, temporary); err != nil {
			return true, err
		}
	}
	cancel()
	// A fresh deadline: reading a large table may have outlasted qctx.
	sctx, cancel := w.queryContext(ctx)
	defer cancel()
	args := []string{"proto_version '1'", "publication_names '" + pub + "'"}
	if err := pglogrepl.StartReplication(sctx, conn, slot, start, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return true, fmt.Errorf("starting replication from slot %s: %w", slot, explainLogical(err))
	}
	cancel()
	ls.applied, ls.confirmed = start, 0
	return true, ls.run(ctx)
}

// logicalSnapshot (re)creates the slot, reads the table in the snapshot
// of its starting point and delivers it as a Full batch; it returns the
// starting point.
func (w *Watcher) logicalSnapshot(ctx, qctx context.Context, conn *pgconn.PgConn, ps *pgSession, sink source.Sink, slot string, exists, temporary bool) (pglogrepl.LSN, error) {
	if exists {
		// Its position says nothing about the fresh read: start anew.
		if err := pglogrepl.DropReplicationSlot(qctx, conn, slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return 0, fmt.Errorf("dropping replication slot %s to start anew: %w (another regbridge may use it: give each its own slot=)", slot, explainLogical(err))
		}
	}
	res, err := pglogrepl.CreateReplicationSlot(qctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: temporary, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return 0, fmt.Errorf("creating replication slot %s: %w", slot, explainLogical(err))
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("replication slot %s: %w", slot, err)
	}
	w.log.Info("replication slot created; reading the table in full in its snapshot", "slot", slot, "lsn", start.String())
	seenAt := time.Now()
	err = ps.inSnapshot(ctx, res.SnapshotName, func() error { return w.read(ctx, ps) })
	if err != nil {
		return 0, err
	}
	w.up.Store(true)
	if !w.deliver(ctx, sink, seenAt, true) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, errors.New("sink rejected the snapshot")
	}
	w.logical.lsn, w.logical.sink, w.logical.temporary = start, sink, temporary
	return start, nil
}

// temporarySlot names a temporary slot after slot, unique to this
// process and moment.
func temporarySlot(slot string) string {
	var b [4]byte
	rand.Read(b[:])
	suffix := fmt.Sprintf("_tmp_%x", b)
	return slot[:min(len(slot), 63-len(suffix))] + suffix
}
