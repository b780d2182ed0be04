package notifier

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
)

// Reason is a Subscription-State reason (RFC 6665 4.2.2, 8.4).
type Reason string

// Reasons regbridge sends.
const (
	ReasonTimeout     Reason = "timeout"     // not refreshed, unsubscribed, or a fetch
	ReasonDeactivated Reason = "deactivated" // shutdown: re-subscribe at once elsewhere
	ReasonNoResource  Reason = "noresource"  // the AOR no longer exists
	ReasonRejected    Reason = "rejected"    // authorization withdrawn
)

// dialog is the notifier's side of the SUBSCRIBE dialog (RFC 3261 12,
// RFC 6665 4.1.2.1). sipgo keeps no SUBSCRIBE dialogs, so regbridge does.
type dialog struct {
	callID     string
	localTag   string  // our tag: the To tag of our 2xx
	remoteTag  string  // the subscriber's From tag
	localURI   sip.Uri // SUBSCRIBE To URI
	remoteURI  sip.Uri // SUBSCRIBE From URI
	remoteName string
	target     sip.Uri  // remote target: the latest SUBSCRIBE Contact
	routes     []string // Record-Route values of the initial SUBSCRIBE, in order
	localCSeq  uint32
	remoteCSeq uint32
	transport  string // UDP, TCP...
	source     string // host:port the SUBSCRIBE came from
	symmetric  bool   // UDP subscriber asked for rport: answer its source
	contact    string // our Contact header value
}

// pendingContact is one coalesced contact change waiting to be notified.
type pendingContact struct {
	view bridge.ContactView
	seq  uint64
}

// subscription is one reg subscription. Its mutex guards everything but
// the fields set once at creation.
type subscription struct {
	id        string // dialog id (Call-ID, local tag, remote tag)
	aor       string // the resource as subscribed (Request-URI)
	canonical string
	regID     string // bridge.RegistrationID of the AOR
	event     string // Event header value to echo, with any id parameter

	mu        sync.Mutex
	d         dialog
	expiresAt time.Time
	timer     *time.Timer
	version   uint32 // the version of the next document
	pending   []pendingContact
	seenAt    time.Time // when the source saw the oldest pending change
	regState  bridge.RegState
	regSeq    uint64
	full      bool    // a full-state document is owed now (new or refreshed)
	resync    bool    // the next document, whenever it is due, is full state
	final     *Reason // set: the next NOTIFY ends the subscription
	inFlight  bool    // a delivery goroutine owns the subscription
	done      bool    // removed; send nothing more
}

// offer merges a bridge change into the pending set. Called with the
// bridge's lock held: it must stay short and never block.
func (s *subscription) offer(c *bridge.Change) (schedule bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.final != nil {
		return false
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
			s.pending = append(s.pending, pendingContact{view: *v, seq: c.Seq})
		}
	}
	s.regState, s.regSeq = c.State, c.Seq
	return s.claim()
}

// claim marks the subscription as owned by a delivery if nobody owns it.
// Called with s.mu held.
func (s *subscription) claim() bool {
	if s.inFlight || s.done {
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
}

// remaining is the whole seconds left, for Subscription-State expires.
func (s *subscription) remaining(now time.Time) uint32 {
	d := s.expiresAt.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint32(d / time.Second)
}
