package render

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
)

var (
	// ncName is an NCName restricted to ASCII, which is all AppendPIDF
	// writes into tuple ids.
	ncName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9._-]*$`)
	// rfc3339UTC is RFC 3339 in UTC with uppercase T and Z and no
	// superfluous fraction digits (RFC 3863 4.1.7).
	rfc3339UTC = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]*[1-9])?Z$`)
)

var pidfTS = time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)

func pidfCases() []struct {
	name string
	reg  bridge.Registration
	ts   time.Time
} {
	return []struct {
		name string
		reg  bridge.Registration
		ts   time.Time
	}{
		{"pidf-open", bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{
			joePhone(func(c *bridge.ContactView) { c.Q = 0.8 }),
			// q out of the PIDF range: no priority (RFC 3863 4.1.5).
			joePhone(func(c *bridge.ContactView) { c.ID, c.URI, c.Q = "b3:x_y/z", "sip:joe@192.0.2.7;transport=tcp", 1.5 }),
			joePhone(func(c *bridge.ContactView) { c.ID, c.URI, c.Q = "9", "sips:joe@pc36.example.com", 1 }),
		}}, pidfTS},
		{"pidf-closed", bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegInit}, pidfTS.Add(5 * time.Minute)},
		{"pidf-closed-terminated-only", bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegTerminated, Contacts: []bridge.ContactView{
			joePhone(withTerminated(bridge.EventExpired)),
		}}, pidfTS},
		{"pidf-fractional-timestamp", bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{
			joePhone(),
		}}, time.Date(2024, 1, 1, 11, 30, 0, 120_000_000, time.FixedZone("CET", 3600))},
		{"pidf-hostile", bridge.Registration{AOR: hostileAOR, ID: hostileText, State: bridge.RegActive, Contacts: []bridge.ContactView{
			joePhone(func(c *bridge.ContactView) {
				c.ID, c.URI, c.Q, c.UserAgent = hostileText, hostileURI, 0.3333, hostileText
			}),
		}}, pidfTS},
		{"pidf-hostile-closed", bridge.Registration{AOR: hostileAOR, ID: hostileText, State: bridge.RegInit}, pidfTS},
	}
}

func TestAppendPIDFGolden(t *testing.T) {
	for _, tt := range pidfCases() {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendPIDF(nil, tt.reg, tt.ts)
			checkWellFormed(t, got)
			checkPIDFRules(t, tt.reg, tt.ts, got)
			checkGolden(t, tt.name, got)
			validateXML(t, schemaPIDF, got)
		})
	}
}

func TestAppendPIDFDetails(t *testing.T) {
	open := bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{joePhone()}}
	tests := []struct {
		name string
		reg  bridge.Registration
		ts   time.Time
		want []string
	}{
		{"open with active contact", open, pidfTS, []string{
			`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:joe@example.com">`,
			`<tuple id="c76">`, `<basic>open</basic>`, `<contact>sip:joe@pc34.example.com</contact>`,
			`<timestamp>2024-01-01T10:00:00Z</timestamp>`,
		}},
		{"closed without contacts", bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegInit}, pidfTS, []string{
			`<tuple id="reg">`, `<basic>closed</basic>`, `<contact>sip:joe@example.com</contact>`,
		}},
		{"id starting with a digit", open, pidfTS, []string{`<tuple id="c76">`}},
		{"id with non-NCName characters", bridge.Registration{AOR: testAOR, Contacts: []bridge.ContactView{
			joePhone(func(c *bridge.ContactView) { c.ID = "1:a_b c\u00e9" }),
		}}, pidfTS, []string{`<tuple id="c1_3Aa_5Fb_20c_C3_A9">`}},
		{"timestamp in UTC", open, time.Date(2024, 6, 1, 2, 3, 4, 500_000_000, time.FixedZone("", -7*3600)), []string{
			`<timestamp>2024-06-01T09:03:04.5Z</timestamp>`,
		}},
		{"priority from q", bridge.Registration{AOR: testAOR, Contacts: []bridge.ContactView{
			joePhone(func(c *bridge.ContactView) { c.Q = 0.125 }),
			joePhone(func(c *bridge.ContactView) { c.ID, c.Q = "2", 0 }),
			joePhone(func(c *bridge.ContactView) { c.ID, c.Q = "3", 1 }),
		}}, pidfTS, []string{`<contact priority="0.125">`, `<contact priority="0">`, `<contact priority="1">`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendPIDF(nil, tt.reg, tt.ts)
			checkWellFormed(t, got)
			checkPIDFRules(t, tt.reg, tt.ts, got)
			for _, w := range tt.want {
				if !bytes.Contains(got, []byte(w)) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			validateXML(t, schemaPIDF, got)
		})
	}
}

