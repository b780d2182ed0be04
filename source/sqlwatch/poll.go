package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Run reports the table until ctx ends. Every failure (connect, query,
// layout) is an outage: logged once, retried with capped exponential
// backoff, and followed by a Full batch once the table reads again. Run
// returns nil when ctx ends.
func (w *Watcher) Run(ctx context.Context, sink source.Sink) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("sqlwatch: Run called while already running")
	}
	defer w.running.Store(false)
	defer w.up.Store(false) // nobody is watching the store any more
	w.keyed, _ = sink.(KeyedSink)
	defer func() { w.keyed = nil }()
	if w.cfg.CDC != CDCLogical || !sameSink(sink, w.logical.sink) {
		// A new sink has nothing yet. (Under cdc=logical the sink of the
		// last Run keeps what it accepted: the stream resumes there.)
		w.snap.synced = false
	}
	backoff := w.cfg.MinBackoff
	down := false
	recovered := func() {
		backoff = w.cfg.MinBackoff
		w.trouble.Clear()
		if down {
			down = false
			w.log.Info("table readable again")
		}
	}
	for {
		err := w.session(ctx, sink, recovered)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrReopen) {
			w.log.Info("reopening store", "err", err)
			continue
		}
		w.up.Store(false)
		w.errors.Add(1)
		p, permanent := problem(err, w.table.Name, w.createHint())
		w.trouble.Failed(w.log, err, p, permanent, &down, "contact store misconfigured", "table unreadable")
		if !source.Sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// session connects, sends a Full batch, then polls the fingerprint and
// sends a Full batch after each change (or reconcile interval) until ctx
// ends or the store fails. recovered is called after the first batch.
func (w *Watcher) session(ctx context.Context, sink source.Sink, recovered func()) error {
	s, err := w.open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()

	if w.cfg.CDC == CDCLogical {
		if handled, err := w.logicalSession(ctx, sink, s, recovered); handled {
			return err
		}
	}
	// Under CDC the feed opens (its position) before the snapshot, so every
	// change committed after the snapshot reaches us.
	f, err := w.openFeed(ctx)
	if err != nil {
		return err
	}
	if f != nil {
		defer f.Close()
		seenAt := time.Now()
		if err := w.read(ctx, s); err != nil {
			return err
		}
		w.up.Store(true)
		sinkOK := w.deliver(ctx, sink, seenAt, true)
		recovered()
		return w.feedLoop(ctx, sink, s, f, sinkOK)
	}

	// The fingerprint is read before each snapshot, so a change landing
	// between the two shows up as a change at the next poll.
	fp, err := w.fingerprint(ctx, s)
	if err != nil {
		return err
	}
	seenAt := time.Now()
	if err := w.read(ctx, s); err != nil {
		return err
	}
	w.up.Store(true)
	lastRead := seenAt
	sinkOK := w.deliver(ctx, sink, seenAt, true)
	recovered()
	p, partial := s.(Partial)
	lastCaptureCheck := seenAt

	// Checks start every PollInterval, or further apart when a check and
	// the reads it led to kept the store busy long (poll_load.go): busy
	// is the round's time in queries, not what the sink took after them.
	pace := pollPacer{w: w}
	var start time.Time
	var busy time.Duration
	for {
		due := time.Now().Add(w.cfg.PollInterval)
		if !start.IsZero() {
			due = start.Add(pace.next(busy))
		}
		if !source.Sleep(ctx, time.Until(due)) {
			return ctx.Err()
		}
		start = time.Now()
		now, err := w.fingerprint(ctx, s)
		if err != nil {
			return err
		}
		reconcile := w.cfg.ReconcileInterval != Never && time.Since(lastRead) >= w.cfg.ReconcileInterval
		if w.cfg.CDC == CDCTrigger && (reconcile || time.Since(lastCaptureCheck) >= captureRecheck) {
			lastCaptureCheck = time.Now()
			if w.captureAppeared(ctx) {
				return errCaptureReady
			}
		}
		busy = time.Since(start)
		if now == fp && sinkOK && !reconcile {
			continue
		}
		seenAt := time.Now()
		if partial && sinkOK && !reconcile {
			next, ok, err := w.incremental(ctx, p)
			if err != nil {
				return err
			}
			busy = time.Since(start)
			if ok {
				fp = next
				sinkOK = w.deliverStep(ctx, sink, seenAt)
				continue
			}
		}
		if err := w.read(ctx, s); err != nil {
			return err
		}
		busy = time.Since(start)
		fp, lastRead = now, seenAt
		sinkOK = w.deliver(ctx, sink, seenAt, sinkOK)
	}
}

