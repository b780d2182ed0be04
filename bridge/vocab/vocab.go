package vocab

import (
	"time"

	"github.com/regbridge/regbridge/bridge"
)

// Binding is what a contact carries wherever it appears: in a
// Registration's contact list and in a contact Event. Fields the output
// does not know are omitted.
type Binding struct {
	URI string `json:"uri"`
	// State is active or terminated; Event is the RFC 3680 section 4.7.1
	// event that put the contact there (registered, created, refreshed,
	// shortened, expired, deactivated, probation, unregistered, rejected).
	State string `json:"state"`
	Event string `json:"event"`
	// Expires is the seconds left to an active contact's expiry (reginfo's
	// expires attribute); ExpiresAt is the same instant. Both are absent
	// for terminated and permanent contacts.
	Expires   *int64     `json:"expires,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// RetryAfter is probation's retry-after, in seconds.
	RetryAfter uint64   `json:"retry_after,omitempty"`
	Q          *float32 `json:"q,omitempty"`
	CallID     string   `json:"call_id,omitempty"`
	CSeq       uint64   `json:"cseq,omitempty"`
	UserAgent  string   `json:"user_agent,omitempty"`
	// Instance is the +sip.instance of RFC 5626, RegID its reg-id.
	Instance string `json:"instance,omitempty"`
	RegID    uint32 `json:"reg_id,omitempty"`
	Received string `json:"received,omitempty"`
	Path     string `json:"path,omitempty"`
	// Socket is the registrar's receiving socket as the store has it
	// ("udp:192.0.2.1:5060"); Transport is derived from it, else from the
	// URIs (see ContactTransport).
	Socket    string `json:"socket,omitempty"`
	Transport string `json:"transport,omitempty"`
}

// Contact is one binding of an address-of-record.
type Contact struct {
	// ID is the reginfo contact id; Key is the store's key of the binding
	// (Kamailio's ruid), absent where only reginfo was seen (watch).
	ID  string `json:"id"`
	Key string `json:"key,omitempty"`
	Binding
	Modified *time.Time `json:"modified,omitempty"`
	// Since is when regbridge saw the binding begin.
	Since *time.Time `json:"since,omitempty"`
	// Administrative marks a binding made by an operator tool.
	Administrative bool `json:"administrative,omitempty"`

	// Only reginfo carries these (regbridge watch --json).
	DurationRegistered *uint64           `json:"duration_registered,omitempty"`
	DisplayName        string            `json:"display_name,omitempty"`
	Params             map[string]string `json:"params,omitempty"`
	PubGRUU            string            `json:"pub_gruu,omitempty"`
	TempGRUU           string            `json:"temp_gruu,omitempty"`
}

// Registration is one address-of-record and its contacts.
type Registration struct {
	AOR      string    `json:"aor"`
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Contacts []Contact `json:"contacts"`
}

// Event is one contact event as the SSE stream and the webhooks send it:
// what happened to one contact of one address-of-record, with the
// registration's state after the change.
type Event struct {
	// Seq is the bridge's change sequence number; contacts changed in the
	// same step of the same AOR share it.
	Seq               uint64 `json:"seq"`
	AOR               string `json:"aor"`
	RegistrationID    string `json:"registration_id"`
	RegistrationState string `json:"registration_state"`
	ContactID         string `json:"contact_id"`
	Binding
	// Time is when the bridge classified the change.
	Time time.Time `json:"time"`
}

// Subscription is one live SIP subscription.
type Subscription struct {
	AOR string `json:"aor"`
	// Event is the Event header's package, e.g. reg.
	Event string `json:"event"`
	// Subscriber is the SUBSCRIBE's From URI, Contact where NOTIFYs go,
	// Source the host:port the SUBSCRIBE came from.
	Subscriber string `json:"subscriber"`
	Contact    string `json:"contact"`
	Transport  string `json:"transport"`
	Source     string `json:"source"`
	CallID     string `json:"call_id"`
	// Expires is the seconds left until the subscription ends unless
	// refreshed, ExpiresAt the same instant.
	Expires   int64     `json:"expires"`
	ExpiresAt time.Time `json:"expires_at"`
	// Version is the version of the last document sent (-1: none yet).
	Version int64 `json:"version"`
}

// Watcher is one subscription watching an AOR (RFC 3857 watcher
// information: what a reg.winfo or presence.winfo subscriber sees). The
// API knows every field; a watcherinfo document (regbridge watch --winfo)
// may lack duration-subscribed or expiration, and then Since or
// Expires and ExpiresAt are left out.
type Watcher struct {
	ID          string    `json:"id"`
	Package     string    `json:"package"`
	URI         string    `json:"uri"`
	DisplayName string    `json:"display_name,omitempty"`
	Status      string    `json:"status"`
	Event       string    `json:"event"`
	Since       time.Time `json:"since,omitzero"`
	Expires     *int64    `json:"expires,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
}

// SecondsLeft is the whole seconds from now to t, never negative: the
// expires of every output.
func SecondsLeft(t, now time.Time) int64 {
	return max(int64(t.Sub(now).Round(time.Second)/time.Second), 0)
}

// BindingOf is the Binding of a bridge contact at now.
func BindingOf(v *bridge.ContactView, now time.Time) Binding {
	b := Binding{
		URI: v.URI, State: string(v.State), Event: string(v.Event),
		RetryAfter: uint64(v.RetryAfter), CallID: v.CallID, CSeq: uint64(v.CSeq), UserAgent: v.UserAgent,
		Instance: v.Instance, RegID: v.RegID, Received: v.Received, Path: v.Path,
		Socket: v.Socket, Transport: ContactTransport(v.Socket, v.Received, v.URI),
	}
	if v.State == bridge.ContactActive && !v.Permanent() {
		left := SecondsLeft(v.Expires, now)
		at := v.Expires.UTC()
		b.Expires, b.ExpiresAt = &left, &at
	}
	if v.Q >= 0 {
		q := v.Q
		b.Q = &q
	}
	return b
}

// ContactOf is a bridge contact as a Contact at now.
func ContactOf(v *bridge.ContactView, now time.Time) Contact {
	return Contact{
		ID: v.ID, Key: v.Key, Binding: BindingOf(v, now),
		Modified: timePtr(v.Modified), Since: timePtr(v.Since), Administrative: v.Administrative,
	}
}

// RegistrationOf is a bridge registration as a Registration at now.
func RegistrationOf(r *bridge.Registration, now time.Time) Registration {
	out := Registration{AOR: r.AOR, ID: r.ID, State: string(r.State), Contacts: make([]Contact, len(r.Contacts))}
	for i := range r.Contacts {
		out.Contacts[i] = ContactOf(&r.Contacts[i], now)
	}
	return out
}

// EventsOf flattens a change into one Event per changed contact.
func EventsOf(c *bridge.Change) []Event {
	out := make([]Event, len(c.Contacts))
	for i := range c.Contacts {
		v := &c.Contacts[i]
		out[i] = Event{
			Seq: c.Seq, AOR: c.AOR, RegistrationID: c.RegID, RegistrationState: string(c.State),
			ContactID: v.ID, Binding: BindingOf(v, c.At), Time: c.At.UTC(),
		}
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
