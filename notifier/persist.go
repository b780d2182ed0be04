package notifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/substore"
)

// SubStore keeps subscription records outside the process.
type SubStore interface {
	Save(ctx context.Context, rec *substore.Record, create bool) error
	Take(ctx context.Context, id string) (rec *substore.Record, wasOwner bool, err error)
	Delete(ctx context.Context, id string) error
}

// Fence is the check every NOTIFY of a stored subscription passes: this
// instance still owns it, and the next CSeq and version, in one step.
type Fence interface {
	Advance(ctx context.Context, id string) (cseq, version uint32, err error)
}

// Lease is this instance's liveness and the takeover of dead peers'
// subscriptions.
type Lease interface {
	Beat(ctx context.Context) error
	Claim(ctx context.Context, max int) ([]*substore.Record, error)
	Release(ctx context.Context) error
}

// Store is what the notifier needs of a shared subscription store
// (substore.Redis). Without one (REGBRIDGE_STATE=memory) the notifier's
// own maps are the store and a NOTIFY costs no store call.
type Store interface {
	SubStore
	Fence
	Lease
	Recover(ctx context.Context) (recs []*substore.Record, alone bool, err error)
}

// Partitioned is a Store that keeps each subscription in its AOR's
// partition (partition.Subs, REGBRIDGE_PARTITIONS): the instance that
// owns the partition sends its NOTIFYs, whichever instance answered the
// SUBSCRIBE. A SUBSCRIBE, refresh, unsubscribe or fetch answered here for
// a partition owned elsewhere is stored and left to the owner, which
// learns of it through the store and calls Continue (or Discard); when
// this instance gains a partition its subscriptions reach Continue, when
// it loses one Forget drops them here without a NOTIFY.
type Partitioned interface {
	// DialogTag returns the local tag of a new dialog to canonical AOR:
	// it carries the partition, so every instance finds the record from
	// the dialog id alone.
	DialogTag(canonical string) string
	// Owns reports whether this instance sends the NOTIFYs of the
	// canonical AOR's subscriptions now.
	Owns(canonical string) bool
}

// Tuning of the shared store, each with its reason.
const (
	// claimBatch bounds the subscriptions one instance takes over per
	// round, so the full NOTIFYs of a takeover come in bounded waves and
	// several survivors share the work.
	claimBatch = 500
	// storeTimeout bounds one store call made from a SIP handler.
	storeTimeout = 2 * time.Second
	// storeRetry is how long a NOTIFY waits after the store failed.
	storeRetry = time.Second
)

// SetStore makes subscriptions persistent in st, with heartbeats every
// lease/3 and takeover rounds every lease/2. Call it before Recover and
// Run.
func (n *Notifier) SetStore(st Store, lease time.Duration) {
	n.store, n.storeLease = st, lease
	n.parts, _ = st.(Partitioned)
}

// elsewhere reports whether the NOTIFYs of a subscription to canonical
// belong to another instance: it is then stored and left to the owner.
func (n *Notifier) elsewhere(canonical string) bool {
	return n.parts != nil && !n.parts.Owns(canonical)
}

// Continue serves stored subscriptions here, each with a full NOTIFY at
// once (a partition gained, or a SUBSCRIBE another instance answered for
// a partition owned here): a subscription held here already is replaced
// by the record when the record carries a request it has not seen (a
// refresh answered elsewhere), and left alone otherwise (this instance
// answered it itself, or the record is stale); one whose expiry has
// passed (an unsubscribe or a fetch answered elsewhere, or a
// subscription whose owner died as it expired) gets its final NOTIFY,
// with full state, and ends.
func (n *Notifier) Continue(recs []*substore.Record) {
	for _, rec := range recs {
		if old := n.lookup(rec.ID); old != nil {
			if !old.olderThan(rec) {
				continue // the record says nothing this copy does not know
			}
			n.drop(old)
		}
		if !time.Now().Before(rec.Expires) {
			n.endStored(rec)
			continue
		}
		n.adopt([]*substore.Record{rec}, true)
	}
}

