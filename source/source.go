// Package source declares what every contact-store adapter speaks: a
// Contact as the registrar stored it, a Batch of what an adapter saw (a full
// snapshot or a set of changes), and the Source and Sink interfaces that
// connect an adapter to the bridge.
//
// Adapters live in sub-packages, one per registrar family
// (source/kamailio, ...). An adapter reports facts only; it never decides
// which RFC 3680 event a difference means. That is the bridge's job.
package source

import (
	"context"
	"time"
)

// Contact is one binding as the store holds it, decoded into Go types.
// Strings are the store's values unchanged (untrusted: they may contain
// anything, including XML-special characters).
type Contact struct {
	// Key is the store's stable identity of the binding (Kamailio ruid,
	// OpenSIPS contact_id, ...). Unique within one source.
	Key string
	// AOR is the address-of-record, e.g. "sip:alice@example.com".
	AOR string
	// URI is the contact URI.
	URI string
	// Expires is the absolute expiry instant; the zero Time means the
	// binding is permanent.
	Expires time.Time
	// Q is the contact's q-value, or -1 when the store says unspecified.
	Q float32
	// CallID and CSeq identify the REGISTER that last touched the binding.
	CallID string
	CSeq   uint32
	// Modified is when the registrar last wrote the binding (zero if the
	// store does not say).
	Modified time.Time
	// UserAgent is the User-Agent header of the last REGISTER.
	UserAgent string
	// Instance is the +sip.instance value without surrounding quotes,
	// usually "<urn:uuid:...>"; empty when absent.
	Instance string
	// RegID is the RFC 5626 reg-id, 0 when absent.
	RegID uint32
	// Received is the source address the registrar saw, Path its Path
	// header values, both as stored (may be empty).
	Received string
	Path     string
	// Socket is the registrar's local socket the REGISTER arrived on, as
	// stored ("udp:192.0.2.1:5060"); empty when the store does not say.
	Socket string
	// Administrative is true when the store shows the binding was made by
	// an operator or tool rather than by a SIP REGISTER (Kamailio: ruid
	// prefix "ulcx" from the ul.add RPC).
	Administrative bool
}

// Permanent reports whether the binding never expires.
func (c *Contact) Permanent() bool { return c.Expires.IsZero() }

// Batch is what an adapter saw in one read of its store.
type Batch struct {
	// Full is true when Contacts is the whole content of the store; then
	// every binding the receiver knows but Contacts lacks is gone.
	Full bool
	// Contacts are the bindings read (the whole store when Full, otherwise
	// the ones that were created or changed).
	Contacts []Contact
	// Deleted are Keys of bindings removed from the store (only when not
	// Full).
	Deleted []string
	// SeenAt is when the adapter learned of the batch; it is the start of
	// the change-to-NOTIFY latency.
	SeenAt time.Time
}

// Sink receives what an adapter sees. The bridge implements it.
type Sink interface {
	// Apply takes one batch. It must not retain b.Contacts' backing array
	// after it returns (the adapter may reuse it).
	Apply(ctx context.Context, b Batch) error
}

// Source is a contact-store adapter. Run reads the store until ctx ends,
// sending a Full batch first (and again after every reconnect) and then
// changes as it learns of them. It returns nil when ctx is cancelled and an
// error only when the store can never be read (bad configuration); outages
// are retried inside Run.
type Source interface {
	Run(ctx context.Context, sink Sink) error
}

// Stats is what an adapter reports about its store, for readiness and
// metrics. Adapters implement Reporter.
type Stats struct {
	// Up is true while the store answers; false during an outage.
	Up bool
	// Polls counts reads of the store (change checks and snapshots),
	// Errors failed ones, Skipped rows that could not be decoded.
	Polls, Errors, Skipped uint64
	// LastFull is when the last full snapshot was delivered.
	LastFull time.Time
	// Problem explains, while the store is down, a failure that retrying
	// will not fix (a missing table, a refused user): what is wrong and
	// what to do. Empty during an ordinary outage.
	Problem string
	// Mode is how the adapter learns of changes right now: ModePoll,
	// ModeTrigger, ModeKeyspace... Empty: the adapter does not say.
	Mode string
}

// Modes of Stats.Mode.
const (
	ModePoll     = "poll"     // reads the store every poll interval
	ModeTrigger  = "trigger"  // reads a changelog filled by triggers
	ModeKeyspace = "keyspace" // follows Redis keyspace notifications
	ModeLogical  = "logical"  // follows PostgreSQL logical replication
)

// Reporter is implemented by adapters that report Stats.
type Reporter interface {
	Stats() Stats
}
