package bridge

import (
	"time"

	"github.com/regbridge/regbridge/source"
)

// Event is the RFC 3680 section 4.7.1 event that moved a contact into its
// current state; its value is the XML `event` attribute.
type Event string

// The nine contact events of RFC 3680 section 4.7.1.
const (
	EventRegistered   Event = "registered"   // init -> active, by a REGISTER
	EventCreated      Event = "created"      // init -> active, administratively
	EventRefreshed    Event = "refreshed"    // active -> active, by a REGISTER
	EventShortened    Event = "shortened"    // active -> active, expiry moved earlier
	EventExpired      Event = "expired"      // active -> terminated, not refreshed in time
	EventDeactivated  Event = "deactivated"  // active -> terminated, re-register now
	EventProbation    Event = "probation"    // active -> terminated, re-register later
	EventUnregistered Event = "unregistered" // active -> terminated, REGISTER with expiry 0
	EventRejected     Event = "rejected"     // active -> terminated, re-registering will not help
)

// Events are the nine contact events in the order of RFC 3680 section
// 4.7.1: the one list of them (an event's index is its code in the
// bridge's bindings and its slot in the metrics).
var Events = [...]Event{EventRegistered, EventCreated, EventRefreshed, EventShortened,
	EventExpired, EventDeactivated, EventProbation, EventUnregistered, EventRejected}

// Index is ev's position in Events, or -1 for a value RFC 3680 does not
// name.
func (ev Event) Index() int {
	for i, e := range Events {
		if e == ev {
			return i
		}
	}
	return -1
}

// ContactState is the state of one binding (RFC 3680 section 5.1).
type ContactState string

// Contact states.
const (
	ContactActive     ContactState = "active"
	ContactTerminated ContactState = "terminated"
)

// RegState is the state of one address-of-record (RFC 3680 section 4.7.1).
type RegState string

// Registration states. The terminated -> init transition is never reported
// (RFC 3680 4.7.1): a registration without contacts reads as init in full
// documents and as terminated in the partial document of its last change.
const (
	RegInit       RegState = "init"
	RegActive     RegState = "active"
	RegTerminated RegState = "terminated"
)

// ContactView is one contact as the bridge reports it: the store's values
// plus the bridge's identity and state for it.
type ContactView struct {
	source.Contact
	// ID is the reginfo contact id: stable across restarts (derived from
	// the AOR, the store key and the URI) and distinct for distinct URIs.
	ID    string
	State ContactState
	Event Event
	// Since is when the bridge saw the binding begin (zero when it was
	// already there at start-up, so duration-registered is unknown).
	Since time.Time
	// RetryAfter is the probation retry-after in seconds (EventProbation).
	RetryAfter uint32
	// Written is set in a Change when the registrar wrote the binding in
	// that step: a new binding, or one whose Modified moved. Only then
	// does SeenAt - Modified measure how late the change was seen.
	Written bool
}

// Change is what happened to one address-of-record in one step of the
// bridge: the contacts that changed and the registration state after it.
type Change struct {
	// Seq orders changes: it grows by one per step of the bridge, across
	// all AORs, so a reader that took a Registration at sequence s knows
	// that changes with Seq <= s are already in it.
	Seq   uint64
	AOR   string
	RegID string
	State RegState
	// Contacts are the changed contacts in their new state.
	Contacts []ContactView
	// SeenAt is when the source saw the change (for latency metrics); At is
	// when the bridge classified it.
	SeenAt time.Time
	At     time.Time
}

// Registration is the current state of one address-of-record.
type Registration struct {
	AOR   string
	ID    string
	State RegState
	// Contacts are the active contacts, in a stable order.
	Contacts []ContactView
}
