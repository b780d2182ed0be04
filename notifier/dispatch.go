package notifier

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/render"
)

// enqueue hands a claimed subscription to the dispatcher. It never blocks:
// the ready queue holds each subscription at most once (claim), so it is
// bounded by the number of subscriptions.
func (n *Notifier) enqueue(s *subscription) {
	n.readyMu.Lock()
	n.ready = append(n.ready, s)
	n.readyMu.Unlock()
	select {
	case n.readyC <- struct{}{}:
	default:
	}
}

// pop takes the oldest ready subscription, or nil.
func (n *Notifier) pop() *subscription {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	if n.readyHead == len(n.ready) {
		return nil
	}
	s := n.ready[n.readyHead]
	n.ready[n.readyHead] = nil
	n.readyHead++
	switch {
	case n.readyHead == len(n.ready):
		n.ready, n.readyHead = n.ready[:0], 0
	case n.readyHead >= 1024 && n.readyHead > len(n.ready)/2:
		// Under a load that never empties the queue, reclaim the
		// consumed front instead of letting appends grow the array.
		k := copy(n.ready, n.ready[n.readyHead:])
		clear(n.ready[k:])
		n.ready, n.readyHead = n.ready[:k], 0
	}
	return s
}

// dispatch runs deliveries for ready subscriptions, at most MaxInFlight at
// a time, until ctx ends and the deliveries have finished. A delivery
// goroutine goes on with the next ready subscription when it is done and
// ends when none is waiting: under load, goroutines (and their grown
// stacks) are reused instead of made per NOTIFY.
func (n *Notifier) dispatch(ctx context.Context) {
	slots := make(chan struct{}, n.cfg.MaxInFlight)
	for {
		s := n.pop()
		if s == nil {
			select {
			case <-n.readyC:
				continue
			case <-ctx.Done():
				n.deliveries.Wait()
				return
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			n.deliveries.Wait()
			return
		}
		n.deliveries.Add(1)
		go func() {
			defer func() { <-slots; n.deliveries.Done() }()
			bufs := deliveryPool.Get().(*deliveryBufs)
			defer deliveryPool.Put(bufs)
			for ; s != nil; s = n.pop() {
				n.deliverRecovering(ctx, s, bufs)
			}
		}()
	}
}

// job is one NOTIFY to send, decided under the subscription's lock.
type job struct {
	doc         render.Document // reginfo; for presence, Registrations[0] is the AOR
	presence    bool            // render PIDF from doc.Registrations[0] at ts
	ts          time.Time       // PIDF timestamp
	noBody      bool            // a final NOTIFY that reveals nothing
	contentType string
	final       *ending
	remain      uint32
	d           dialog
	event       string
	seenAt      time.Time
	winfo       *render.WatcherDoc // watcherinfo instead of doc
}

// deliveryBufs are a delivery worker's buffers, kept from one NOTIFY to
// the next (and pooled between workers) so that a NOTIFY allocates
// neither its body nor the contact list of a partial document.
type deliveryBufs struct {
	scratch []bridge.ContactView // a partial document's contacts
	body    []byte               // the rendered document
}

// maxKeptBody is the largest body buffer a worker keeps between NOTIFYs.
const maxKeptBody = 64 << 10

// deliveryPool keeps the buffers of workers that ended (a worker ends
// when the ready queue is empty, so a burst of changes starts new ones).
var deliveryPool = sync.Pool{New: func() any { return new(deliveryBufs) }}

// deliver sends NOTIFYs on s until it has nothing left to say; the
// subscription's inFlight flag makes it the only sender on the dialog.
func (n *Notifier) deliver(ctx context.Context, s *subscription, bufs *deliveryBufs) {
	n.delivering.Add(1)
	defer n.delivering.Add(-1)
	defer func() {
		if cap(bufs.body) > maxKeptBody {
			bufs.body = nil
		}
	}()
	for {
		j, ok := n.next(s, bufs.scratch[:0])
		if !ok {
			return
		}
		if len(j.doc.Registrations) == 1 && cap(j.doc.Registrations[0].Contacts) > cap(bufs.scratch) {
			bufs.scratch = j.doc.Registrations[0].Contacts[:0]
		}
		if s.stored && !n.fence(ctx, s, &j) {
			return
		}
		// The body is not kept past this loop: the UDP path copies it
		// into its datagram, sipgo's path into the request it parses.
		bufs.body = appendBody(bufs.body[:0], &j, time.Now())
		body := bufs.body
		start := time.Now()
		res, err := n.send(ctx, &j, body)
		if err == nil && n.cfg.NotifyAuthUser != "" && (res.StatusCode == 401 || res.StatusCode == 407) {
			n.obs.NotifyDone(j.d.transport, outcome(res, err), time.Since(start), time.Time{})
			start = time.Now()
			res, err = n.authenticate(ctx, s, &j, body, res)
		}
		n.obs.NotifyDone(j.d.transport, outcome(res, err), time.Since(start), j.seenAt)
		if errors.Is(err, errTooLarge) && n.endLarge(s, &j, err) {
			continue // with the final NOTIFY
		}
		n.finish(s, &j, res, err)
		if j.final != nil {
			return
		}
	}
}

// appendBody appends the body of j to dst.
func appendBody(dst []byte, j *job, now time.Time) []byte {
	switch {
	case j.noBody:
		return dst
	case j.winfo != nil:
		return render.AppendWatcherinfo(dst, *j.winfo, now)
	case j.presence:
		return render.AppendPIDF(dst, j.doc.Registrations[0], j.ts)
	default:
		return render.AppendReginfo(dst, j.doc, now)
	}
}

// next decides what s must send now, or releases s when nothing. Within
// the rate window after the previous NOTIFY, changes wait: the window's
// timer takes the subscription over and hands it back when it ends. A
// partial document's contacts are appended to scratch.
func (n *Notifier) next(s *subscription, scratch []bridge.ContactView) (job, bool) {
	if s.pkg.watched != nil {
		return n.nextWinfo(s)
	}
	now := time.Now()
	s.mu.Lock()
	work := s.full || s.final != nil || len(s.pending) > 0 || s.dirty
	if s.done || !work {
		s.inFlight = false
		s.mu.Unlock()
		return job{}, false
	}
	immediate := s.full || s.final != nil
	if !immediate && n.cfg.MinInterval > 0 {
		if wait := s.lastSent.Add(n.cfg.MinInterval).Sub(now); wait > 0 {
			n.throttle(s, wait)
			s.mu.Unlock()
			return job{}, false
		}
	}
	withState := s.final == nil || (s.final.reason.revealsState() && !s.final.bare)
	needFull := s.full || s.final != nil || s.resync || s.pkg.presence
	s.mu.Unlock()

	var reg bridge.Registration
	var seq uint64
	if needFull && withState {
		// Read the bridge without holding s.mu: the bridge calls offer
		// (which takes s.mu) with its own lock held (the lock order is in
		// docs/design.md#lock-order-between-the-bridge-and-the-notifier).
		reg, seq = n.lookupFor(s)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	j := job{final: s.final, event: s.event, contentType: s.pkg.contentType, presence: s.pkg.presence}
	if len(s.pending) > 0 || s.dirty {
		j.seenAt = s.seenAt
	}
	switch {
	case !withState:
		s.releasePending()
		s.dirty = false
		// reginfo: an empty partial document keeps the version sequence;
		// presence: no body (RFC 3856 6.8 allows a NOTIFY without one).
		j.noBody = s.pkg.presence
	case needFull:
		s.dropUpTo(seq)
		s.full, s.resync = false, false
		j.doc = render.Document{Full: true, Registrations: []bridge.Registration{reg}}
	default:
		reg := bridge.Registration{AOR: s.aor, ID: s.regID, State: s.regState}
		reg.Contacts = scratch
		for _, p := range s.pending {
			reg.Contacts = append(reg.Contacts, p.view)
		}
		s.releasePending()
		j.doc = render.Document{Registrations: []bridge.Registration{reg}}
	}
	j.doc.BasicEvents = s.basic
	if s.pkg.presence {
		// RFC 3863 4.1.7: no two successive documents with one timestamp.
		j.ts = now
		if !j.ts.After(s.lastTS) {
			j.ts = s.lastTS.Add(time.Nanosecond)
		}
		s.lastTS = j.ts
	} else {
		j.doc.Version = s.version
		s.version++
	}
	s.d.localCSeq++
	j.d = s.d
	j.remain = s.remaining(now)
	s.lastSent = now
	return j, true
}

// throttle parks s until its rate window ends: the window timer keeps
// the subscription claimed (inFlight stays set), so changes arriving
// meanwhile only coalesce, and hands it back to the dispatcher at the
// end. One timer per subscription, reused. Called with s.mu held.
func (n *Notifier) throttle(s *subscription, wait time.Duration) {
	s.throttled = true
	if s.window == nil {
		s.window = time.AfterFunc(wait, func() { n.windowEnded(s) })
		return
	}
	s.window.Reset(wait)
}

// windowEnded hands a throttled subscription back to the dispatcher,
// unless a NOTIFY that could not wait (claim) has taken it over.
func (n *Notifier) windowEnded(s *subscription) {
	s.mu.Lock()
	if !s.throttled || s.done {
		s.mu.Unlock()
		return
	}
	s.throttled = false
	s.mu.Unlock()
	n.enqueue(s)
}

// finish applies the outcome of one NOTIFY transaction (RFC 6665 4.2.2).
func (n *Notifier) finish(s *subscription, j *job, res *sip.Response, err error) {
	// The logger with this subscription's attributes is built only when
	// something is logged: slog's With formats them at once, which cost
	// 2% of the CPU per NOTIFY when it ran for every success.
	log := func() *slog.Logger { return n.log.With("aor", s.aor, "call_id", j.d.callID) }
	if j.final != nil {
		n.remove(s)
		if err == nil && res.IsSuccess() {
			n.stats.Sent.Add(1)
		} else {
			n.stats.Failed.Add(1)
		}
		log().Debug("subscription ended", "reason", string(j.final.reason))
		return
	}
	switch {
	case err != nil:
		// Timer F or a transport failure: the subscriber is gone.
		n.stats.Failed.Add(1)
		n.stats.Removed.Add(1)
		log().Info("NOTIFY failed; subscription removed", "err", err)
		n.remove(s)
	case res.IsSuccess():
		// 202 is a success too: RFC 6665 8.3.1 treats it as 200.
		n.stats.Sent.Add(1)
	case removesSubscription(res.StatusCode):
		n.stats.Failed.Add(1)
		n.stats.Removed.Add(1)
		log().Info("NOTIFY rejected; subscription removed", "status", res.StatusCode)
		n.remove(s)
	default:
		// The subscription survives (RFC 5057: 3xx, 400-403, 406-408,
		// 5xx...); what the subscriber missed is resent as full state.
		n.stats.Failed.Add(1)
		log().Info("NOTIFY failed; next one is full state", "status", res.StatusCode)
		s.mu.Lock()
		s.resync = true // (presence documents are always full)
		s.mu.Unlock()
	}
}

// removesSubscription lists the NOTIFY responses after which the
// subscription MUST be removed (RFC 6665 4.2.2).
func removesSubscription(code int) bool {
	switch code {
	case 404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604:
		return true
	}
	return false
}

// errNoResponse stands for a transaction that ended with neither a
// response nor an error (sipgo does that when its layers close).
var errNoResponse = errors.New("NOTIFY transaction ended without a response")

// isTimeout reports whether err is a transaction timeout (Timer F).
func isTimeout(err error) bool {
	return errors.Is(err, sip.ErrTransactionTimeout) || errors.Is(err, context.DeadlineExceeded)
}
