package notifier

import (
	"strconv"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// wantContact is one contact a partial document must hold.
type wantContact struct {
	uri, state, event string
	expires           [2]int // inclusive range of the expires attribute; {-1,-1}: absent
	retryAfter        string // "" : absent
}

var noExpires = [2]int{-1, -1}

// ended is the expires range of a terminated contact: expires="0", so that
// subscribers that act on expires (Kamailio's pua_reginfo) drop it.
var ended = [2]int{0, 0}

// TestContactEvents drives every RFC 3680 contact event through the bridge
// and checks the partial document each one produces, end to end over UDP,
// every document validated with xmllint (RFC 3680 5.3, 5.4).
func TestContactEvents(t *testing.T) {
	hour := [2]int{3590, 3600}
	other := tAlice
	other.Key, other.URI, other.CallID = "uloc-2", "sip:alice@192.0.2.11:5060", "c2"
	type step struct {
		do       func(t *testing.T, h *harness, aliceID string)
		regState string
		contacts []wantContact
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"registered (E.28)", []step{{
			do:       func(t *testing.T, h *harness, _ string) { apply(t, h, fresh(other)) },
			regState: "active",
			contacts: []wantContact{{other.URI, "active", "registered", hour, ""}},
		}}},
		{"created by an operator (E.29)", []step{{
			do: func(t *testing.T, h *harness, _ string) {
				c := fresh(other)
				c.Administrative = true
				apply(t, h, c)
			},
			regState: "active",
			contacts: []wantContact{{other.URI, "active", "created", hour, ""}},
		}}},
		{"refreshed (E.30)", []step{{
			do: func(t *testing.T, h *harness, _ string) {
				c := tAlice
				c.CSeq, c.Expires = 2, time.Now().Add(2*time.Hour)
				apply(t, h, c)
			},
			regState: "active",
			contacts: []wantContact{{tAlice.URI, "active", "refreshed", [2]int{7190, 7200}, ""}},
		}}},
		{"shortened, then expired (E.31, E.32)", []step{{
			do: func(t *testing.T, h *harness, _ string) {
				c := tAlice
				c.Expires = time.Now().Add(2 * time.Second)
				apply(t, h, c)
			},
			regState: "active",
			contacts: []wantContact{{tAlice.URI, "active", "shortened", [2]int{0, 2}, ""}},
		}, {
			do:       func(*testing.T, *harness, string) {}, // the bridge's clock
			regState: "terminated",
			contacts: []wantContact{{tAlice.URI, "terminated", "expired", ended, ""}},
		}}},
		{"unregistered, last contact (E.33)", []step{{
			do: func(t *testing.T, h *harness, _ string) {
				h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
			},
			regState: "terminated",
			contacts: []wantContact{{tAlice.URI, "terminated", "unregistered", ended, ""}},
		}}},
		{"deactivated (E.34)", []step{{
			do:       func(t *testing.T, h *harness, id string) { act(t, h, id, bridge.EventDeactivated, 0) },
			regState: "terminated",
			contacts: []wantContact{{tAlice.URI, "terminated", "deactivated", ended, ""}},
		}}},
		{"probation (E.34)", []step{{
			do:       func(t *testing.T, h *harness, id string) { act(t, h, id, bridge.EventProbation, 120) },
			regState: "terminated",
			contacts: []wantContact{{tAlice.URI, "terminated", "probation", ended, "120"}},
		}}},
		{"rejected (E.34)", []step{{
			do:       func(t *testing.T, h *harness, id string) { act(t, h, id, bridge.EventRejected, 0) },
			regState: "terminated",
			contacts: []wantContact{{tAlice.URI, "terminated", "rejected", ended, ""}},
		}}},
		{"registered again after terminated (E.35)", []step{{
			do: func(t *testing.T, h *harness, _ string) {
				h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
			},
			regState: "terminated",
			contacts: []wantContact{{tAlice.URI, "terminated", "unregistered", ended, ""}},
		}, {
			do:       func(t *testing.T, h *harness, _ string) { apply(t, h, fresh(other)) },
			regState: "active",
			contacts: []wantContact{{other.URI, "active", "registered", hour, ""}},
		}}},
		{"URI changed in place", []step{{
			do: func(t *testing.T, h *harness, _ string) {
				c := fresh(tAlice)
				c.URI, c.CSeq = "sip:alice@192.0.2.99:5060", 2
				apply(t, h, c)
			},
			regState: "active",
			contacts: []wantContact{
				{tAlice.URI, "terminated", "deactivated", ended, ""},
				{"sip:alice@192.0.2.99:5060", "active", "registered", hour, ""},
			},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
			n0 := next(t, p)
			p.Check(n0, 0, "full", "active")
			aliceID := n0.Doc.Registrations[0].Contacts[0].ID
			regID := n0.Doc.Registrations[0].ID
			for i, st := range tt.steps {
				st.do(t, h, aliceID)
				n := next(t, p)
				p.Check(n, uint32(i+1), "partial", "active")
				if len(n.Doc.Registrations) != 1 {
					t.Fatalf("step %d: %d registrations:\n%s", i, len(n.Doc.Registrations), n.Req.Body())
				}
				r := n.Doc.Registrations[0]
				if r.ID != regID || r.State != st.regState {
					t.Errorf("step %d: registration id=%s state=%s, want id=%s (E.37) state=%s", i, r.ID, r.State, regID, st.regState)
				}
				checkContacts(t, r.Contacts, st.contacts)
				for _, c := range r.Contacts {
					if c.URI == tAlice.URI && c.ID != aliceID {
						t.Errorf("contact id of %s changed from %s to %s (E.38)", c.URI, aliceID, c.ID)
					}
				}
			}
			// Nothing else: in particular no NOTIFY for terminated -> init.
			p.None(200 * time.Millisecond)
		})
	}
}

// fresh returns c expiring an hour from now.
func fresh(c source.Contact) source.Contact {
	c.Expires = time.Now().Add(time.Hour)
	return c
}

func apply(t *testing.T, h *harness, cs ...source.Contact) {
	t.Helper()
	if err := h.br.Apply(t.Context(), source.Batch{Contacts: cs}); err != nil {
		t.Fatal(err)
	}
}

func act(t *testing.T, h *harness, id string, ev bridge.Event, retryAfter uint32) {
	t.Helper()
	if _, err := h.br.Act(tAlice.AOR, id, ev, retryAfter); err != nil {
		t.Fatal(err)
	}
}

func checkContacts(t *testing.T, got []siptest.Contact, want []wantContact) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d contacts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		c := got[i]
		if c.URI != w.uri || c.State != w.state || c.Event != w.event {
			t.Errorf("contact %d: %s %s %s, want %s %s %s", i, c.URI, c.State, c.Event, w.uri, w.state, w.event)
		}
		if w.expires == noExpires {
			if c.Expires != "" {
				t.Errorf("contact %d (%s): expires=%q, want none", i, w.event, c.Expires)
			}
		} else if e, err := strconv.Atoi(c.Expires); err != nil || e < w.expires[0] || e > w.expires[1] {
			t.Errorf("contact %d (%s): expires=%q, want %d..%d", i, w.event, c.Expires, w.expires[0], w.expires[1])
		}
		if c.RetryAfter != w.retryAfter {
			t.Errorf("contact %d (%s): retry-after=%q, want %q", i, w.event, c.RetryAfter, w.retryAfter)
		}
	}
}

