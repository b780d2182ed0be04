package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/regbridge/regbridge/source"
)

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
	lastAsk   time.Time
}

// run streams until ctx ends or the stream fails. The slot's lag is read
// beside the stream, on the session's own connection: a query the
// server is slow to answer (a busy server takes tens of milliseconds now
// and then) must not hold up the changes arriving meanwhile.
func (ls *logicalStream) run(ctx context.Context) error {
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	ended := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { ls.watchLag(ctx, ended, stop) })
	err := ls.stream(sctx)
	if ctx.Err() == nil && sctx.Err() != nil {
		err = context.Cause(sctx) // the lag could not be read
	}
	// A lag query under way finishes (within queryContext's time) rather
	// than being cancelled, which would close the session's connection.
	close(ended)
	wg.Wait()
	return err
}

// watchLag measures the slot's lag every slotLagEvery until ended is
// closed or ctx ends; a failed measurement ends the stream through stop.
func (ls *logicalStream) watchLag(ctx context.Context, ended <-chan struct{}, stop context.CancelCauseFunc) {
	tick := time.NewTicker(slotLagEvery)
	defer tick.Stop()
	for {
		qctx, cancel := ls.w.queryContext(ctx)
		err := ls.w.measureSlotLag(qctx, ls.ps, ls.slot)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				stop(fmt.Errorf("reading the lag of slot %s: %w", ls.slot, err))
			}
			return
		}
		select {
		case <-ended:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// stream receives and applies the stream's messages until ctx ends or
// the stream fails.
func (ls *logicalStream) stream(ctx context.Context) error {
	w := ls.w
	now := time.Now()
	ls.lastRecv, ls.lastAck = now, now
	if ls.catchUp {
		ls.openStep(now)
	} else {
		ls.recovered()
	}
	for {
		if err := ls.housekeeping(); err != nil {
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

// housekeeping confirms what was delivered, pings a silent server and,
// while catching up, asks where the server is.
func (ls *logicalStream) housekeeping() error {
	now := time.Now()
	silent := now.Sub(ls.lastRecv)
	if silent > pgPingTimeout {
		return fmt.Errorf("replication stream of %s silent for %v", ls.w.table.Name, silent.Round(time.Millisecond))
	}
	// While catching up, ask where the server is every logicalAckEvery
	// (not per message: each answer is a message too).
	ask := (ls.catchUp && now.Sub(ls.lastAsk) >= logicalAckEvery) || (silent > logicalIdle && !ls.pinged)
	if ask {
		ls.pinged, ls.lastAsk = true, now
	}
	return ls.ack(false, ask)
}

// ack sends the applied position to the server: when it moved and the
// last confirmation is logicalAckEvery old, at least every
// logicalStatusEvery, and always when forced (the server asked, or a
// catch-up ended) or when reply asks the server for a keepalive.
func (ls *logicalStream) ack(force, reply bool) error {
	since := time.Since(ls.lastAck)
	due := ls.applied > ls.confirmed && since >= logicalAckEvery
	if !force && !reply && !due && since < logicalStatusEvery {
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
