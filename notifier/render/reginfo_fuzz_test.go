package render

// Allocation, benchmark and fuzz tests of the reginfo renderer.

import (
	"math"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

// TestAppendReginfoAllocs holds AppendReginfo to zero allocations once dst
// has grown to the document's size.
func TestAppendReginfoAllocs(t *testing.T) {
	for name, doc := range benchReginfoDocs() {
		t.Run(name, func(t *testing.T) {
			dst := AppendReginfo(nil, doc, renderNow)
			if n := testing.AllocsPerRun(100, func() { dst = AppendReginfo(dst[:0], doc, renderNow) }); n != 0 {
				t.Errorf("AppendReginfo: %v allocs/op, want 0", n)
			}
		})
	}
	t.Run("escaping clean text", func(t *testing.T) {
		dst := make([]byte, 0, 64)
		if n := testing.AllocsPerRun(100, func() { dst = appendAttr(dst[:0], "sip:joe@example.com") }); n != 0 {
			t.Errorf("appendAttr: %v allocs/op, want 0", n)
		}
	})
}

func benchReginfoDocs() map[string]Document {
	tenContacts := make([]bridge.ContactView, 10)
	for i := range tenContacts {
		tenContacts[i] = joePhone(func(c *bridge.ContactView) {
			c.ID = string(rune('a'+i)) + "3f9c2e71"
			c.URI = "sip:joe@192.0.2." + string(rune('0'+i)) + ":5060;transport=tcp"
			c.Q = 0.5
			if i%2 == 0 {
				c.Instance, c.RegID = testInstance, 1
			}
		})
	}
	return map[string]Document{
		"partial-1-contact": partialDoc(42, bridge.RegActive, joePhone(withEvent(bridge.EventRefreshed))),
		"full-10-contacts": {Version: 42, Full: true, Registrations: []bridge.Registration{
			{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: tenContacts},
		}},
	}
}

func BenchmarkAppendReginfo(b *testing.B) {
	docs := benchReginfoDocs()
	for _, name := range []string{"partial-1-contact", "full-10-contacts"} {
		doc := docs[name]
		b.Run(name, func(b *testing.B) {
			dst := AppendReginfo(nil, doc, renderNow)
			b.SetBytes(int64(len(dst)))
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendReginfo(dst[:0], doc, renderNow)
			}
		})
	}
}

// reginfoFuzzInput is one FuzzAppendReginfo input; the seeds also run
// through xmllint in TestReginfoFuzzSeedsValidate.
type reginfoFuzzInput struct {
	aor, regID, contactID, uri, userAgent, callID, instance string
	q                                                       float32
	cseq, regIDParam, retryAfter                            uint32
	expiresSec, sinceSec                                    int64
	sel                                                     uint8
}

var reginfoFuzzSeeds = []reginfoFuzzInput{
	{testAOR, "a7", "76", "sip:joe@pc34.example.com", "UA/1", "abc@h", testInstance, 0.5, 1, 1, 0, 3600, 20, 0},
	{testAOR, "a7", "76", "sip:joe@pc34.example.com", "", "", "", -1, 0, 0, 600, 0, 0, 6},
	{hostileAOR, hostileText, hostileText, hostileURI, hostileText, hostileText, hostileInstance, 0.3333, 7, 5, 9, 30, -5, 3 | 0x80},
	{"", "", "", "", "", "", "", 0, 0, 0, 0, -3600, 1 << 40, 8 | 0x40},
	{"sip:\u00e9@\u4f8b.jp", "\x00", "\xff", "sip:a&amp;b@h", "\r\n", "]]>", "<>", 1, math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxInt64, math.MinInt64, 0xff},
}

// fuzzEvents are the nine RFC 3680 events with the contact state each
// leaves the contact in.
var fuzzEvents = []struct {
	ev bridge.Event
	st bridge.ContactState
}{
	{bridge.EventRegistered, bridge.ContactActive},
	{bridge.EventCreated, bridge.ContactActive},
	{bridge.EventRefreshed, bridge.ContactActive},
	{bridge.EventShortened, bridge.ContactActive},
	{bridge.EventExpired, bridge.ContactTerminated},
	{bridge.EventDeactivated, bridge.ContactTerminated},
	{bridge.EventProbation, bridge.ContactTerminated},
	{bridge.EventUnregistered, bridge.ContactTerminated},
	{bridge.EventRejected, bridge.ContactTerminated},
}

// document builds the rendered document: the fuzzed contact plus a plain
// second one, in a full or partial document.
func (in reginfoFuzzInput) document() Document {
	e := fuzzEvents[int(in.sel&0x0f)%len(fuzzEvents)]
	regState := []bridge.RegState{bridge.RegInit, bridge.RegActive, bridge.RegTerminated}[int(in.sel>>4&0x3)%3]
	c := bridge.ContactView{
		Contact: source.Contact{
			AOR: in.aor, URI: in.uri, Q: in.q, CallID: in.callID, CSeq: in.cseq,
			UserAgent: in.userAgent, Instance: in.instance, RegID: in.regIDParam,
		},
		ID: in.contactID, State: e.st, Event: e.ev, RetryAfter: in.retryAfter,
	}
	// Offsets are reduced to about ±34 years so that time.Duration does
	// not overflow; 0 means permanent / unknown start.
	if in.expiresSec != 0 {
		c.Expires = renderNow.Add(time.Duration(in.expiresSec%(1<<30)) * time.Second)
	}
	if in.sinceSec != 0 {
		c.Since = renderNow.Add(-time.Duration(in.sinceSec%(1<<30)) * time.Second)
	}
	other := joePhone(func(o *bridge.ContactView) { o.AOR, o.ID = in.aor, "other" })
	return Document{
		Version: uint32(in.cseq),
		Full:    in.sel&0x80 != 0,
		// 0x40: a watcher that gets basic events (compat.go).
		BasicEvents: in.sel&0x40 != 0,
		Registrations: []bridge.Registration{
			{AOR: in.aor, ID: in.regID, State: regState, Contacts: []bridge.ContactView{c, other}},
		},
	}
}

func FuzzAppendReginfo(f *testing.F) {
	for _, s := range reginfoFuzzSeeds {
		f.Add(s.aor, s.regID, s.contactID, s.uri, s.userAgent, s.callID, s.instance,
			s.q, s.cseq, s.regIDParam, s.retryAfter, s.expiresSec, s.sinceSec, s.sel)
	}
	f.Fuzz(func(t *testing.T, aor, regID, contactID, uri, userAgent, callID, instance string,
		q float32, cseq, regIDParam, retryAfter uint32, expiresSec, sinceSec int64, sel uint8) {
		in := reginfoFuzzInput{aor, regID, contactID, uri, userAgent, callID, instance,
			q, cseq, regIDParam, retryAfter, expiresSec, sinceSec, sel}
		doc := in.document()
		got := AppendReginfo(nil, doc, renderNow)
		checkWellFormed(t, got)
		checkReginfoRules(t, doc, got)
	})
}

// TestReginfoFuzzSeedsValidate runs the fuzz seeds through xmllint, which
// is too slow for the fuzz loop itself.
func TestReginfoFuzzSeedsValidate(t *testing.T) {
	for i, s := range reginfoFuzzSeeds {
		doc := AppendReginfo(nil, s.document(), renderNow)
		checkWellFormed(t, doc)
		if t.Failed() {
			t.Fatalf("seed %d", i)
		}
		validateXML(t, schemaReginfo, doc)
	}
}
