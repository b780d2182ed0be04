package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Change data capture (Config.CDC = CDCTrigger,
// docs/stores.md#change-capture-cdctrigger): triggers
// that `regbridge cdc install` puts on the registrar's table report the key
// of every inserted, updated or deleted row in a changelog table, read by
// sequence number (changelog.go). The watcher re-reads just those keys and sends non-Full
// batches. The feed is opened before the first snapshot of every session,
// so nothing committed after the snapshot is missed, and the periodic
// reconcile stays as a safety net; it verifies the table beside the feed
// instead of stopping it (verify.go).

const (
	// feedLinger is how long a feed keeps collecting keys after the first
	// one: a burst becomes one re-read instead of many, at a latency cost
	// far below the latencies of docs/performance.md#figures.
	feedLinger = 5 * time.Millisecond
	// maxFeedKeys bounds one re-read (and the IN list of its query).
	maxFeedKeys = 500
	// feedKeepalive is how long a replication connection may stay silent
	// before it is pinged: a black-holed connection would otherwise wait
	// forever, and Stats().Polls shows the store answering.
	feedKeepalive = 500 * time.Millisecond
)

// ErrNotCaptured says the change-capture triggers are missing on the table.
var ErrNotCaptured = errors.New("change capture triggers are not installed (run `regbridge cdc install`)")

// Feed delivers the keys of changed rows.
type Feed interface {
	// Next blocks until changes are known and returns their keys (a new
	// slice each call, at most maxFeedKeys, collected for at most
	// feedLinger after the first). full reports that changes may have
	// been lost, so only a full read is exact. No keys and not full means
	// the store answered and nothing changed (counted as a poll).
	Next(ctx context.Context) (keys []string, full bool, err error)
	Close() error
}

// Capturer is a Dialect with trigger-based change capture.
type Capturer interface {
	// CaptureSQL is the DDL that installs (install) or removes the
	// triggers on t; each statement is idempotent.
	CaptureSQL(t *Table, install bool) []string
	// ExecCapture runs stmts in order on a connection of its own.
	ExecCapture(ctx context.Context, stmts []string) error
	// OpenFeed starts receiving changes of t (ErrNotCaptured when the
	// triggers are missing). Changes committed after it returns are
	// delivered.
	OpenFeed(ctx context.Context, t *Table, cfg *Config) (Feed, error)
}

// ErrNoCapture is returned for stores without trigger-based capture.
var ErrNoCapture = errors.New("change capture needs a MySQL/MariaDB or PostgreSQL store")

// ErrNoLogical is returned for cdc=logical on a store other than
// PostgreSQL.
var ErrNoLogical = errors.New("cdc=logical needs a PostgreSQL store")

// CaptureNotes are SQL comments `regbridge cdc` prints before the SQL:
// what the server needs for the configured mode (empty when nothing).
func (w *Watcher) CaptureNotes() string {
	if w.cfg.CDC == CDCLogical {
		return LogicalSettings
	}
	return ""
}

// CaptureSQL returns the statements `regbridge cdc install` (install) or
// `uninstall` runs for the watched table.
func (w *Watcher) CaptureSQL(install bool) ([]string, error) {
	if w.cfg.CDC == CDCLogical {
		d, ok := w.dialect.(*Postgres)
		if !ok {
			return nil, ErrNoLogical
		}
		return d.LogicalSQL(&w.table, w.cfg.Slot, install), nil
	}
	c, ok := w.dialect.(Capturer)
	if !ok {
		return nil, ErrNoCapture
	}
	return c.CaptureSQL(&w.table, install), nil
}

// ExecCapture runs statements from CaptureSQL.
func (w *Watcher) ExecCapture(ctx context.Context, stmts []string) error {
	if w.cfg.CDC == CDCLogical {
		d, ok := w.dialect.(*Postgres)
		if !ok {
			return ErrNoLogical
		}
		return d.ExecLogical(ctx, stmts)
	}
	c, ok := w.dialect.(Capturer)
	if !ok {
		return ErrNoCapture
	}
	return c.ExecCapture(ctx, stmts)
}

// openFeed opens the change feed when CDC is configured and possible; nil
// means poll. A missing installation is logged once per change of state
// and answered by polling, so that a forgotten `cdc install` costs latency,
// not availability.
func (w *Watcher) openFeed(ctx context.Context) (Feed, error) {
	if w.cfg.CDC != CDCTrigger {
		return nil, nil
	}
	c, ok := w.dialect.(Capturer)
	if !ok {
		if !w.cdcWarned {
			w.cdcWarned = true
			w.log.Warn("cdc=trigger ignored: "+ErrNoCapture.Error()+"; polling", "poll_interval", w.cfg.PollInterval)
		}
		return nil, nil
	}
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	f, err := c.OpenFeed(qctx, &w.table, &w.cfg)
	switch {
	case errors.Is(err, ErrNotCaptured):
		if !w.cdcWarned {
			w.cdcWarned = true
			msg := "cdc=trigger configured but the triggers are missing; run `regbridge cdc install` with the same REGBRIDGE_SOURCE; polling until then"
			if errors.Is(err, ErrOldCapture) {
				msg = "cdc=trigger configured but the table has an older regbridge's pg_notify trigger, which serialises the registrar's commits; run `regbridge cdc install` with the same REGBRIDGE_SOURCE to replace it; polling until then"
			}
			w.log.Warn(msg, "err", err, "poll_interval", w.cfg.PollInterval)
		}
		w.cdcRunning = false
		w.feedMode.Store(nil)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("opening change feed of %s: %w", w.table.Name, err)
	}
	if w.cdcWarned || !w.cdcRunning {
		w.log.Info("change capture by triggers active")
	}
	w.cdcWarned, w.cdcRunning = false, true
	w.feedMode.Store(&modeTrigger)
	return f, nil
}

type feedResult struct {
	keys []string
	full bool
	err  error
}

// feedLoop reads changes from f and applies them until ctx ends or the
// store fails; the first Full batch was sent by the caller. A full read
// runs every reconcile interval and whenever the feed lost changes.
func (w *Watcher) feedLoop(ctx context.Context, sink source.Sink, s Session, f Feed, sinkOK bool) error {
	fctx, cancel := context.WithCancel(ctx)
	results := make(chan feedResult)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			keys, full, err := f.Next(fctx)
			select {
			case results <- feedResult{keys, full, err}:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	var reconcile <-chan time.Time
	if w.cfg.ReconcileInterval != Never {
		t := time.NewTicker(w.cfg.ReconcileInterval)
		defer t.Stop()
		reconcile = t.C
	}
	p, _ := s.(Partial)
	var v *verification // a verifying reconcile in progress (verify.go)
	defer func() {
		if v != nil {
			v.stop()
		}
	}()
	for {
		var r feedResult
		var chunks <-chan *verifyChunk
		if v != nil {
			chunks = v.chunks
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconcile:
			if v != nil {
				continue // the last one is still scanning
			}
			if p != nil && sinkOK && !w.cfg.FullReads {
				v = w.startVerify(ctx)
				continue
			}
			r.full = true
		case c, more := <-chunks:
			if more {
				w.verifyChunk(v, c)
				continue
			}
			suspects, full := w.finishVerify(v)
			v.stop()
			v = nil
			if !full {
				ok, err := w.readSuspects(ctx, p, sink, suspects, &sinkOK)
				if err != nil {
					return err
				}
				if ok {
					continue
				}
			}
			r.full = true
		case r = <-results:
			if r.err != nil {
				return fmt.Errorf("change feed of %s: %w", w.table.Name, r.err)
			}
			if !r.full && len(r.keys) == 0 {
				w.polls.Add(1)
				if sinkOK {
					continue
				}
				r.full = true // offer the snapshot the sink rejected again
			}
		}
		seenAt := time.Now()
		if !r.full && sinkOK && p != nil {
			if v != nil {
				v.touch(r.keys)
			}
			ok, err := w.readKeys(ctx, p, r.keys)
			if err != nil {
				return err
			}
			if ok {
				sinkOK = w.deliverStep(ctx, sink, seenAt)
				continue
			}
		}
		if v != nil { // a full read makes the verification moot
			v.stop()
			v = nil
		}
		if err := w.read(ctx, s); err != nil {
			return err
		}
		sinkOK = w.deliver(ctx, sink, seenAt, sinkOK)
	}
}

// readSuspects reads the keys a verification found suspect, in feed-sized
// steps, and delivers what changed; false means a full read must follow.
func (w *Watcher) readSuspects(ctx context.Context, p Partial, sink source.Sink, keys []string, sinkOK *bool) (bool, error) {
	seenAt := time.Now()
	for len(keys) > 0 {
		n := min(len(keys), maxFeedKeys)
		ok, err := w.readKeys(ctx, p, keys[:n])
		if err != nil || !ok {
			return false, err
		}
		if *sinkOK = w.deliverStep(ctx, sink, seenAt); !*sinkOK {
			return false, nil
		}
		keys = keys[n:]
	}
	return true, nil
}

// readKeys re-reads the rows of keys into the state; false means only a
// full read can say what happened (a key no query can name).
func (w *Watcher) readKeys(ctx context.Context, p Partial, keys []string) (bool, error) {
	st := &w.snap
	st.beginStep()
	uniq := make(map[string]struct{}, len(keys))
	list := keys[:0]
	for _, k := range keys {
		if !SafeKey(k) {
			st.abandonStep()
			return false, nil
		}
		if _, dup := uniq[k]; !dup {
			uniq[k] = struct{}{}
			list = append(list, k)
			delete(st.bad, k) // every row of k is read again
		}
	}
	if len(list) == 0 {
		return true, nil
	}
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	w.polls.Add(1)
	cond := InKeys(p.Quote(w.table.Columns[w.table.Key]), list)
	if err := p.Where(qctx, cond, func(row []Value) { st.merge(row, true, w) }); err != nil {
		return false, fmt.Errorf("reading changed rows of %s: %w", w.table.Name, err)
	}
	for _, k := range list {
		if _, read := st.merged[k]; !read {
			if i, ok := st.lookupString(k); ok {
				st.remove(i)
			}
		}
	}
	return true, nil
}

// deliverStep hands the changes collected since beginStep to sink (when
// there are any). A failure makes the next read a full one.
func (w *Watcher) deliverStep(ctx context.Context, sink source.Sink, seenAt time.Time) bool {
	b := w.snap.batch()
	if len(b.Contacts) == 0 && len(b.Deleted) == 0 {
		w.snap.synced = w.snap.stepSynced
		return true
	}
	b.SeenAt = seenAt
	if err := sink.Apply(ctx, b); err != nil {
		if ctx.Err() == nil {
			w.log.Warn("sink rejected changes, offering a full snapshot at next poll", "err", err)
		}
		return false // not synced: the next read is complete
	}
	w.snap.synced = w.snap.stepSynced
	return true
}

// The feed modes a watcher reports in its Stats while it reads one.
var modeTrigger, modeLogical = source.ModeTrigger, source.ModeLogical