// TestCanonicalAOR: a SUBSCRIBE for an AOR that equals a stored one after
// RFC 3261 10.3 canonicalization (host case, URI parameters) gets that
// registration, under the same id (RFC 3680 5.1); sips: names the same
// AOR as sip: (RFC 5630).
func TestCanonicalAOR(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	for _, aor := range []string{"sip:alice@EXAMPLE.com", "sip:alice@example.com;transport=udp", "sips:alice@example.com"} {
		t.Run(aor, func(t *testing.T) {
			p := siptest.New(t, "udp", h.addr("udp"))
			p.Subscribe(aor, siptest.Header("Event", "reg"))
			n := next(t, p)
			p.Check(n, 0, "full", "active")
			r := n.Doc.Registrations
			if len(r) != 1 || r[0].ID != bridge.RegistrationID(tAlice.AOR) || len(r[0].Contacts) != 1 || r[0].Contacts[0].URI != tAlice.URI {
				t.Fatalf("registration of %s:\n%s", aor, n.Req.Body())
			}
		})
	}
}

// TestGRUUEndToEnd: contacts with a +sip.instance carry <gr:pub-gruu>
// built from it, identical for contacts sharing the instance; a contact
// without one carries none; every document validates against reginfo.xsd
// with gruuinfo.xsd (RFC 5628). temp-gruu is
// never sent (docs/sip.md#gruu).
func TestGRUUEndToEnd(t *testing.T) {
	const instance = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"
	const gruu = "sip:alice@example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
	phone := tAlice
	phone.Instance, phone.RegID = instance, 1
	phone2 := phone
	phone2.Key, phone2.URI, phone2.CallID, phone2.RegID = "uloc-2", "sip:alice@192.0.2.12:5060;transport=tcp", "c2", 2
	plain := tAlice
	plain.Key, plain.URI, plain.CallID = "uloc-3", "sip:alice@192.0.2.13", "c3"

	h := newHarness(t, Config{}, phone)
	p := siptest.New(t, "tcp", h.addr("tcp"))
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	full := next(t, p) // validated with the combined schema by next
	p.Check(full, 0, "full", "active")
	apply(t, h, phone2, plain)
	partial := next(t, p)
	p.Check(partial, 1, "partial", "active")

	contacts := append(full.Doc.Registrations[0].Contacts, partial.Doc.Registrations[0].Contacts...)
	if len(contacts) != 3 {
		t.Fatalf("%d contacts, want 3", len(contacts))
	}
	for _, c := range contacts {
		if c.TempGRUU != nil {
			t.Errorf("%s: temp-gruu sent", c.URI)
		}
		if c.URI == plain.URI {
			if c.PubGRUU != nil || len(c.Params) != 0 {
				t.Errorf("%s has no instance, yet pub-gruu %+v params %+v", c.URI, c.PubGRUU, c.Params)
			}
			continue
		}
		if c.PubGRUU == nil || c.PubGRUU.URI != gruu {
			t.Errorf("%s: pub-gruu %+v, want %s", c.URI, c.PubGRUU, gruu)
		}
		if len(c.Params) < 1 || c.Params[0].Name != "+sip.instance" || c.Params[0].Value != `"`+instance+`"` {
			t.Errorf("%s: unknown-params %+v", c.URI, c.Params)
		}
	}
}
