package feed

import (
	"encoding/json"
	"time"

	"github.com/regbridge/regbridge/bridge"
)

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
	URI               string `json:"uri"`
	// State is the contact's state (active or terminated) and Event the
	// RFC 3680 event that put it there (registered, created, refreshed,
	// shortened, expired, deactivated, probation, unregistered, rejected).
	State string `json:"state"`
	Event string `json:"event"`
	// Expires is the seconds left to an active contact's expiry, as
	// reginfo's expires attribute; absent for terminated or permanent
	// contacts. ExpiresAt is the same instant, absolute.
	Expires   *int64     `json:"expires,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// RetryAfter is probation's retry-after, in seconds.
	RetryAfter uint32 `json:"retry_after,omitempty"`
	CallID     string `json:"call_id,omitempty"`
	CSeq       uint32 `json:"cseq,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Time is when the bridge classified the change.
	Time time.Time `json:"time"`
}

// Events flattens a change into one Event per changed contact.
func Events(c *bridge.Change) []Event {
	out := make([]Event, len(c.Contacts))
	for i := range c.Contacts {
		v := &c.Contacts[i]
		e := Event{
			Seq: c.Seq, AOR: c.AOR, RegistrationID: c.RegID, RegistrationState: string(c.State),
			ContactID: v.ID, URI: v.URI, State: string(v.State), Event: string(v.Event),
			RetryAfter: v.RetryAfter, CallID: v.CallID, CSeq: v.CSeq, UserAgent: v.UserAgent,
			Time: c.At.UTC(),
		}
		if v.State == bridge.ContactActive && !v.Permanent() {
			left := max(int64(v.Expires.Sub(c.At).Round(time.Second)/time.Second), 0)
			at := v.Expires.UTC()
			e.Expires, e.ExpiresAt = &left, &at
		}
		out[i] = e
	}
	return out
}

// encode marshals each contact event of c on its own. The results are
// shared read-only by every queue they are put in.
func encode(c *bridge.Change) [][]byte {
	evs := Events(c)
	out := make([][]byte, 0, len(evs))
	for i := range evs {
		b, err := jsonLine(&evs[i])
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return out
}

// jsonLine marshals e. Event has only marshalable fields, so the error is
// theoretical; encoding/json escapes newlines inside strings, so the
// result is one line (SSE needs that).
func jsonLine(e *Event) ([]byte, error) { return json.Marshal(e) }
