package sqlwatch

import (
	"context"
	"time"
)

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

// slotLagSQL reads how far slot $1 is behind the server's WAL, and the
// server's WAL position.
var slotLagSQL = `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, (pg_current_wal_lsn() - '0/0')::bigint
FROM pg_replication_slots WHERE slot_name = $1`

// measureSlotLag reads how far the slot is behind the server's WAL, in
// bytes and (from the history of WAL positions) in seconds, and warns
// when it passes SlotLagWarn.
func (w *Watcher) measureSlotLag(ctx context.Context, ps *pgSession, slot string) error {
	var behind, now int64
	err := ps.conn.QueryRow(ctx, slotLagSQL, slot).Scan(&behind, &now)
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