// olderThan reports whether rec carries a request this copy has not
// seen: a later refresh or unsubscribe (a higher remote CSeq), or the
// same one with another expiry. A copy that is ending, or already knows
// a later request, is never replaced: a record seen twice, or a stale
// one, changes nothing.
func (s *subscription) olderThan(rec *substore.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.done || s.final != nil || rec.RemoteCSeq < s.d.remoteCSeq:
		return false
	case rec.RemoteCSeq > s.d.remoteCSeq:
		return true
	}
	return !rec.Expires.Equal(s.expiresAt)
}

// endStored sends the final NOTIFY of a stored subscription whose time is
// over, and ends it.
func (n *Notifier) endStored(rec *substore.Record) {
	s, err := n.subscriptionOf(rec)
	if err != nil {
		n.unusable(rec, "cannot end stored subscription", err)
		return
	}
	s.full, s.inFlight = true, true
	s.final = &ending{reason: ReasonTimeout}
	if !n.add(s) {
		n.drop(s)
		return
	}
	n.enqueue(s)
}

// Discard drops subscriptions here without a NOTIFY: their records are
// gone from the store.
func (n *Notifier) Discard(ids []string) {
	for _, id := range ids {
		if s := n.lookup(id); s != nil {
			n.drop(s)
		}
	}
}

// Forget drops, without a NOTIFY and leaving them stored, the
// subscriptions whose canonical AOR lost reports true: their partition
// went to another instance, which continues them. It returns how many.
func (n *Notifier) Forget(lost func(canonical string) bool) int {
	n.subsMu.RLock()
	var list []*subscription
	for _, s := range n.subs {
		if lost(s.canonical) {
			list = append(list, s)
		}
	}
	n.subsMu.RUnlock()
	for _, s := range list {
		n.drop(s)
	}
	return len(list)
}

// Recover loads the subscriptions this instance continues (see
// substore.Redis.Recover). Call it before the first snapshot reaches the
// bridge: when this instance is alone they continue with partial
// documents carrying exactly what the bridge finds changed; beside live
// peers (whose bridges kept the shared contact state current) each gets a
// full document once the registrations are known.
func (n *Notifier) Recover(ctx context.Context) error {
	if n.store == nil {
		return nil
	}
	recs, alone, err := n.store.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recovering subscriptions: %w", err)
	}
	n.adopt(recs, !alone)
	n.log.Info("subscriptions recovered", "count", len(recs), "alone", alone)
	return nil
}

// runLease renews the heartbeat and takes over dead peers' subscriptions
// until ctx ends.
func (n *Notifier) runLease(ctx context.Context) {
	beat := time.NewTicker(n.storeLease / 3)
	defer beat.Stop()
	round := time.NewTicker(n.storeLease / 2)
	defer round.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if err := n.store.Beat(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("heartbeat failed", "err", err)
			}
		case <-round.C:
			if !n.regs.Ready() {
				continue
			}
			n.enqueueDeferred()
			recs, err := n.store.Claim(ctx, claimBatch)
			if err != nil && ctx.Err() == nil {
				n.log.Warn("takeover round failed", "err", err)
			}
			if len(recs) > 0 {
				n.log.Info("took over subscriptions", "count", len(recs))
				n.adopt(recs, true)
			}
		}
	}
}

// enqueueDeferred sends the full documents owed by subscriptions adopted
// before the registrations were known.
func (n *Notifier) enqueueDeferred() {
	n.deferredMu.Lock()
	list := n.deferred
	n.deferred = nil
	n.deferredMu.Unlock()
	for _, s := range list {
		n.enqueue(s)
	}
}