// open connects and lets the layout bind to the column types.
func (w *Watcher) open(ctx context.Context) (Session, error) {
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	s, err := w.dialect.Open(qctx, &w.table)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", w.table.Name, err)
	}
	_, w.snap.hashed = s.(Partial)
	types := s.Types()
	if err := w.layout.Bind(types); err != nil {
		s.Close()
		return nil, fmt.Errorf("table %s: %w", w.table.Name, err)
	}
	if !slices.Equal(types, w.snap.types) {
		// The layout may decode the same bytes differently now.
		w.snap.types = slices.Clone(types)
		w.snap.synced = false
	}
	return s, nil
}

func (w *Watcher) queryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, w.cfg.QueryTimeout)
}

func (w *Watcher) fingerprint(ctx context.Context, s Session) (string, error) {
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	w.polls.Add(1)
	fp, err := s.Fingerprint(qctx)
	if err != nil {
		return "", fmt.Errorf("checking %s for changes: %w", w.table.Name, err)
	}
	return fp, nil
}

// read takes one snapshot into w.snap: complete (every row decoded into
// w.snap.full) unless a KeyedSink holds what the state describes, which
// then gets the changed rows alone.
func (w *Watcher) read(ctx context.Context, s Session) error {
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	w.polls.Add(1)
	w.complete = w.keyed == nil || !w.snap.synced
	if err := w.snap.read(qctx, s, w, w.complete); err != nil {
		return fmt.Errorf("reading %s: %w", w.table.Name, err)
	}
	return nil
}

// deliver hands the snapshot just read to sink as a Full batch. A failing
// sink is not a store outage: the snapshot is read and offered again (in
// full) at the next poll. wasOK is the previous outcome, so a failure is
// logged once.
func (w *Watcher) deliver(ctx context.Context, sink source.Sink, seenAt time.Time, wasOK bool) bool {
	st := &w.snap
	var err error
	if w.complete {
		err = sink.Apply(ctx, source.Batch{Full: true, Contacts: st.full, SeenAt: seenAt})
		if w.keyed != nil {
			// Rare (start, rejection, new column types): do not keep a
			// whole table of contacts for the next one.
			st.full = nil
		}
	} else {
		err = w.keyed.ApplyFull(ctx, source.Batch{Full: true, Contacts: st.changed, SeenAt: seenAt}, st.keys)
	}
	st.synced = err == nil
	switch {
	case err == nil:
		w.lastFull.Store(time.Now().UnixNano())
		if !wasOK {
			w.log.Info("sink accepts batches again")
		}
		return true
	case ctx.Err() != nil:
		return false
	default:
		if wasOK {
			w.log.Warn("sink rejected snapshot, offering it again at next poll", "err", err)
		}
		return false
	}
}

// Snapshot reads the table once, outside Run (tools, tests, benchmarks).
// The returned slice is reused by the next Snapshot or Run.
func (w *Watcher) Snapshot(ctx context.Context) ([]source.Contact, error) {
	if !w.running.CompareAndSwap(false, true) {
		return nil, errors.New("sqlwatch: Snapshot called while running")
	}
	defer w.running.Store(false)
	s, err := w.open(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	w.keyed = nil
	if err := w.read(ctx, s); err != nil {
		return nil, err
	}
	return w.snap.full, nil
}
