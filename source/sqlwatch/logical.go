package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

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

// SlotLag is how far a replication slot is behind the server's WAL.
type SlotLag struct {
	Slot    string
	Bytes   int64
	Seconds float64
}

// SlotLag reports the replication slot's lag under cdc=logical; false
// when there is no slot or it was not measured yet.
func (w *Watcher) SlotLag() (SlotLag, bool) {
	l := &w.logical
	name := l.slot.Load()
	if name == nil || !l.lagKnown.Load() {
		return SlotLag{}, false
	}
	return SlotLag{Slot: *name, Bytes: l.lagBytes.Load(), Seconds: float64(l.lagMillis.Load()) / 1000}, true
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
  coalesce((SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'), '0/0')`,
		pub, tbl, t.Columns[t.Key], tbl, slot, slot)
	res, err := conn.Exec(ctx, q).ReadAll()
	if err != nil {
		return logicalCheck{}, err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 4 {
		return logicalCheck{}, errors.New("unexpected answer to the installation check")
	}
	r := res[0].Rows[0]
	c := logicalCheck{published: string(r[0]) == "t", identity: string(r[1]) == "t", slotDB: string(r[2])}
	c.slot = c.slotDB != ""
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
	w.logical.slot.Store(&slot)
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
		return false, nil
	case chk.slot && chk.slotDB != d.cfg.Database:
		return true, fmt.Errorf("replication slot %s belongs to database %s: give this source its own with slot=", slot, chk.slotDB)
	}
	if w.logical.warned || !w.cdcRunning {
		w.log.Info("change capture by logical replication active", "publication", pub, "slot", slot)
	}
	w.logical.warned, w.cdcRunning = false, true

	ls := &logicalStream{w: w, ps: ps, conn: conn, sink: sink, slot: slot, recovered: recovered,
		row: make([]Value, len(w.table.Columns)+1), touched: make(map[string]struct{})}
	resume := w.keyed != nil && w.snap.synced && w.logical.lsn != 0 && sameSink(sink, w.logical.sink)
	if resume && (!chk.slot || chk.confirmed > w.logical.lsn) {
		// Gone, or made anew (its position is past ours: the server
		// would skip what lies between).
		w.log.Warn("replication slot is gone: changes after the last delivered position may be lost; recreating it and reading the table in full",
			"slot", slot, "lsn", w.logical.lsn.String(), "slot_confirmed", chk.confirmed.String())
		resume = false
	}
	var start pglogrepl.LSN
	if resume {
		sys, err := pglogrepl.IdentifySystem(qctx, conn)
		if err != nil {
			return true, fmt.Errorf("identifying the server: %w", err)
		}
		start, ls.catchUp, ls.target = w.logical.lsn, true, sys.XLogPos
		w.log.Info("resuming replication", "slot", slot, "lsn", start.String(), "server_lsn", sys.XLogPos.String())
	} else {
		if start, err = w.logicalSnapshot(ctx, qctx, conn, ps, sink, slot, chk.slot); err != nil {
			return true, err
		}
	}
	args := []string{"proto_version '1'", "publication_names '" + pub + "'"}
	if err := pglogrepl.StartReplication(qctx, conn, slot, start, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return true, fmt.Errorf("starting replication from slot %s: %w", slot, explainLogical(err))
	}
	cancel()
	ls.applied, ls.confirmed = start, 0
	return true, ls.run(ctx)
}

// logicalSnapshot (re)creates the slot, reads the table in the snapshot
// of its starting point and delivers it as a Full batch; it returns the
// starting point.
func (w *Watcher) logicalSnapshot(ctx, qctx context.Context, conn *pgconn.PgConn, ps *pgSession, sink source.Sink, slot string, exists bool) (pglogrepl.LSN, error) {
	if exists {
		// Its position says nothing about the fresh read: start anew.
		if err := pglogrepl.DropReplicationSlot(qctx, conn, slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return 0, fmt.Errorf("dropping replication slot %s to start anew: %w (another regbridge may use it: give each its own slot=)", slot, explainLogical(err))
		}
	}
	res, err := pglogrepl.CreateReplicationSlot(qctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
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
	w.logical.lsn, w.logical.sink = start, sink
	return start, nil
}

// logicalStream is one replication stream being applied.
type logicalStream struct {
	w         *Watcher
	ps        *pgSession
	conn      *pgconn.PgConn
	sink      source.Sink
	slot      string
	recovered func()

	// The relation of the watched table: for each of its columns the
	// index in Table.Columns (-1: not read), where the key is, and the
	// column types (a change of them needs a new session).
	relID  uint32
	cols   []int
	keyPos int
	types  []uint32
	row    []Value

	inTxn    bool
	stepOpen bool
	touched  map[string]struct{} // keys changed in the open step
	seenAt   time.Time           // when the open step's first transaction began arriving
	pending  pglogrepl.LSN       // end of the last transaction in the open step

	// catchUp: after a resume, transactions are collected until the
	// stream reaches target (the server's position at reconnect), then
	// delivered as one Full batch.
	catchUp bool
	target  pglogrepl.LSN

	applied   pglogrepl.LSN // delivered (or idle WAL passed with nothing pending)
	confirmed pglogrepl.LSN // last position sent to the server
	lastAck   time.Time
	lastRecv  time.Time
	pinged    bool
	nextLag   time.Time
}

func (ls *logicalStream) run(ctx context.Context) error {
	w := ls.w
	now := time.Now()
	ls.lastRecv, ls.lastAck, ls.nextLag = now, now, now
	if ls.catchUp {
		ls.openStep(now)
	} else {
		ls.recovered()
	}
	for {
		if err := ls.housekeeping(ctx); err != nil {
			return err
		}
		wait := logicalIdle
		if ls.catchUp || ls.applied > ls.confirmed {
			wait = logicalAckEvery
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := ls.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("replication stream of %s: %w", w.table.Name, err)
		}
		ls.lastRecv, ls.pinged = time.Now(), false
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := ls.copyData(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream of %s: %w", w.table.Name, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return fmt.Errorf("replication stream of %s ended by the server", w.table.Name)
		}
	}
}

// copyData handles one message of the stream: a keepalive or WAL data.
func (ls *logicalStream) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err == nil {
			err = ls.passed(ctx, k.ServerWALEnd)
		}
		if err == nil && k.ReplyRequested {
			err = ls.ack(true, false)
		}
		return err
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return err
		}
		return ls.apply(ctx, x.WALData)
	}
	return nil
}

