// Package bridgetest holds the bridge's event rules as data, for tests:
// the bridge's own tests apply them to the bridge directly, and
// internal/conformance writes them through each adapter into a real store
// (docs/stores.md#how-store-changes-become-events). Tests only import it.
package bridgetest

import (
	"time"

	"github.com/regbridge/regbridge/bridge"
)

// Binding is the part of a stored binding the registrar rewrites.
type Binding struct {
	Expires   time.Time
	CallID    string
	CSeq      uint32
	UserAgent string
}

// Change is what the registrar does to one stored binding: delete it, or
// rewrite it in place.
type Change struct {
	// Delete removes the row (an un-REGISTER) before it expires.
	Delete bool
	// Expires moves the expiry by this much (negative: earlier).
	Expires time.Duration
	// CSeq is added to the CSeq (a new REGISTER of the same dialog).
	CSeq uint32
	// CallID, when set, replaces the Call-ID (the phone restarted).
	CallID string
	// UserAgent, when set, replaces the User-Agent.
	UserAgent string
}

// Apply returns b as the registrar leaves it after c (c.Delete aside).
func (c Change) Apply(b Binding) Binding {
	b.Expires = b.Expires.Add(c.Expires)
	b.CSeq += c.CSeq
	if c.CallID != "" {
		b.CallID = c.CallID
	}
	if c.UserAgent != "" {
		b.UserAgent = c.UserAgent
	}
	return b
}

// Rule is one event rule: a change to a binding that is active and an hour
// from expiry, and the events the bridge reports for it (none: nil).
type Rule struct {
	Name   string
	Change Change
	Want   []bridge.Event
}

// Rules are the event rules for a change to an active binding, as
// docs/stores.md#how-store-changes-become-events lists them.
var Rules = []Rule{
	{"new CSeq with a later expiry is refreshed",
		Change{CSeq: 1, Expires: time.Hour}, []bridge.Event{bridge.EventRefreshed}},
	{"new Call-ID is refreshed",
		Change{CallID: "restarted-phone"}, []bridge.Event{bridge.EventRefreshed}},
	{"same REGISTER with a later expiry is refreshed",
		Change{Expires: time.Hour}, []bridge.Event{bridge.EventRefreshed}},
	{"same REGISTER with an earlier expiry is shortened",
		Change{Expires: -30 * time.Minute}, []bridge.Event{bridge.EventShortened}},
	{"user agent alone reports nothing",
		Change{UserAgent: "rules-phone/2.0"}, nil},
	{"delete before expiry is unregistered",
		Change{Delete: true}, []bridge.Event{bridge.EventUnregistered}},
}
