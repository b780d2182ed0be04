package conformance

import (
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Harness connects the suite to one adapter and its real store. See the
// package documentation for when each method is called.
type Harness interface {
	// NewSource prepares a fresh, empty store area for the calling subtest
	// (cleaned up by t.Cleanup) and returns an adapter reading it. The
	// adapter must implement source.Reporter.
	NewSource(t *testing.T) source.Source
	// Insert writes a new binding as the registrar creates one.
	Insert(t *testing.T, r Row)
	// Update rewrites the binding with r.ID in place, as the registrar's
	// refresh does (expiry, Call-ID, CSeq, user agent, last-modified).
	Update(t *testing.T, r Row)
	// Delete removes the binding with r.ID, as an un-REGISTER does.
	Delete(t *testing.T, r Row)
	// InsertBad writes a binding with r.ID that the adapter must skip: a
	// row the store can hold but no registrar writes, such as a contact
	// that is not a SIP URI or an impossible expiry.
	InsertBad(t *testing.T, r Row)
	// Break makes the store unreachable or failing for the adapter (not
	// for the harness's own writes); Restore undoes it.
	Break(t *testing.T)
	Restore(t *testing.T)
}

// Row is one binding as the suite means it; the harness writes it in the
// store's native format.
type Row struct {
	// ID is unique within one subtest (and small: it fits an int32). The
	// harness derives the store key from it (a Kamailio ruid, an OpenSIPS
	// contact_id, ...) and must keep that mapping stable.
	ID int
	// AOR is "sip:" + User + "@" + Domain; the adapter must report exactly
	// it (configure the adapter's default domain to Domain if the store
	// keeps only the user part).
	AOR, User, Domain string
	// URI is the contact URI, unique per binding within a subtest.
	URI string
	// Expires is the absolute expiry in whole seconds; zero is permanent.
	Expires time.Time
	// CallID and CSeq identify the REGISTER that last wrote the binding.
	CallID string
	CSeq   uint32
	// UserAgent is the User-Agent of that REGISTER.
	UserAgent string
}

// Limits names Row fields a store does not keep, so the suite does not
// check them.
type Limits struct {
	// NoCSeq: the store keeps no CSeq (Asterisk); Contact.CSeq is ignored.
	NoCSeq bool
	// FixedCallID: the store keeps the Call-ID of the REGISTER that
	// created the binding (Asterisk); the event rules that change only
	// the Call-ID are not written to it.
	FixedCallID bool
}

// Limiter is implemented by a Harness whose store has Limits.
type Limiter interface {
	Limits() Limits
}

// Domain is the AOR domain of every Row the suite makes.
const Domain = "example.com"