// housekeeping confirms what was delivered, pings a silent server,
// measures the slot's lag and, while catching up, asks where the server
// is.
func (ls *logicalStream) housekeeping(ctx context.Context) error {
	now := time.Now()
	silent := now.Sub(ls.lastRecv)
	if silent > pgPingTimeout {
		return fmt.Errorf("replication stream of %s silent for %v", ls.w.table.Name, silent.Round(time.Millisecond))
	}
	ask := ls.catchUp || (silent > logicalIdle && !ls.pinged)
	if ask {
		ls.pinged = true
	}
	if err := ls.ack(false, ask); err != nil {
		return err
	}
	if !now.Before(ls.nextLag) {
		ls.nextLag = now.Add(slotLagEvery)
		qctx, cancel := ls.w.queryContext(ctx)
		defer cancel()
		if err := ls.w.measureSlotLag(qctx, ls.ps, ls.slot); err != nil {
			return fmt.Errorf("reading the lag of slot %s: %w", ls.slot, err)
		}
	}
	return nil
}

// ack confirms the applied position to the server when it moved and the
// last confirmation is logicalAckEvery old (now: at once), or when a reply
// is wanted, and at least every logicalStatusEvery.
func (ls *logicalStream) ack(now, reply bool) error {
	since := time.Since(ls.lastAck)
	moved := ls.applied > ls.confirmed && (now || since >= logicalAckEvery)
	if !moved && !reply && since < logicalStatusEvery {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), ls.conn,
		pglogrepl.StandbyStatusUpdate{WALWritePosition: ls.applied, ReplyRequested: reply})
	if err != nil {
		return fmt.Errorf("confirming position to slot %s: %w", ls.slot, err)
	}
	ls.confirmed, ls.lastAck = ls.applied, time.Now()
	return nil
}

