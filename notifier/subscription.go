package notifier

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
)

// Reason is a Subscription-State reason (RFC 6665 4.2.2, 8.4).
type Reason string

// Reasons regbridge sends. Each one's use is in the comment; RFC 6665
// 4.1.3 says what the subscriber does with it.
const (
	// ReasonTimeout: not refreshed, unsubscribed (Expires: 0), or a fetch.
	ReasonTimeout Reason = "timeout"
	// ReasonDeactivated: shutdown; re-subscribe at once (to another
	// instance).
	ReasonDeactivated Reason = "deactivated"
	// ReasonProbation: ended for now (maintenance); retry after retry-after.
	ReasonProbation Reason = "probation"
	// ReasonRejected: authorization withdrawn; do not re-subscribe.
	ReasonRejected Reason = "rejected"
	// ReasonNoResource: the AOR no longer exists; do not re-subscribe.
	ReasonNoResource Reason = "noresource"
	// ReasonGiveUp: authorization was not obtained in time; retry after
	// retry-after. regbridge has no pending subscriptions, so it is only
	// sent when Terminate is asked to.
	ReasonGiveUp Reason = "giveup"
)

// retryAfterMeaningful reports whether a retry-after parameter means
// anything with r (RFC 6665 4.1.3): only for probation and giveup.
func (r Reason) retryAfterMeaningful() bool {
	return r == ReasonProbation || r == ReasonGiveUp
}

// revealsState reports whether the final NOTIFY with reason r may carry
// the registration state. After rejected (authorization withdrawn),
// noresource and giveup the subscriber is not, or no longer, entitled to
// it: the final reginfo document is an empty partial one (it keeps the
// version sequence and reveals nothing), the final PIDF NOTIFY has no body.
func (r Reason) revealsState() bool {
	switch r {
	case ReasonRejected, ReasonNoResource, ReasonGiveUp:
		return false
	}
	return true
}

// valid reports whether r is a reason regbridge sends.
func (r Reason) valid() bool {
	switch r {
	case ReasonTimeout, ReasonDeactivated, ReasonProbation, ReasonRejected, ReasonNoResource, ReasonGiveUp:
		return true
	}
	return false
}

// ending is why and how a subscription ends: its final NOTIFY's reason
// and retry-after (seconds, 0 for none).
type ending struct {
	reason     Reason
	retryAfter uint32
	// bare: the final NOTIFY carries no registration state whatever the
	// reason, because the document with it reaches the subscriber over
	// no transport (large.go).
	bare bool
}

// dialog is the notifier's side of the SUBSCRIBE dialog (RFC 3261 12,
// RFC 6665 4.1.2.1). sipgo keeps no SUBSCRIBE dialogs, so regbridge does.
type dialog struct {
	callID    string
	localTag  string // our tag: the To tag of our 2xx
	remoteTag string // the subscriber's From tag
	// localURI and remoteURI are the SUBSCRIBE's To and From URIs as
	// written in our From and To: only ever written, so kept as text
	// (two parsed URIs cost a subscription about 400 bytes more).
	localURI   string
	remoteURI  string
	remoteName string
	target     sip.Uri   // remote target: the latest SUBSCRIBE Contact
	routes     *routeSet // from the Record-Route of the initial SUBSCRIBE; nil without
	localCSeq  uint32
	remoteCSeq uint32
	transport  string // UDP, TCP, TLS, WS, WSS
	source     string // host:port the SUBSCRIBE came from
	symmetric  bool   // UDP subscriber asked for rport: answer its source
	contact    string // our Contact header value
}

// pendingContact is one coalesced contact change waiting to be notified.
type pendingContact struct {
	view bridge.ContactView
	seq  uint64
}

// A subscription holds pending changes only between a change and its
// NOTIFY: the array they live in comes from a pool and goes back to it,
// so that an idle subscription holds none (with 100,000 subscriptions
// that each had one change, the arrays kept cost about 250 bytes each)
// and a steady stream of changes allocates none. Changes that outgrow the
// pooled array move to an array of their own, left to the collector.
const pendingArrLen = 2

type pendingArr [pendingArrLen]pendingContact

var pendingPool = sync.Pool{New: func() any { return new(pendingArr) }}

// addPending appends p to the pending changes. Called with s.mu held.
func (s *subscription) addPending(p pendingContact) {
	if s.pending == nil {
		s.pending = pendingPool.Get().(*pendingArr)[:0]
	}
	s.pending = append(s.pending, p)
}