// adopt continues stored subscriptions here. full: the subscriber may
// have missed changes, so the next NOTIFY, sent at once, is full state.
func (n *Notifier) adopt(recs []*substore.Record, full bool) {
	ready := n.regs.Ready()
	for _, rec := range recs {
		if n.lookup(rec.ID) != nil {
			continue
		}
		s, err := n.fromRecord(rec)
		if err != nil {
			n.unusable(rec, "cannot continue stored subscription", err)
			continue
		}
		if full {
			s.full, s.inFlight = true, true
		}
		if rec.Neutral {
			n.neutral.Store(s.id, struct{}{})
		}
		if !n.add(s) { // shutting down: it stays stored for a peer
			n.drop(s)
			continue
		}
		switch {
		case !full:
		case ready:
			n.enqueue(s)
		default:
			n.deferredMu.Lock()
			n.deferred = append(n.deferred, s)
			n.deferredMu.Unlock()
		}
	}
}

// unusable logs why a stored subscription cannot be served, and deletes
// it.
func (n *Notifier) unusable(rec *substore.Record, msg string, err error) {
	n.log.Warn(msg, "aor", rec.AOR, "call_id", rec.CallID, "err", err)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_ = n.store.Delete(ctx, rec.ID)
}

// errExpired: a stored subscription whose time is over.
var errExpired = errors.New("subscription expired")

// fromRecord rebuilds a subscription, with its expiry timer armed.
func (n *Notifier) fromRecord(rec *substore.Record) (*subscription, error) {
	left := time.Until(rec.Expires)
	if left <= 0 {
		return nil, errExpired
	}
	s, err := n.subscriptionOf(rec)
	if err != nil {
		return nil, err
	}
	s.timer = time.AfterFunc(left, func() { n.end(s, ending{reason: ReasonTimeout}) })
	return s, nil
}

// subscriptionOf rebuilds a subscription from its record, with no timer.
// Under partitions the NOTIFYs carry this instance's Contact: the owner's
// address is where the subscriber's next requests should go.
func (n *Notifier) subscriptionOf(rec *substore.Record) (*subscription, error) {
	pkg := n.packageNamed(rec.Package)
	if pkg == nil {
		return nil, fmt.Errorf("event package %q not enabled", rec.Package)
	}
	d := dialog{
		localURI: rec.LocalURI, remoteURI: rec.RemoteURI,
		callID: rec.CallID, localTag: rec.LocalTag, remoteTag: rec.RemoteTag,
		remoteName: rec.RemoteName, localCSeq: rec.LocalCSeq, remoteCSeq: rec.RemoteCSeq,
		transport: rec.Transport, source: rec.Source, symmetric: rec.Symmetric, contact: rec.Contact,
	}
	var check sip.Uri // the stored URIs must parse: they are written as they are
	for _, u := range []struct {
		dst *sip.Uri
		src string
	}{{&check, rec.LocalURI}, {&check, rec.RemoteURI}, {&d.target, rec.Target}} {
		if err := sip.ParseUri(u.src, u.dst); err != nil {
			return nil, fmt.Errorf("parsing %q: %w", u.src, err)
		}
	}
	if len(rec.Routes) > 0 {
		d.routes = &routeSet{values: rec.Routes}
		params := sip.NewParams()
		if _, err := sip.ParseAddressValue(rec.Routes[0], &d.routes.first, &params); err != nil {
			return nil, fmt.Errorf("parsing route %q: %w", rec.Routes[0], err)
		}
		d.routes.strict = d.routes.first.UriParams == nil || !d.routes.first.UriParams.Has("lr")
	}
	if n.parts != nil {
		d.contact = n.contactFor(d.transport, d.source, strings.HasPrefix(rec.Contact, "<sips:"))
	}
	return &subscription{
		id:        rec.ID,
		aor:       rec.AOR,
		canonical: bridge.CanonicalAOR(rec.AOR),
		regID:     bridge.RegistrationID(rec.AOR),
		pkg:       pkg,
		event:     rec.Event,
		basic:     rec.BasicEvents,
		stored:    true,
		d:         d,
		expiresAt: rec.Expires,
		version:   rec.Version,
	}, nil
}