// passed handles a keepalive: the server has sent everything before pos.
// With no transaction open or undelivered, pos may be confirmed (the
// slot then advances over WAL that concerns other tables); while catching
// up, reaching the target ends the catch-up.
func (ls *logicalStream) passed(ctx context.Context, pos pglogrepl.LSN) error {
	ls.w.polls.Add(1) // the store answered
	if ls.inTxn {
		return nil
	}
	if ls.catchUp {
		if pos < ls.target {
			return nil
		}
		return ls.finishCatchUp(ctx)
	}
	if !ls.stepOpen && pos > ls.applied {
		ls.applied = pos
		ls.w.logical.lsn = pos
	}
	return nil
}

func (ls *logicalStream) openStep(now time.Time) {
	ls.w.snap.beginStep()
	clear(ls.touched)
	ls.stepOpen, ls.seenAt = true, now
}

// apply decodes one pgoutput message and applies it.
func (ls *logicalStream) apply(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("decoding replication message %q: %w", data[0], err)
	}
	w := ls.w
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		return ls.relation(m)
	case *pglogrepl.BeginMessage:
		ls.inTxn = true
		if !ls.stepOpen {
			ls.openStep(time.Now())
		}
	case *pglogrepl.InsertMessage:
		if m.RelationID == ls.relID {
			return ls.upsert(m.Tuple, nil)
		}
	case *pglogrepl.UpdateMessage:
		if m.RelationID != ls.relID {
			return nil
		}
		if m.OldTuple != nil {
			oldKey, err := ls.key(m.OldTuple)
			if err != nil {
				return err
			}
			if newKey, err := ls.key(m.NewTuple); err == nil && newKey != oldKey {
				ls.remove(oldKey)
			}
		}
		return ls.upsert(m.NewTuple, m.OldTuple)
	case *pglogrepl.DeleteMessage:
		if m.RelationID != ls.relID {
			return nil
		}
		k, err := ls.key(m.OldTuple)
		if err != nil {
			return err
		}
		ls.remove(k)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if id == ls.relID {
				st := &w.snap
				for len(st.rows) > 0 {
					ls.touched[st.rows[len(st.rows)-1].key] = struct{}{}
					st.remove(int32(len(st.rows) - 1))
				}
				clear(st.bad)
			}
		}
	case *pglogrepl.CommitMessage:
		ls.inTxn = false
		ls.pending = m.TransactionEndLSN
		if ls.catchUp {
			if m.TransactionEndLSN >= ls.target {
				return ls.finishCatchUp(ctx)
			}
			return nil
		}
		return ls.deliver(ctx)
	}
	return nil
}

// relation maps the watched table's columns; other relations are not
// published by regbridge and are ignored.
func (ls *logicalStream) relation(m *pglogrepl.RelationMessage) error {
	t := &ls.w.table
	if m.RelationName != t.Name {
		return nil
	}
	types := make([]uint32, len(m.Columns))
	for i, c := range m.Columns {
		types[i] = c.DataType
	}
	if ls.types != nil && !slices.Equal(ls.types, types) {
		// The layout decodes by the column types: bind them anew.
		ls.w.logical.lsn = 0
		return fmt.Errorf("%w: columns of %s changed during replication", ErrReopen, t.Name)
	}
	cols := make([]int, len(m.Columns))
	found := make([]bool, len(t.Columns))
	keyPos := -1
	for i, c := range m.Columns {
		cols[i] = -1
		for j, name := range t.Columns {
			if name == c.Name {
				cols[i], found[j] = j, true
				if j == t.Key {
					keyPos = i
				}
			}
		}
	}
	for j, ok := range found {
		if !ok {
			return fmt.Errorf("replication of %s carries no column %s (a publication column list?)", t.Name, t.Columns[j])
		}
	}
	ls.relID, ls.cols, ls.keyPos, ls.types = m.RelationID, cols, keyPos, types
	return nil
}