// releasePending empties the pending changes and gives their array back.
// Called with s.mu held.
func (s *subscription) releasePending() {
	if cap(s.pending) == pendingArrLen {
		arr := (*pendingArr)(s.pending[:pendingArrLen])
		clear(arr[:])
		pendingPool.Put(arr)
	}
	s.pending = nil
}

// subscription is one subscription of either package. Its mutex guards
// everything but the fields set once at creation.
type subscription struct {
	id        string // dialog id (Call-ID, local tag, remote tag)
	aor       string // the resource as subscribed (Request-URI)
	canonical string
	regID     string // bridge.RegistrationID of the AOR
	pkg       *eventPackage
	event     string // Event header value to echo, with any id parameter
	stored    bool   // kept in the shared store: every NOTIFY is fenced

	mu        sync.Mutex
	d         dialog
	expiresAt time.Time
	timer     *time.Timer
	// reg: the version of the next document and the changes not yet sent.
	version  uint32
	pending  []pendingContact
	regState bridge.RegState
	regSeq   uint64
	// presence: the open/closed view changed since the last document, and
	// that document's timestamp (RFC 3863 4.1.7: strictly increasing).
	dirty  bool
	lastTS time.Time

	seenAt   time.Time // when the source saw the oldest unsent change
	full     bool      // a full-state NOTIFY is owed now (new or refreshed)
	resync   bool      // the next document, whenever it is due, is full state
	final    *ending   // set: the next NOTIFY ends the subscription
	inFlight bool      // a delivery (or the rate window) owns the subscription
	done     bool      // removed; send nothing more

	// Rate control (Config.MinInterval): when the last NOTIFY left, and
	// the timer that hands the subscription back to the dispatcher at the
	// end of the window. While throttled the timer owns the subscription.
	lastSent  time.Time
	window    *time.Timer
	throttled bool
}

// offer merges a bridge change into the pending set. Called with the
// bridge's lock held: it must stay short and never block.
func (s *subscription) offer(c *bridge.Change) (schedule bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.final != nil {
		return false
	}
	if s.pkg.presence {
		if !presenceChanged(c) {
			return false
		}
		if !s.dirty {
			s.seenAt = c.SeenAt
		}
		s.dirty = true
		s.regSeq = c.Seq
		return s.claim()
	}
	if len(s.pending) == 0 {
		s.seenAt = c.SeenAt
	}
	for i := range c.Contacts {
		v := &c.Contacts[i]
		replaced := false
		for j := range s.pending {
			if s.pending[j].view.ID == v.ID {
				s.pending[j] = pendingContact{view: *v, seq: c.Seq}
				replaced = true
				break
			}
		}
		if !replaced {
			s.addPending(pendingContact{view: *v, seq: c.Seq})
		}
	}
	s.regState, s.regSeq = c.State, c.Seq
	return s.claim()
}

// presenceChanged reports whether a change alters the presence document:
// a contact came or went. Refreshes and shortened expiries do not change
// what a watcher sees, so they send nothing.
func presenceChanged(c *bridge.Change) bool {
	for i := range c.Contacts {
		v := &c.Contacts[i]
		if v.State == bridge.ContactTerminated || v.Event == bridge.EventRegistered || v.Event == bridge.EventCreated {
			return true
		}
	}
	return false
}

// claim marks the subscription as owned by a delivery if nobody owns it.
// A NOTIFY that must leave now (full state after a SUBSCRIBE, or the final
// one) takes the subscription over from a rate window. Called with s.mu
// held.
func (s *subscription) claim() bool {
	if s.done {
		return false
	}
	if s.throttled && (s.full || s.final != nil) {
		s.throttled = false
		s.window.Stop()
		return true // the window's ownership passes to the caller
	}
	if s.inFlight {
		return false
	}
	s.inFlight = true
	return true
}

// dropUpTo forgets pending changes already contained in a full document
// built from bridge state at sequence seq. Called with s.mu held.
func (s *subscription) dropUpTo(seq uint64) {
	kept := s.pending[:0]
	for _, p := range s.pending {
		if p.seq > seq {
			kept = append(kept, p)
		}
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	if len(kept) == 0 {
		s.releasePending()
	}
	if s.pkg.presence && s.regSeq <= seq {
		s.dirty = false
	}
}

// remaining is the whole seconds left, for Subscription-State expires.
func (s *subscription) remaining(now time.Time) uint32 {
	d := s.expiresAt.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint32(d / time.Second)
}
