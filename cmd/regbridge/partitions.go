package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/substore"
)

// followInterval is how often an instance polls the partitions' streams:
// the extra latency of a change on its way from the reader to every
// instance's bridge.
const followInterval = 20 * time.Millisecond

// followCount bounds the entries read per partition and poll.
const followCount = 1000

// partitioned wires REGBRIDGE_PARTITIONS (docs/cluster.md, "Scaling out"):
// one instance at a time holds the reader lease and runs the source, a
// bridge of its own and a partition.StreamWriter behind that bridge's
// Persister; every instance, the reader too, owns a share of the
// partitions (a partition.Owner) and feeds its own bridge (the one the
// notifier, the feeds and the API serve) from the owned partitions'
// streams through a partition.Follower, while its notifier keeps their
// subscriptions in partition.Subs (owners.go).
type partitioned struct {
	m      *partition.Map
	st     *partition.Streams
	legacy *substore.Redis // the single-tag layout, for its contacts record
	rdb    redis.UniversalClient
	id     string
	lease  time.Duration
	br     *bridge.Bridge
	open   func() (source.Source, error)
	src    *termSource
	log    *slog.Logger
	closer func()
	owner  *partition.Owner
	subs   *partition.Subs
	nt     *notifier.Notifier
	evMu   sync.Mutex
	events []ownEvent // gains and losses for the follow loop (owners.go)
	// based is closed once the follower has taken its baseline: only
	// then may this instance read the store, so that what its own first
	// term appends (what changed while it was down) reaches its bridge
	// as changes, not inside the baseline.
	based chan struct{}
}

// newPartitioned connects to the state's Redis for n partitions. open
// returns a new source for each term as reader.
func newPartitioned(cfg substore.Config, n int, br *bridge.Bridge, nt *notifier.Notifier, open func() (source.Source, error), log *slog.Logger) (*partitioned, error) {
	opt, prefix, err := substore.ParseURL(cfg.State)
	if err != nil {
		return nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	m, err := partition.NewMap(prefix, n)
	if err != nil {
		return nil, fmt.Errorf("REGBRIDGE_PARTITIONS: %w", err)
	}
	rdb := redis.NewUniversalClient(opt)
	log = log.With("component", "partitions")
	id := cfg.ID()
	owner := partition.NewOwner(rdb, m, id, cfg.Lease, log)
	pt := &partitioned{m: m, st: partition.NewStreams(rdb, m, 0), rdb: rdb, id: id,
		legacy: substore.NewRedis(rdb, prefix, id, cfg.Lease, log),
		lease:  cfg.Lease, br: br, nt: nt, open: open, src: &termSource{}, log: log,
		closer: func() { rdb.Close() }, based: make(chan struct{}),
		owner: owner, subs: partition.NewSubs(rdb, m, owner, id, log)}
	owner.OnGain = func(p int, _ partition.Holder) { pt.queue(p, true) }
	owner.OnLose = pt.onLose
	return pt, nil
}

// Run reads the store while this instance holds the reader lease and
// follows the streams, until ctx ends.
func (pt *partitioned) Run(ctx context.Context) error {
	pt.log.Info("partitioned", "instance", pt.id, "partitions", pt.m.Count(), "lease", pt.lease)
	pt.moveSubscriptions(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pt.readLoop(gctx) })
	g.Go(func() error { return pt.follow(gctx) })
	g.Go(func() error { return pt.owner.Run(gctx) })
	return g.Wait()
}