// errLostOld says a change cannot be applied from the stream alone; the
// next session reads the table in full.
var errLostOld = errors.New("a change lacks values only the table has")

// key is the key column's text in tup.
func (ls *logicalStream) key(tup *pglogrepl.TupleData) (string, error) {
	if tup == nil || ls.keyPos < 0 || ls.keyPos >= len(tup.Columns) || tup.Columns[ls.keyPos].DataType != pglogrepl.TupleDataTypeText {
		ls.w.logical.lsn = 0
		return "", fmt.Errorf("%w: the key %s is missing from a change of %s (check its REPLICA IDENTITY)",
			errLostOld, ls.w.table.Columns[ls.w.table.Key], ls.w.table.Name)
	}
	return string(tup.Columns[ls.keyPos].Data), nil
}

// upsert applies a new row version; old (the old row under REPLICA
// IDENTITY FULL) supplies unchanged TOASTed values.
func (ls *logicalStream) upsert(tup, old *pglogrepl.TupleData) error {
	row := ls.row
	clear(row)
	for pos, c := range tup.Columns {
		if pos >= len(ls.cols) || ls.cols[pos] < 0 {
			continue
		}
		v := &row[ls.cols[pos]]
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
		case pglogrepl.TupleDataTypeText:
			v.SetText(c.Data)
		case pglogrepl.TupleDataTypeToast:
			if old == nil || pos >= len(old.Columns) || old.Columns[pos].DataType != pglogrepl.TupleDataTypeText {
				ls.w.logical.lsn = 0
				return fmt.Errorf("%w: an unchanged TOASTed value of %s.%s (REPLICA IDENTITY FULL avoids this)",
					errLostOld, ls.w.table.Name, ls.w.table.Columns[ls.cols[pos]])
			}
			v.SetText(old.Columns[pos].Data)
		default:
			return fmt.Errorf("replication of %s: column format %q", ls.w.table.Name, c.DataType)
		}
	}
	st := &ls.w.snap
	st.keyBuf = row[ls.w.table.Key].AppendText(st.keyBuf[:0])
	if _, again := ls.touched[string(st.keyBuf)]; again {
		if i, ok := st.lookup(st.keyBuf); ok {
			st.rows[i].sum = 0 // decode it again, so the step ends with its last version
		}
	} else {
		ls.touched[string(st.keyBuf)] = struct{}{}
	}
	st.merge(row, false, ls.w)
	return nil
}

func (ls *logicalStream) remove(key string) {
	ls.touched[key] = struct{}{}
	ls.w.snap.forget(key)
}

// deliver hands the open step (one transaction) to the sink and confirms
// its end once the sink took it.
func (ls *logicalStream) deliver(ctx context.Context) error {
	w := ls.w
	w.polls.Add(1)
	w.snap.compactStep()
	ls.stepOpen = false
	if !w.deliverStep(ctx, ls.sink, ls.seenAt) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.logical.lsn = 0
		return errors.New("sink rejected changes; reading the table in full")
	}
	ls.applied, w.logical.lsn = ls.pending, ls.pending
	return ls.ack(false, false)
}