// recordOf is the stored form of s. Called with s.mu held.
func (n *Notifier) recordOf(s *subscription) *substore.Record {
	d := &s.d
	_, neutral := n.neutral.Load(s.id)
	var routes []string
	if d.routes != nil {
		routes = d.routes.values
	}
	return &substore.Record{
		ID: s.id, CallID: d.callID, LocalTag: d.localTag, RemoteTag: d.remoteTag,
		LocalURI: d.localURI, RemoteURI: d.remoteURI, RemoteName: d.remoteName,
		Target: d.target.String(), Routes: routes, LocalCSeq: d.localCSeq, RemoteCSeq: d.remoteCSeq,
		Transport: d.transport, Source: d.source, Symmetric: d.symmetric, Contact: d.contact,
		Package: s.pkg.name, Event: s.event, AOR: s.aor, Expires: s.expiresAt, Version: s.version,
		Neutral: neutral, BasicEvents: s.basic,
	}
}

// save writes s to the store (after a SUBSCRIBE changed it).
func (n *Notifier) save(rec *substore.Record, create bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return n.store.Save(ctx, rec, create)
}

// takeOver makes this instance the owner of the subscription a refresh
// names, loading it from the store when it is not here (RFC 6665
// 4.2.1.2: a refresh may reach any instance). nil when the store has no
// such subscription.
func (n *Notifier) takeOver(id string, local *subscription) (*subscription, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	rec, was, err := n.store.Take(ctx, id)
	switch {
	case errors.Is(err, substore.ErrNotFound):
		if local != nil {
			n.drop(local)
		}
		return nil, nil
	case err != nil:
		return local, err // keep serving what is here
	case local != nil && was:
		return local, nil
	}
	if local != nil {
		n.drop(local) // stale: it moved away and back
	}
	s, err := n.fromRecord(rec)
	if err != nil {
		_ = n.store.Delete(ctx, id)
		return nil, nil
	}
	if rec.Neutral {
		n.neutral.Store(s.id, struct{}{})
	}
	if !n.add(s) { // shutting down: it stays stored for a peer
		n.drop(s)
		return nil, errClosed
	}
	n.log.Debug("subscription moved here", "aor", s.aor, "call_id", s.d.callID, "from", rec.Owner)
	return s, nil
}

// fence takes the CSeq and version of j from the store. false: nothing
// is sent now, either because another instance owns s (the local copy is
// dropped silently) or because the store failed (s is retried with full
// state after storeRetry).
func (n *Notifier) fence(ctx context.Context, s *subscription, j *job) bool {
	cseq, ver, err := n.store.Advance(ctx, s.id)
	if errors.Is(err, substore.ErrNotOwner) {
		n.log.Debug("subscription owned elsewhere; dropped here", "aor", s.aor, "call_id", j.d.callID)
		n.drop(s)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		n.log.Warn("subscription store unavailable; NOTIFY postponed", "aor", s.aor, "call_id", j.d.callID, "err", err)
		s.resync = true
		if j.doc.Full {
			s.full = true
		}
		if !s.done {
			n.throttle(s, storeRetry)
		}
		return false
	}
	s.d.localCSeq, j.d.localCSeq = cseq, cseq
	if !s.pkg.presence {
		j.doc.Version, s.version = ver, ver+1
	}
	if j.winfo != nil {
		j.winfo.Version = ver
	}
	return true
}

// closeStored releases the heartbeat at shutdown, so that peers take the
// subscriptions over at their next round instead of after the lease.
func (n *Notifier) closeStored() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := n.store.Release(ctx); err != nil {
		n.log.Warn("releasing heartbeat failed; peers take over after the lease", "err", err)
	}
}

// pause is the shutdown of a notifier with a store: no final NOTIFYs
// (the subscriptions persist), no new ones; the NOTIFYs in flight finish
// within the drain time.
func (n *Notifier) pause() {
	n.subsMu.RLock()
	for _, s := range n.subs {
		s.mu.Lock()
		s.done = true // next() sends nothing more
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
	}
	n.subsMu.RUnlock()
	deadline := time.Now().Add(n.cfg.Drain)
	for n.delivering.Load() > 0 {
		if time.Now().After(deadline) {
			n.log.Warn("drain time over; NOTIFYs still in flight")
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