// readLoop tries for the reader lease every lease/3 and reads the store
// while it holds it.
func (pt *partitioned) readLoop(ctx context.Context) error {
	select {
	case <-pt.based:
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(pt.lease / 3)
	defer t.Stop()
	for {
		h, err := pt.m.ReaderLease().Acquire(ctx, pt.rdb, pt.id, pt.lease)
		switch {
		case err == nil:
			if err := pt.read(ctx, h); err != nil {
				return err
			}
		case !errors.Is(err, partition.ErrHeld) && ctx.Err() == nil:
			pt.log.Warn("reader lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// errLeaseLost ends a term as reader.
var errLeaseLost = errors.New("reader lease lost")

// read is one term as reader: it stamps the partitions with the lease's
// epoch, diffs the store's first snapshot against their recorded state
// and appends every change, until the lease is lost or ctx ends. An
// error only when the source can never be read.
func (pt *partitioned) read(ctx context.Context, h partition.Holder) error {
	log := pt.log.With("reader_epoch", h.Epoch)
	giveUp := func(what string, err error) error {
		log.Warn(what, "err", err)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = pt.m.ReaderLease().Release(rctx, pt.rdb, h)
		cancel()
		return nil
	}
	r, base, err := pt.st.OpenReader(ctx, h.Epoch)
	if err != nil {
		return giveUp("opening the partitions as reader", err)
	}
	seeded, legacy, err := pt.upgrade(ctx, h.Epoch)
	if err != nil {
		return giveUp("seeding the partitions from the single-tag layout", err)
	}
	if seeded > 0 {
		// Reopened: the baselines now hold the seeded contacts.
		if r, base, err = pt.st.OpenReader(ctx, h.Epoch); err != nil {
			return giveUp("opening the partitions as reader", err)
		}
	}
	rb := bridge.New(log)
	w, restore, err := partition.NewStreamWriter(pt.m, r, base, partition.BridgeView(rb, pt.m))
	if err != nil {
		return giveUp("reading the recorded partition state", err)
	}
	// Restored even when empty: the first snapshot is then diffed, so
	// what the store holds reaches the followers as changes.
	rb.Restore(restore)
	pers := bridge.NewPersister(rb, w, log)
	rb.Subscribe(pers)
	src, err := pt.open()
	if err != nil {
		return err
	}
	pt.src.begin(src)
	defer pt.src.end()
	log.Info("reading the store", "restored_contacts", len(restore))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(gctx, rb) })
	g.Go(func() error { return rb.Run(gctx) })
	g.Go(func() error { return pers.Run(gctx) })
	g.Go(func() error { return pt.hold(gctx, h) })
	if legacy {
		g.Go(func() error { return pt.dropLegacy(gctx) })
	}
	err = g.Wait()
	if errors.Is(err, errLeaseLost) {
		log.Warn("reader lease lost: stopped reading the store")
		return nil
	}
	return err
}

// hold renews the reader lease every lease/3; errLeaseLost when another
// instance holds it, or when no renewal got through for a whole lease.
func (pt *partitioned) hold(ctx context.Context, h partition.Holder) error {
	t := time.NewTicker(pt.lease / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = pt.m.ReaderLease().Release(rctx, pt.rdb, h)
			cancel()
			return nil
		case <-t.C:
		}
		ok, err := pt.m.ReaderLease().Renew(ctx, pt.rdb, h, pt.lease)
		switch {
		case err == nil && !ok:
			return errLeaseLost
		case err == nil:
			last = time.Now()
		case time.Since(last) > pt.lease:
			return errLeaseLost
		}
	}
}

// follow feeds the instance's bridge from the streams of the partitions
// it owns: a gained partition's recorded state is adopted silently (its
// subscriptions then get full NOTIFYs, owners.go), then its entries are
// applied in order; a gap (a trimmed or rewound stream) is replaced by
// the difference to the reloaded state. A lost partition's contacts are
// forgotten silently. During an upgrade from the single-tag layout the
// partitions gained while that layout's contacts record exists begin
// from it instead, followed from the streams' beginning (legacyBaseline).
func (pt *partitioned) follow(ctx context.Context) error {
	fl := &following{f: pt.st.NewFollower(), inbox: map[int]string{}, pending: map[int]bool{},
		legacy: pt.legacyBaseline(ctx)}
	// Ready with no contacts: what this instance serves arrives with its
	// partitions, each adopted silently.
	_ = pt.br.Apply(ctx, source.Batch{Full: true, SeenAt: time.Now()})
	based := false
	view := partition.BridgeView(pt.br, pt.m)
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// Read before the events: every gain of the first round is
		// queued by then.
		started := isClosed(pt.owner.Started())
		if loaded := pt.ownership(ctx, fl); loaded && started && !based {
			// The reader may start once the partitions of the first
			// round are adopted: what its first term appends (what
			// changed while no instance read) reaches them as changes.
			based = true
			close(pt.based)
		}
		entries, reload, err := fl.f.Poll(ctx, followCount)
		if err != nil && ctx.Err() == nil {
			pt.log.Warn("reading partition streams", "err", err)
		}
		now := time.Now()
		for _, es := range entries {
			pt.applyEntries(ctx, es, now)
		}
		for p, bl := range reload {
			pt.log.Warn("partition stream gap: applying its recorded state", "partition", p)
			ch := partition.Diff(p, view(p), bl.State)
			es := make([]partition.Entry, len(ch))
			for i, c := range ch {
				es[i] = partition.Entry{Key: c.Key, Data: c.Data}
			}
			pt.applyEntries(ctx, es, now)
		}
		pt.pollInbox(ctx, fl)
	}
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// applyEntries applies one partition's entries in order, batched: a
// batch ends before a key it already holds, since a batch's deletions
// apply after its upserts.
func (pt *partitioned) applyEntries(ctx context.Context, es []partition.Entry, now time.Time) {
	var b source.Batch
	seen := map[string]bool{}
	flush := func() {
		if len(b.Contacts)+len(b.Deleted) > 0 {
			b.SeenAt = now
			_ = pt.br.Apply(ctx, b)
		}
		b = source.Batch{}
		clear(seen)
	}
	for _, e := range es {
		if seen[e.Key] {
			flush()
		}
		seen[e.Key] = true
		if e.Data == "" {
			b.Deleted = append(b.Deleted, e.Key)
			continue
		}
		c, err := substore.DecodeContact([]byte(e.Data))
		if err != nil {
			pt.log.Warn("undecodable contact in partition stream", "key", e.Key, "err", err)
			continue
		}
		b.Contacts = append(b.Contacts, c)
	}
	flush()
}

func appendState(out []source.Contact, state map[string]string, log *slog.Logger) []source.Contact {
	for k, js := range state {
		c, err := substore.DecodeContact([]byte(js))
		if err != nil {
			log.Warn("undecodable contact in partition state", "key", k, "err", err)
			continue
		}
		out = append(out, c)
	}
	return out
}

// stats reports the partitions this instance serves and whether it
// reads the store, for /metrics.
func (pt *partitioned) stats() (owned int, reader bool) {
	return len(pt.owner.Owned()), pt.src.reading()
}

// partitionStats is pt.stats, nil without REGBRIDGE_PARTITIONS.
func partitionStats(pt *partitioned) func() (int, bool) {
	if pt == nil {
		return nil
	}
	return pt.stats
}

// termSource stands for the source in readiness and metrics when the
// store is read by whichever instance holds the reader lease: the
// current term's source while this instance reads, and the reads of its
// past terms added up, so regbridge_source_* shows which instance reads.
type termSource struct {
	mu   sync.Mutex
	cur  source.Source
	past source.Stats
}

func (t *termSource) begin(s source.Source) {
	t.mu.Lock()
	t.cur = s
	t.mu.Unlock()
}

func (t *termSource) end() {
	t.mu.Lock()
	if rep, ok := t.cur.(source.Reporter); ok {
		s := rep.Stats()
		t.past.Polls += s.Polls
		t.past.Errors += s.Errors
		t.past.Skipped += s.Skipped
	}
	t.cur = nil
	t.mu.Unlock()
}

// reading reports whether a term as reader is running here.
func (t *termSource) reading() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur != nil
}

// Run is never called: the reader's terms run the real sources.
func (t *termSource) Run(ctx context.Context, _ source.Sink) error { <-ctx.Done(); return nil }

// Stats reports the current term's source, Up when this instance does
// not read (the streams are its store then).
func (t *termSource) Stats() source.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := source.Stats{Up: true}
	if rep, ok := t.cur.(source.Reporter); ok {
		s = rep.Stats()
	}
	s.Polls += t.past.Polls
	s.Errors += t.past.Errors
	s.Skipped += t.past.Skipped
	return s
}
