package notifier

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/render"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// checkPIDF checks a presence NOTIFY's document (RFC 3863, RFC 3856 6.8:
// always a complete document) and returns its timestamp.
func checkPIDF(t *testing.T, n siptest.Notify, entity, basic string, tuples int) time.Time {
	t.Helper()
	d := n.PIDF
	if d.Entity != entity || len(d.Tuples) != tuples {
		t.Fatalf("presence entity=%q with %d tuples, want %q with %d:\n%s", d.Entity, len(d.Tuples), entity, tuples, n.Req.Body())
	}
	var ts time.Time
	for _, tu := range d.Tuples {
		if tu.Basic != basic {
			t.Errorf("tuple %s basic %q, want %q", tu.ID, tu.Basic, basic)
		}
		if tu.ID == "" || !isNameStart(tu.ID[0]) {
			t.Errorf("tuple id %q is not an NCName (E.60)", tu.ID)
		}
		var err error
		if ts, err = time.Parse(time.RFC3339Nano, tu.Timestamp); err != nil {
			t.Errorf("tuple %s timestamp %q: %v", tu.ID, tu.Timestamp, err)
		}
	}
	return ts
}

func isNameStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// TestPresence: Event: presence without Accept gets PIDF documents from the
// same subscription machinery (RFC 3680 3.2, RFC 3856): open while the AOR
// has an active contact, closed when it has none, a complete document each
// time with strictly increasing timestamps; refreshes of a binding, which
// change nothing a watcher sees, send nothing (docs/sip.md#presence). Every
// document validates against pidf.xsd.
func TestPresence(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			h := newHarness(t, Config{Presence: true}, tAlice)
			p := siptest.New(t, network, h.addr(network))
			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "presence"))
			if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "3600" {
				t.Fatalf("SUBSCRIBE: %s", res)
			}
			n := next(t, p)
			p.CheckPresence(n, "active;expires=")
			last := checkPIDF(t, n, "sip:alice@example.com", "open", 1)

			// A refresh of the binding: nothing changes for a watcher.
			c := fresh(tAlice)
			c.CSeq = 2
			apply(t, h, c)
			p.None(200 * time.Millisecond)

			steps := []struct {
				name   string
				do     func()
				basic  string
				tuples int
			}{
				{"second contact", func() {
					c2 := fresh(tAlice)
					c2.Key, c2.URI, c2.CallID = "uloc-2", "sip:alice@192.0.2.11", "c2"
					apply(t, h, c, c2)
				}, "open", 2},
				{"first leaves", func() { h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}}) }, "open", 1},
				{"last leaves", func() { h.br.Apply(t.Context(), source.Batch{Deleted: []string{"uloc-2"}}) }, "closed", 1},
				{"back", func() { apply(t, h, fresh(tAlice)) }, "open", 1},
			}
			for _, st := range steps {
				st.do()
				n := next(t, p)
				p.CheckPresence(n, "active;expires=")
				ts := checkPIDF(t, n, "sip:alice@example.com", st.basic, st.tuples)
				if !ts.After(last) {
					t.Errorf("%s: timestamp %v not after %v (RFC 3863 4.1.7)", st.name, ts, last)
				}
				last = ts
			}

			res = p.Subscribe("sip:alice@example.com", siptest.Header("Event", "presence"), siptest.Header("Expires", "0"))
			if res.StatusCode != 200 {
				t.Fatalf("unsubscribe: %d", res.StatusCode)
			}
			n = next(t, p)
			p.CheckPresence(n, "terminated;reason=timeout")
			checkPIDF(t, n, "sip:alice@example.com", "open", 1)
			p.None(100 * time.Millisecond)
		})
	}
}

// TestPresenceClosed: an AOR without contacts is closed, and opens with
// its first contact (RFC 3856 6.8); the refresh NOTIFY is full state.
func TestPresenceClosed(t *testing.T) {
	h := newHarness(t, Config{Presence: true})
	p := siptest.New(t, "udp", h.addr("udp"))
	p.Subscribe("sip:bob@example.com", siptest.Header("Event", "presence"), siptest.Header("Accept", "application/pidf+xml"))
	n := next(t, p)
	p.CheckPresence(n, "active")
	checkPIDF(t, n, "sip:bob@example.com", "closed", 1)
	bob := fresh(tAlice)
	bob.AOR, bob.URI, bob.Key = "sip:bob@example.com", "sip:bob@192.0.2.30", "uloc-bob"
	apply(t, h, bob)
	n = next(t, p)
	checkPIDF(t, n, "sip:bob@example.com", "open", 1)
	p.Subscribe("sip:bob@example.com", siptest.Header("Event", "presence"), siptest.Header("Expires", "600"))
	n = next(t, p)
	p.CheckPresence(n, "active;expires=")
	checkPIDF(t, n, "sip:bob@example.com", "open", 1)
}

// TestPackageNegotiation: which Event and Accept combinations are served
// (RFC 6665 4.2.1.1, RFC 3680 4.5, RFC 3856 6.5).
func TestPackageNegotiation(t *testing.T) {
	on := newHarness(t, Config{Presence: true}, tAlice)
	off := newHarness(t, Config{}, tAlice)
	tests := []struct {
		name        string
		h           *harness
		event       string
		accept      string
		code        int
		header      string
		value       string
		contentType string
	}{
		{"presence disabled (E.6)", off, "presence", "", 489, "Allow-Events", "reg", ""},
		{"unknown package names both", on, "dialog", "", 489, "Allow-Events", "reg, presence", ""},
		{"presence without Accept (E.57)", on, "presence", "", 200, "", "", render.ContentTypePIDF},
		{"presence with reginfo only (E.58)", on, "presence", "application/reginfo+xml", 406, "Accept", render.ContentTypePIDF, ""},
		{"presence with pidf at q=0", on, "presence", "application/pidf+xml;q=0, application/reginfo+xml", 406, "Accept", render.ContentTypePIDF, ""},
		{"presence with a range", on, "presence", "application/*", 200, "", "", render.ContentTypePIDF},
		{"reg with pidf only (E.9)", on, "reg", "application/pidf+xml", 406, "Accept", render.ContentTypeReginfo, ""},
		{"reg with several types (E.10)", on, "reg", "application/xml, application/reginfo+xml", 200, "", "", render.ContentTypeReginfo},
		{"reg with reginfo at q=0", on, "reg", "application/reginfo+xml;q=0", 406, "Accept", render.ContentTypeReginfo, ""},
		{"reg with */*", on, "reg", "*/*", 200, "", "", render.ContentTypeReginfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := siptest.New(t, "udp", tt.h.addr("udp"))
			hdrs := []sip.Header{siptest.Header("Event", tt.event)}
			if tt.accept != "" {
				hdrs = append(hdrs, siptest.Header("Accept", tt.accept))
			}
			res := p.Subscribe("sip:alice@example.com", hdrs...)
			if res.StatusCode != tt.code {
				t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if tt.header != "" {
				if got := res.GetHeader(tt.header); got == nil || got.Value() != tt.value {
					t.Fatalf("%s = %v, want %q", tt.header, got, tt.value)
				}
			}
			if tt.code != 200 {
				p.None(100 * time.Millisecond)
				return
			}
			n := next(t, p)
			if ct := n.Req.ContentType(); ct == nil || ct.Value() != tt.contentType {
				t.Fatalf("NOTIFY Content-Type %v, want %s", ct, tt.contentType)
			}
			if ev := n.Req.GetHeader("Event").Value(); !strings.HasPrefix(ev, tt.event) {
				t.Errorf("NOTIFY Event %q, want %s", ev, tt.event)
			}
		})
	}
}