// TestAppendPIDFTimestampsIncrease: successive changes give distinct,
// increasing timestamps (RFC 3863 4.1.7, vector 60) as long as the caller's
// times increase, even within one second.
func TestAppendPIDFTimestampsIncrease(t *testing.T) {
	reg := bridge.Registration{AOR: testAOR, Contacts: []bridge.ContactView{joePhone()}}
	var prev time.Time
	for i, ts := range []time.Time{pidfTS, pidfTS.Add(time.Millisecond), pidfTS.Add(999 * time.Millisecond), pidfTS.Add(time.Second)} {
		var p xPresence
		if err := xml.Unmarshal(AppendPIDF(nil, reg, ts), &p); err != nil {
			t.Fatal(err)
		}
		got, err := time.Parse(time.RFC3339Nano, p.Tuples[0].Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !got.After(prev) {
			t.Errorf("timestamp %s not after %s", got, prev)
		}
		prev = got
	}
}

func BenchmarkAppendPIDF(b *testing.B) {
	reg := bridge.Registration{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{
		joePhone(func(c *bridge.ContactView) { c.Q = 0.8 }),
		joePhone(func(c *bridge.ContactView) { c.ID, c.URI = "77", "sip:joe@192.0.2.7;transport=tcp" }),
	}}
	dst := AppendPIDF(nil, reg, pidfTS)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendPIDF(dst[:0], reg, pidfTS)
	}
}

type pidfFuzzInput struct {
	aor, id1, id2, uri string
	q                  float32
	tsNanos            int64
	active             bool
}

var pidfFuzzSeeds = []pidfFuzzInput{
	{testAOR, "76", "77", "sip:joe@pc34.example.com", 0.8, pidfTS.UnixNano(), true},
	{testAOR, "", "", "", -1, 0, false},
	{hostileAOR, hostileText, hostileText + "x", hostileURI, 0.3333, pidfTS.UnixNano() + 1, true},
	{"sip:\u00e9@\u4f8b.jp", "_", "_5F", "sip:a&b@h", 1.0001, -1, true},
	{"", "1", "\xff", "\r\n", 2, 1 << 62, false},
}

func (in pidfFuzzInput) registration() bridge.Registration {
	reg := bridge.Registration{AOR: in.aor, ID: "r", State: bridge.RegInit}
	if in.active {
		reg.State = bridge.RegActive
		reg.Contacts = []bridge.ContactView{
			joePhone(func(c *bridge.ContactView) { c.AOR, c.ID, c.URI, c.Q = in.aor, in.id1, in.uri, in.q }),
			joePhone(func(c *bridge.ContactView) { c.AOR, c.ID = in.aor, in.id2 }),
		}
	}
	return reg
}

func FuzzAppendPIDF(f *testing.F) {
	for _, s := range pidfFuzzSeeds {
		f.Add(s.aor, s.id1, s.id2, s.uri, s.q, s.tsNanos, s.active)
	}
	f.Fuzz(func(t *testing.T, aor, id1, id2, uri string, q float32, tsNanos int64, active bool) {
		in := pidfFuzzInput{aor, id1, id2, uri, q, tsNanos, active}
		reg := in.registration()
		ts := time.Unix(0, tsNanos)
		got := AppendPIDF(nil, reg, ts)
		checkWellFormed(t, got)
		checkPIDFRules(t, reg, ts, got)
	})
}