// finishCatchUp delivers what arrived since the resume as one Full batch
// from the state: the changed rows, and the keys of all.
func (ls *logicalStream) finishCatchUp(ctx context.Context) error {
	w := ls.w
	st := &w.snap
	st.compactStep()
	ls.stepOpen, ls.catchUp = false, false
	err := w.keyed.ApplyFull(ctx, source.Batch{Full: true, Contacts: st.changed, SeenAt: ls.seenAt}, st.keys)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.logical.lsn = 0
		return fmt.Errorf("sink rejected the snapshot after reconnecting: %w", err)
	}
	st.synced = true
	w.lastFull.Store(time.Now().UnixNano())
	w.up.Store(true)
	ls.recovered()
	if ls.pending > ls.applied {
		ls.applied = ls.pending
	}
	w.logical.lsn = ls.applied
	return ls.ack(true, false)
}

// compactStep leaves in the step's batch the last version of each key
// still present, and the deletion of each key gone: a transaction (or a
// catch-up) may change one row several times.
func (st *snapshotState) compactStep() {
	if len(st.changed)+len(st.deleted) < 2 {
		return
	}
	present := func(k string) bool { _, ok := st.lookupString(st.raw(k)); return ok }
	seen := make(map[string]struct{}, len(st.changed)+len(st.deleted))
	keep := make([]bool, len(st.changed))
	for i := len(st.changed) - 1; i >= 0; i-- {
		k := st.changed[i].Key
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			keep[i] = present(k)
		}
	}
	out := st.changed[:0]
	for i := range st.changed {
		if keep[i] {
			out = append(out, st.changed[i])
		}
	}
	clear(st.changed[len(out):])
	st.changed = out
	clear(seen)
	del := st.deleted[:0]
	for _, k := range st.deleted {
		if _, dup := seen[k]; !dup && !present(k) {
			seen[k] = struct{}{}
			del = append(del, k)
		}
	}
	st.deleted = del
}

// measureSlotLag reads how far the slot is behind the server's WAL, in
// bytes and (from the history of WAL positions) in seconds, and warns
// when it passes SlotLagWarn.
func (w *Watcher) measureSlotLag(ctx context.Context, ps *pgSession, slot string) error {
	var behind, now int64
	err := ps.conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, (pg_current_wal_lsn() - '0/0')::bigint
FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&behind, &now)
	if err != nil {
		return err
	}
	w.noteSlotLag(slot, time.Now(), now, behind)
	return nil
}

// noteSlotLag records a measurement: the server's WAL position current,
// the slot behind it by behind bytes.
func (w *Watcher) noteSlotLag(slot string, at time.Time, current, behind int64) {
	l := &w.logical
	secs := l.lag.observe(at, current, current-behind)
	l.lagBytes.Store(behind)
	l.lagMillis.Store(secs.Milliseconds())
	l.lagKnown.Store(true)
	switch over := behind > w.cfg.SlotLagWarn; {
	case over && !l.lagWarned:
		l.lagWarned = true
		w.log.Warn("replication slot lag above slot_lag_warn: the server keeps this WAL until regbridge confirms it",
			"slot", slot, "lag_bytes", behind, "lag_seconds", secs.Seconds(), "slot_lag_warn", w.cfg.SlotLagWarn)
	case !over && l.lagWarned:
		l.lagWarned = false
		w.log.Info("replication slot lag back below slot_lag_warn", "slot", slot, "lag_bytes", behind)
	}
}

// lagTracker turns a slot's confirmed position into an age: the WAL
// position is sampled at every measurement, and the slot is as old as
// the newest sample it has not confirmed yet.
type lagTracker struct {
	at  []time.Time
	pos []int64
}

func (t *lagTracker) observe(now time.Time, current, confirmed int64) time.Duration {
	if len(t.at) == slotLagSamples {
		t.at, t.pos = append(t.at[:0], t.at[1:]...), append(t.pos[:0], t.pos[1:]...)
	}
	t.at, t.pos = append(t.at, now), append(t.pos, current)
	if confirmed >= current {
		return 0
	}
	// The first sample past confirmed was taken after the oldest WAL the
	// slot still holds was written: its age is a lower bound.
	for i := range t.pos {
		if t.pos[i] > confirmed {
			return now.Sub(t.at[i])
		}
	}
	return 0
}
