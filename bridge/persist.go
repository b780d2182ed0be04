package bridge

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Restore loads contacts recorded by an earlier run as the state the
// first full snapshot is diffed against, so that what changed while
// regbridge was down is announced as what it was (invariant 1) instead of
// being absorbed into a silent baseline. Call it before the first Apply.
// The bridge stays not Ready, and its expiry clock waits, until that
// snapshot: a contact refreshed while regbridge was down must read as
// refreshed, not as expired and registered again.
func (b *Bridge) Restore(contacts []source.Contact) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.ready.Load() {
		return
	}
	for i := range contacts {
		c := &contacts[i]
		if b.byKey.get(c.Key) != nil {
			continue
		}
		b.add(c, time.Time{}, true)
	}
	b.restored = true
	b.log.Info("previous state restored", "aors", b.aors.n, "contacts", b.byKey.n)
}

// EachContact calls fn with every active contact while holding the
// bridge's read lock: no change is published meanwhile.
func (b *Bridge) EachContact(fn func(c *source.Contact)) {
	b.stateMu.RLock()
	defer b.stateMu.RUnlock()
	b.byKey.each(func(bd *binding) {
		c := bd.contact()
		fn(&c)
	})
}

// StateWriter records contacts durably (substore.Redis).
type StateWriter interface {
	WriteContacts(ctx context.Context, upserts []source.Contact, deletes []string) error
}

// persistInterval is the coalescing window of the Persister: a contact
// changed several times within it is written once, and a crash loses at
// most this much (which a restart then re-announces).
const persistInterval = 50 * time.Millisecond

// Persister is a Publisher that records the bridge's contacts through a
// StateWriter without blocking the bridge: changes coalesce by store key
// (so the pending set is bounded by the number of contacts) and are
// written in the background.
type Persister struct {
	w   StateWriter
	b   *Bridge
	log *slog.Logger

	// pendingMu guards pending: the latest state per key, nil Contact
	// meaning deleted.
	pendingMu sync.Mutex
	pending   map[string]*source.Contact
	kick      chan struct{}
}

// NewPersister returns a Persister of b's contacts; subscribe it to b and
// run it.
func NewPersister(b *Bridge, w StateWriter, log *slog.Logger) *Persister {
	return &Persister{w: w, b: b, log: log.With("component", "persist"),
		pending: make(map[string]*source.Contact), kick: make(chan struct{}, 1)}
}

// Publish records a change (bridge.Publisher). Never blocks.
func (p *Persister) Publish(c Change) {
	p.pendingMu.Lock()
	for i := range c.Contacts {
		v := &c.Contacts[i]
		if v.State == ContactTerminated {
			p.pending[v.Key] = nil
			continue
		}
		cc := v.Contact
		p.pending[v.Key] = &cc
	}
	p.pendingMu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run writes pending changes until ctx ends, then writes what is left
// (bounded by a few seconds). Once the bridge is Ready it also records
// the whole state once: the first snapshot's baseline is never published
// as changes.
func (p *Persister) Run(ctx context.Context) error {
	baseline := false
	tick := time.NewTicker(persistInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			p.flush(fctx)
			cancel()
			return nil
		case <-tick.C:
		}
		if !baseline && p.b.Ready() {
			baseline = true
			p.b.EachContact(func(c *source.Contact) {
				cc := *c
				p.pendingMu.Lock()
				p.pending[c.Key] = &cc
				p.pendingMu.Unlock()
			})
		}
		p.flush(ctx)
	}
}

// flush writes the pending set; on failure it is merged back (keys
// changed since keep their newer state) and retried at the next tick.
func (p *Persister) flush(ctx context.Context) {
	p.pendingMu.Lock()
	if len(p.pending) == 0 {
		p.pendingMu.Unlock()
		return
	}
	batch := p.pending
	p.pending = make(map[string]*source.Contact, len(batch))
	p.pendingMu.Unlock()
	var ups []source.Contact
	var dels []string
	for k, c := range batch {
		if c == nil {
			dels = append(dels, k)
		} else {
			ups = append(ups, *c)
		}
	}
	if err := p.w.WriteContacts(ctx, ups, dels); err != nil {
		p.log.Warn("recording contact state failed; retrying", "err", err)
		p.pendingMu.Lock()
		for k, c := range batch {
			if _, newer := p.pending[k]; !newer {
				p.pending[k] = c
			}
		}
		p.pendingMu.Unlock()
	}
}