func TestPIDFFuzzSeedsValidate(t *testing.T) {
	for i, s := range pidfFuzzSeeds {
		reg := s.registration()
		if len(reg.Contacts) == 2 && reg.Contacts[0].ID == reg.Contacts[1].ID {
			t.Fatalf("seed %d: equal contact ids give equal tuple ids, which xs:ID forbids", i)
		}
		doc := AppendPIDF(nil, reg, time.Unix(0, s.tsNanos))
		checkWellFormed(t, doc)
		validateXML(t, schemaPIDF, doc)
	}
}

type xPresence struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:pidf presence"`
	Entity  string   `xml:"entity,attr"`
	Tuples  []struct {
		ID      string `xml:"id,attr"`
		Basic   string `xml:"status>basic"`
		Contact struct {
			Priority *string `xml:"priority,attr"`
			URI      string  `xml:",chardata"`
		} `xml:"contact"`
		Timestamp string `xml:"timestamp"`
	} `xml:"urn:ietf:params:xml:ns:pidf tuple"`
}

// checkPIDFRules decodes got and checks it against reg and ts: entity and
// contacts read back as given (after U+FFFD replacement), one open tuple
// per active contact or one closed tuple, NCName tuple ids that are
// distinct when the contact ids are, strict UTC timestamps equal to ts.
func checkPIDFRules(t *testing.T, reg bridge.Registration, ts time.Time, got []byte) {
	t.Helper()
	var p xPresence
	if err := xml.Unmarshal(got, &p); err != nil {
		t.Fatalf("decoding: %v\n%s", err, got)
	}
	if p.Entity != xmlSafe(reg.AOR) {
		t.Errorf("entity %q, want %q", p.Entity, xmlSafe(reg.AOR))
	}
	var active []bridge.ContactView
	for _, c := range reg.Contacts {
		if c.State != bridge.ContactTerminated {
			active = append(active, c)
		}
	}
	type want struct{ basic, uri, ids string }
	var wants []want
	for _, c := range active {
		wants = append(wants, want{"open", xmlSafe(c.URI), c.ID})
	}
	if len(active) == 0 {
		wants = append(wants, want{"closed", xmlSafe(reg.AOR), ""})
	}
	if len(p.Tuples) != len(wants) {
		t.Fatalf("%d tuples, want %d\n%s", len(p.Tuples), len(wants), got)
	}
	seen := map[string]string{} // tuple id -> contact id
	for i, tu := range p.Tuples {
		w := wants[i]
		if tu.Basic != w.basic || tu.Contact.URI != w.uri {
			t.Errorf("tuple %d: basic %q contact %q, want %q %q", i, tu.Basic, tu.Contact.URI, w.basic, w.uri)
		}
		if !ncName.MatchString(tu.ID) {
			t.Errorf("tuple %d: id %q is not an NCName", i, tu.ID)
		}
		if prev, dup := seen[tu.ID]; dup && prev != w.ids {
			t.Errorf("contact ids %q and %q share tuple id %q", prev, w.ids, tu.ID)
		}
		seen[tu.ID] = w.ids
		if !rfc3339UTC.MatchString(tu.Timestamp) {
			t.Errorf("tuple %d: timestamp %q is not strict RFC 3339 UTC", i, tu.Timestamp)
		} else if parsed, err := time.Parse(time.RFC3339Nano, tu.Timestamp); err != nil || !parsed.Equal(ts) {
			t.Errorf("tuple %d: timestamp %q (%v), want %v", i, tu.Timestamp, err, ts)
		}
		if w.basic == "open" {
			q := active[i].Q
			if wantPrio := validQ(q) && q <= 1; (tu.Contact.Priority != nil) != wantPrio {
				t.Errorf("tuple %d: priority present %v for q %v", i, tu.Contact.Priority != nil, q)
			}
		}
	}
}
