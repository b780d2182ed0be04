package bridge

import (
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// TestWrittenAndSocket: a change says whether the registrar wrote the
// binding in that step (new, or last_modified moved), and the binding
// keeps the store's socket for readers.
func TestWrittenAndSocket(t *testing.T) {
	b, r := newTestBridge(t)
	b.apply(source.Batch{Full: true}, t0)
	c := contact("k1", "alice", "sip:a@192.0.2.1", t0.Add(time.Hour), "c1", 1)
	c.Modified, c.Socket = t0, "udp:192.0.2.254:5060"
	steps := []struct {
		name    string
		change  func(*source.Contact)
		event   Event
		written bool
	}{
		{"new binding", func(*source.Contact) {}, EventRegistered, true},
		{"expiry extended by a tool", func(c *source.Contact) { c.Expires = c.Expires.Add(time.Minute) }, EventRefreshed, false},
		{"REGISTER refresh", func(c *source.Contact) { c.CSeq, c.Modified = 2, t0.Add(time.Minute) }, EventRefreshed, true},
		{"shortened by a tool", func(c *source.Contact) { c.Expires = t0.Add(30 * time.Minute) }, EventShortened, false},
	}
	for _, st := range steps {
		st.change(&c)
		b.apply(source.Batch{Contacts: []source.Contact{c}}, t0)
		got := r.take()
		if len(got) != 1 || len(got[0].Contacts) != 1 {
			t.Fatalf("%s: changes %+v", st.name, got)
		}
		if v := got[0].Contacts[0]; v.Event != st.event || v.Written != st.written {
			t.Errorf("%s: event %s written %v, want %s %v", st.name, v.Event, v.Written, st.event, st.written)
		}
	}
	reg, _ := b.Lookup("sip:alice@example.com")
	if len(reg.Contacts) != 1 || reg.Contacts[0].Socket != "udp:192.0.2.254:5060" {
		t.Errorf("Lookup: %+v, want the socket kept", reg.Contacts)
	}
	c.Socket = "tcp:192.0.2.254:5060"
	b.apply(source.Batch{Contacts: []source.Contact{c}}, t0)
	if reg, _ := b.Lookup("sip:alice@example.com"); reg.Contacts[0].Socket != c.Socket {
		t.Errorf("socket change not taken: %q", reg.Contacts[0].Socket)
	}
}
