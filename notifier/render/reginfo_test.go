package render

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

var update = flag.Bool("update", false, "rewrite golden files")

const goldenDir = "../../testdata/reginfo"

// renderNow is the fixed "now" of the rendering tests.
var renderNow = time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)

const testAOR = "sip:joe@example.com"

// joePhone returns a typical active contact of testAOR, changed by mods.
func joePhone(mods ...func(*bridge.ContactView)) bridge.ContactView {
	c := bridge.ContactView{
		Contact: source.Contact{
			Key:       "ruid-76",
			AOR:       testAOR,
			URI:       "sip:joe@pc34.example.com",
			Expires:   renderNow.Add(3580*time.Second + 700*time.Millisecond),
			Q:         -1,
			CallID:    "88askjda9@pc34.example.com",
			CSeq:      9977,
			UserAgent: "PolyPhone/1.0",
		},
		ID:    "76",
		State: bridge.ContactActive,
		Event: bridge.EventRegistered,
		Since: renderNow.Add(-20 * time.Second),
	}
	for _, m := range mods {
		m(&c)
	}
	return c
}

func withTerminated(ev bridge.Event) func(*bridge.ContactView) {
	return func(c *bridge.ContactView) { c.State, c.Event = bridge.ContactTerminated, ev }
}

func withEvent(ev bridge.Event) func(*bridge.ContactView) {
	return func(c *bridge.ContactView) { c.Event = ev }
}

func partialDoc(version uint32, state bridge.RegState, contacts ...bridge.ContactView) Document {
	return Document{Version: version, Registrations: []bridge.Registration{
		{AOR: testAOR, ID: "a7", State: state, Contacts: contacts},
	}}
}

// The instance ID of RFC 5628 section 7.
const testInstance = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"

// Hostile store values: markup, quotes, "]]>", C0 controls, CR/LF/tab,
// invalid UTF-8 (a stray continuation byte, a truncated sequence, an
// encoded surrogate), U+FFFE/U+FFFF and non-ASCII. URI-typed values
// (xs:anyURI) stay parseable as URIs once xmllint has replaced the
// characters it ignores, so that the documents still validate; the others
// hold everything. (libxml2 checks xs:anyURI against RFC 3986, which also
// rejects real SIP URIs with an IPv6 literal such as sip:a@[2001:db8::1],
// or a '%' not followed by two hex digits; the renderer copies URIs as
// they are, so such documents are well-formed but fail xmllint.)
const (
	hostileAOR      = "sip:o'brien&<co>\"x\"@ex\u00e4mple.com"
	hostileURI      = "sip:\"evil\"<tag>&x='y'@h\u00f6st\x01\x7f\r\n\t\xff\xed\xa0\x80\uFFFE\U0001F600.example.com;transport=tcp"
	hostileText     = "a<b>&c\"d'e]]>f\x00g\x1bh\ti\nj\rk\r\nl\x80m\xc3n\xe2\x82o\xed\xa0\x80p\uFFFFq\u00e9r\U0001F600"
	hostileInstance = "<urn:uuid:]]>&\"'\x02\xc3\x28[x]%;gr=1 \u00e9>"
)

func reginfoCases() []struct {
	name string
	doc  Document
} {
	return []struct {
		name string
		doc  Document
	}{
		{"full-init", Document{Version: 0, Full: true, Registrations: []bridge.Registration{
			{AOR: testAOR, ID: "a7", State: bridge.RegInit},
		}}},
		{"full-empty", Document{Version: 3, Full: true}},
		{"full-several-contacts", Document{Version: 5, Full: true, Registrations: []bridge.Registration{
			{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{
				joePhone(func(c *bridge.ContactView) { c.Q = 0.5 }),
				// Permanent binding, start unknown: neither expires nor
				// duration-registered; q exactly 1.
				joePhone(func(c *bridge.ContactView) {
					c.ID, c.URI, c.Key = "77", "sip:joe@192.0.2.7:5060;transport=tcp", "ruid-77"
					c.Expires, c.Since, c.Q = time.Time{}, time.Time{}, 1
					c.Event = bridge.EventCreated
					c.CallID, c.CSeq = "", 0
				}),
				// q 0.8 is not exact in float32; already past its expiry
				// (expires 0) and a Since after now (duration 0).
				joePhone(func(c *bridge.ContactView) {
					c.ID, c.URI, c.Key = "78", "sips:joe@pc35.example.com:5061", "ruid-78"
					c.Q = 0.8
					c.Expires = renderNow.Add(-2 * time.Second)
					c.Since = renderNow.Add(time.Minute)
					c.Event = bridge.EventRefreshed
					c.CallID, c.CSeq = "x1@192.0.2.8", 2
				}),
				joePhone(func(c *bridge.ContactView) {
					c.ID, c.URI, c.Key = "79", "sip:joe@198.51.100.9", "ruid-79"
					c.Q = 0.125
					c.Since = renderNow.Add(-36001*time.Second - 999*time.Millisecond)
				}),
				joePhone(func(c *bridge.ContactView) {
					c.ID, c.URI, c.Key = "80", "sip:joe@198.51.100.10", "ruid-80"
					c.Q = 0.0004 // rounds to 0
				}),
			}},
		}}},
		{"full-group", Document{Version: 1, Full: true, Registrations: []bridge.Registration{
			{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{joePhone()}},
			{AOR: "sip:ann@example.com", ID: "a8", State: bridge.RegInit},
			{AOR: "sip:bob@example.com", ID: "a9", State: bridge.RegActive, Contacts: []bridge.ContactView{
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.ID, c.URI = "sip:bob@example.com", "90", "sip:bob@192.0.2.90"
				}),
			}},
		}}},
		{"partial-registered", partialDoc(1, bridge.RegActive, joePhone())},
		{"partial-created", partialDoc(1, bridge.RegActive, joePhone(withEvent(bridge.EventCreated),
			func(c *bridge.ContactView) { c.CallID, c.CSeq, c.Administrative = "", 0, true }))},
		{"partial-refreshed", partialDoc(2, bridge.RegActive, joePhone(withEvent(bridge.EventRefreshed),
			func(c *bridge.ContactView) { c.CSeq++; c.Since = renderNow.Add(-1800 * time.Second) }))},
		// RFC 3680 5.1: expires MUST be present with shortened.
		{"partial-shortened", partialDoc(2, bridge.RegActive, joePhone(withEvent(bridge.EventShortened),
			func(c *bridge.ContactView) {
				c.Expires = renderNow.Add(30 * time.Second)
				c.Since = renderNow.Add(-1800 * time.Second)
			}))},
		// Another contact keeps the registration active.
		{"partial-expired", partialDoc(3, bridge.RegActive, joePhone(withTerminated(bridge.EventExpired),
			func(c *bridge.ContactView) { c.Expires = renderNow.Add(-time.Second) }))},
		{"partial-unregistered", partialDoc(4, bridge.RegActive, joePhone(withTerminated(bridge.EventUnregistered),
			func(c *bridge.ContactView) { c.CSeq = 9980 }))},
		{"partial-deactivated", partialDoc(4, bridge.RegActive, joePhone(withTerminated(bridge.EventDeactivated)))},
		// RFC 3680 5.1: retry-after MUST be present with probation.
		{"partial-probation", partialDoc(3, bridge.RegActive, joePhone(withTerminated(bridge.EventProbation),
			func(c *bridge.ContactView) { c.RetryAfter = 600 }))},
		{"partial-probation-zero", partialDoc(3, bridge.RegActive, joePhone(withTerminated(bridge.EventProbation)))},
		{"partial-rejected", partialDoc(4, bridge.RegActive, joePhone(withTerminated(bridge.EventRejected)))},
		{"partial-terminated-last-contact", partialDoc(6, bridge.RegTerminated, joePhone(withTerminated(bridge.EventExpired),
			func(c *bridge.ContactView) { c.Expires = renderNow }))},
		// RFC 5628: pub-gruu per instance, identical on contacts sharing
		// the instance (vector 54), absent without one (vector 56).
		{"gruu", Document{Version: 0, Full: true, Registrations: []bridge.Registration{
			{AOR: "sip:user@example.com", ID: "as9", State: bridge.RegActive, Contacts: []bridge.ContactView{
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.URI = "sip:user@example.com", "sip:user@192.0.2.1"
					c.Instance, c.RegID, c.Q = testInstance, 1, 0.8
				}),
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.ID, c.URI = "sip:user@example.com", "77", "sip:user@192.0.2.1;transport=tcp"
					c.Instance, c.RegID = testInstance, 2
				}),
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.ID, c.URI = "sip:user@example.com", "78", "sip:user@192.0.2.3"
					c.Instance = "<urn:gsma:imei:90420156-025763-0>"
				}),
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.ID, c.URI = "sip:user@example.com", "79", "sip:user@192.0.2.4"
				}),
			}},
		}}},
		{"hostile", Document{Version: 7, Full: true, Registrations: []bridge.Registration{
			{AOR: hostileAOR, ID: hostileText, State: bridge.RegActive, Contacts: []bridge.ContactView{
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.ID, c.URI = hostileAOR, hostileText, hostileURI
					c.CallID, c.UserAgent, c.Instance = hostileText, hostileText, hostileInstance
					c.Q, c.RegID = 0.3333, 5
				}),
				// An instance without angle brackets is used whole.
				joePhone(func(c *bridge.ContactView) {
					c.AOR, c.ID = hostileAOR, "c\r\n\t2"
					c.URI = "sip:\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9@\u4f8b\u3048.jp"
					c.CallID, c.Instance = "\u00e9\u00e8@\u4f8b", "urn:uuid:<>&'\"]]>"
				}),
			}},
		}}},
		{"limits", Document{Version: math.MaxUint32, Registrations: []bridge.Registration{
			{AOR: testAOR, ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{
				joePhone(withEvent(bridge.EventRefreshed), func(c *bridge.ContactView) {
					c.CSeq, c.RegID = math.MaxUint32, math.MaxUint32
					c.Expires = renderNow.Add(100 * 365 * 24 * time.Hour)
					c.Since = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC) // duration saturates
					c.Q = 7.25                                         // not a q-value; still rendered
				}),
				joePhone(withTerminated(bridge.EventProbation), func(c *bridge.ContactView) {
					c.ID, c.RetryAfter = "77", math.MaxUint32
					c.Q = float32(math.NaN())
				}),
			}},
		}}},
	}
}

func TestAppendReginfoGolden(t *testing.T) {
	for _, tt := range reginfoCases() {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendReginfo(nil, tt.doc, renderNow)
			checkWellFormed(t, got)
			checkReginfoRules(t, tt.doc, got)
			checkGolden(t, tt.name, got)
		})
	}
}

func TestAppendReginfoAppends(t *testing.T) {
	doc := partialDoc(1, bridge.RegActive, joePhone())
	want := AppendReginfo(nil, doc, renderNow)
	prefix := []byte("NOTIFY sip:x SIP/2.0\r\n\r\n")
	got := AppendReginfo(bytes.Clone(prefix), doc, renderNow)
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Errorf("AppendReginfo did not append to dst:\n%q", got)
	}
}

// TestAppendReginfoDetails pins the individual attribute rules on top of
// the golden files.
func TestAppendReginfoDetails(t *testing.T) {
	tests := []struct {
		name    string
		doc     Document
		want    []string // substrings that must appear
		notWant []string // substrings that must not appear
	}{
		{
			name:    "no gr namespace without instance",
			doc:     partialDoc(0, bridge.RegActive, joePhone()),
			want:    []string{`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="partial">`},
			notWant: []string{"gruuinfo", "unknown-param"},
		},
		{
			name: "gr namespace with instance",
			doc:  partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) { c.Instance = testInstance })),
			want: []string{
				` xmlns:gr="urn:ietf:params:xml:ns:gruuinfo" `,
				`<unknown-param name="+sip.instance">"&lt;urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6&gt;"</unknown-param>`,
				`<gr:pub-gruu uri="sip:joe@example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"/>`,
			},
			notWant: []string{"reg-id"},
		},
		{
			name: "expires floors",
			doc: partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) {
				c.Expires = renderNow.Add(59*time.Second + 999*time.Millisecond)
			})),
			want: []string{` expires="59" `},
		},
		{
			name:    "permanent has no expires",
			doc:     partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) { c.Expires = time.Time{} })),
			notWant: []string{"expires="},
		},
		{
			name: "terminated has expires 0",
			doc:  partialDoc(0, bridge.RegTerminated, joePhone(withTerminated(bridge.EventUnregistered))),
			want: []string{` event="unregistered" expires="0" `},
		},
		{
			name:    "retry-after only with probation",
			doc:     partialDoc(0, bridge.RegTerminated, joePhone(withTerminated(bridge.EventDeactivated), func(c *bridge.ContactView) { c.RetryAfter = 60 })),
			notWant: []string{"retry-after"},
		},
		{
			name: "q formats",
			doc: partialDoc(0, bridge.RegActive,
				joePhone(func(c *bridge.ContactView) { c.Q = 1 }),
				joePhone(func(c *bridge.ContactView) { c.Q = 0 }),
				joePhone(func(c *bridge.ContactView) { c.Q = 0.05 }),
				joePhone(func(c *bridge.ContactView) { c.Q = 0.9999 }),
				joePhone(func(c *bridge.ContactView) { c.Q = 0.101 }),
			),
			want: []string{` q="1" `, ` q="0" `, ` q="0.05" `, ` q="1" `, ` q="0.101" `},
		},
		{
			name: "no q when unspecified or not a number",
			doc: partialDoc(0, bridge.RegActive,
				joePhone(func(c *bridge.ContactView) { c.Q = -1 }),
				joePhone(func(c *bridge.ContactView) { c.Q = float32(math.Inf(1)) }),
				joePhone(func(c *bridge.ContactView) { c.Q = float32(math.NaN()) }),
			),
			notWant: []string{" q="},
		},
		{
			name:    "callid and cseq only with a call id",
			doc:     partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) { c.CallID = "" })),
			notWant: []string{"callid=", "cseq="},
		},
		{
			name:    "no duration without start",
			doc:     partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) { c.Since = time.Time{} })),
			notWant: []string{"duration-registered"},
		},
		{
			name: "attribute whitespace kept as references",
			doc:  partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) { c.CallID = "a\tb\nc\rd" })),
			want: []string{` callid="a&#x9;b&#xA;c&#xD;d" `},
		},
		{
			name: "user agent is not rendered",
			doc:  partialDoc(0, bridge.RegActive, joePhone(func(c *bridge.ContactView) { c.UserAgent = "SECRET-UA" })),
			// RFC 3680 has no place for it.
			notWant: []string{"SECRET-UA"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendReginfo(nil, tt.doc, renderNow)
			checkWellFormed(t, got)
			for _, w := range tt.want {
				if !bytes.Contains(got, []byte(w)) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if bytes.Contains(got, []byte(w)) {
					t.Errorf("unexpected %q in\n%s", w, got)
				}
			}
			validateXML(t, schemaReginfo, got)
		})
	}
}

func TestAppendGrValue(t *testing.T) {
	tests := []struct{ name, instance, want string }{
		{"uuid urn", testInstance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"},
		{"no brackets", "urn:uuid:1", "urn:uuid:1"},
		{"only opening bracket", "<urn:uuid:1", "%3Curn:uuid:1"},
		{"empty brackets", "<>", ""},
		{"parameter injection", "<a;gr=b?c=d>", "a%3Bgr%3Db%3Fc%3Dd"},
		{"xml and uri specials", `<x&'"<>[]%# y>`, "x%26%27%22%3C%3E%5B%5D%25%23%20y"},
		{"non-ascii and invalid utf-8", "<\u00e9\xff>", "%C3%A9%FF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendGrValue(nil, tt.instance)); got != tt.want {
				t.Errorf("appendGrValue(%q) = %q, want %q", tt.instance, got, tt.want)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, text, attr string
	}{
		{"plain", "sip:joe@example.com", "sip:joe@example.com", "sip:joe@example.com"},
		{"empty", "", "", ""},
		{"markup", `<a href="x">&'</a>`, `&lt;a href="x"&gt;&amp;'&lt;/a&gt;`, `&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;`},
		{"cdata end", "]]>", "]]&gt;", "]]&gt;"},
		{"whitespace", "a\tb\nc\rd", "a\tb\nc&#xD;d", "a&#x9;b&#xA;c&#xD;d"},
		{"c0 controls", "\x00\x01\x1f\x7f", "\uFFFD\uFFFD\uFFFD\x7f", "\uFFFD\uFFFD\uFFFD\x7f"},
		{"non-characters", "\uFFFE\uFFFF\uFFFD", "\uFFFD\uFFFD\uFFFD", "\uFFFD\uFFFD\uFFFD"},
		{"invalid utf-8", "a\xffb\xc3", "a\uFFFDb\uFFFD", "a\uFFFDb\uFFFD"},
		{"surrogate", "\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD", "\uFFFD\uFFFD\uFFFD"},
		{"non-ascii", "\u00e9\u4f8b\U0001F600\u0085", "\u00e9\u4f8b\U0001F600\u0085", "\u00e9\u4f8b\U0001F600\u0085"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendText(nil, tt.in)); got != tt.text {
				t.Errorf("appendText(%q) = %q, want %q", tt.in, got, tt.text)
			}
			if got := string(appendAttr(nil, tt.in)); got != tt.attr {
				t.Errorf("appendAttr(%q) = %q, want %q", tt.in, got, tt.attr)
			}
			// Both must read back as the input after U+FFFD replacement.
			var v struct {
				A string `xml:"a,attr"`
				T string `xml:",chardata"`
			}
			doc := "<e a=\"" + string(appendAttr(nil, tt.in)) + "\">" + string(appendText(nil, tt.in)) + "</e>"
			if err := xml.Unmarshal([]byte(doc), &v); err != nil {
				t.Fatalf("decoding %q: %v", doc, err)
			}
			if want := xmlSafe(tt.in); v.A != want || v.T != want {
				t.Errorf("read back attr %q, text %q, want %q", v.A, v.T, want)
			}
		})
	}
}

// checkGolden compares got with testdata/reginfo/<name>.xml, or rewrites
// that file under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name+".xml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./notifier/render -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./notifier/render -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// checkWellFormed fails t unless encoding/xml reads doc to the end: one
// root element, balanced tags, legal characters, UTF-8.
func checkWellFormed(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%q", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(tok)) != 0 {
				t.Fatalf("text outside the root element: %q", tok)
			}
		}
	}
	if roots != 1 || depth != 0 {
		t.Fatalf("not well-formed: %d root elements, depth %d at the end\n%q", roots, depth, doc)
	}
}

// xmlSafe is the replacement rule of the escapers, written independently:
// every invalid UTF-8 byte (range yields RuneError for it) and every
// character XML 1.0 does not allow becomes U+FFFD.
func xmlSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		ok := r == '\t' || r == '\n' || r == '\r' ||
			(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
		if !ok {
			r = '\uFFFD'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Decoded reginfo, for the rule checks.
type xReginfo struct {
	XMLName       xml.Name        `xml:"urn:ietf:params:xml:ns:reginfo reginfo"`
	Version       string          `xml:"version,attr"`
	State         string          `xml:"state,attr"`
	Registrations []xRegistration `xml:"urn:ietf:params:xml:ns:reginfo registration"`
}

type xRegistration struct {
	AOR      string     `xml:"aor,attr"`
	ID       string     `xml:"id,attr"`
	State    string     `xml:"state,attr"`
	Contacts []xContact `xml:"urn:ietf:params:xml:ns:reginfo contact"`
}

type xContact struct {
	ID                 string  `xml:"id,attr"`
	State              string  `xml:"state,attr"`
	Event              string  `xml:"event,attr"`
	Expires            *string `xml:"expires,attr"`
	RetryAfter         *string `xml:"retry-after,attr"`
	DurationRegistered *string `xml:"duration-registered,attr"`
	Q                  *string `xml:"q,attr"`
	CallID             *string `xml:"callid,attr"`
	CSeq               *string `xml:"cseq,attr"`
	URI                string  `xml:"urn:ietf:params:xml:ns:reginfo uri"`
	Params             []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:",chardata"`
	} `xml:"urn:ietf:params:xml:ns:reginfo unknown-param"`
	PubGruu []struct {
		URI string `xml:"uri,attr"`
	} `xml:"urn:ietf:params:xml:ns:gruuinfo pub-gruu"`
}

// checkReginfoRules decodes got and checks it against doc and the RFC 3680
// and RFC 5628 rules: every string reads back as given (after U+FFFD
// replacement), expires on every active non-permanent contact and never on
// a terminated one, retry-after on probation, pub-gruu exactly when there
// is an instance.
func checkReginfoRules(t *testing.T, doc Document, got []byte) {
	t.Helper()
	var r xReginfo
	if err := xml.Unmarshal(got, &r); err != nil {
		t.Fatalf("decoding: %v\n%s", err, got)
	}
	wantState := "partial"
	if doc.Full {
		wantState = "full"
	}
	if r.State != wantState {
		t.Errorf("reginfo state %q, want %q", r.State, wantState)
	}
	if len(r.Registrations) != len(doc.Registrations) {
		t.Fatalf("%d registrations, want %d", len(r.Registrations), len(doc.Registrations))
	}
	for i, reg := range doc.Registrations {
		xr := r.Registrations[i]
		if xr.AOR != xmlSafe(reg.AOR) || xr.ID != xmlSafe(reg.ID) || xr.State != string(reg.State) {
			t.Errorf("registration %d: aor %q id %q state %q, want %q %q %q",
				i, xr.AOR, xr.ID, xr.State, xmlSafe(reg.AOR), xmlSafe(reg.ID), reg.State)
		}
		if len(xr.Contacts) != len(reg.Contacts) {
			t.Fatalf("registration %d: %d contacts, want %d", i, len(xr.Contacts), len(reg.Contacts))
		}
		for j, c := range reg.Contacts {
			xc := xr.Contacts[j]
			where := func(format string, args ...any) {
				t.Helper()
				t.Errorf("registration %d contact %d: "+format, append([]any{i, j}, args...)...)
			}
			if xc.URI != xmlSafe(c.URI) {
				where("uri %q, want %q", xc.URI, xmlSafe(c.URI))
			}
			event := c.Event
			if doc.BasicEvents {
				event = basicEvent(event)
			}
			if xc.ID != xmlSafe(c.ID) || xc.State != string(c.State) || xc.Event != string(event) {
				where("id %q state %q event %q", xc.ID, xc.State, xc.Event)
			}
			if wantExp := c.State == bridge.ContactTerminated || !c.Permanent(); (xc.Expires != nil) != wantExp {
				where("expires present %v, want %v", xc.Expires != nil, wantExp)
			}
			if c.State == bridge.ContactTerminated && xc.Expires != nil && *xc.Expires != "0" {
				where("terminated with expires %q, want 0", *xc.Expires)
			}
			if c.Event == bridge.EventShortened && !c.Permanent() && xc.Expires == nil {
				where("shortened without expires")
			}
			if (xc.RetryAfter != nil) != (event == bridge.EventProbation) {
				where("retry-after present %v with event %s", xc.RetryAfter != nil, event)
			}
			if (xc.DurationRegistered != nil) != !c.Since.IsZero() {
				where("duration-registered present %v, since %v", xc.DurationRegistered != nil, c.Since)
			}
			if (xc.Q != nil) != validQ(c.Q) {
				where("q present %v for %v", xc.Q != nil, c.Q)
			}
			if c.CallID != "" {
				if xc.CallID == nil || *xc.CallID != xmlSafe(c.CallID) || xc.CSeq == nil {
					where("callid %v cseq %v, want %q", xc.CallID, xc.CSeq, xmlSafe(c.CallID))
				}
			} else if xc.CallID != nil || xc.CSeq != nil {
				where("callid/cseq without a call id")
			}
			var wantParams []string
			if c.Instance != "" {
				wantParams = append(wantParams, "+sip.instance="+`"`+xmlSafe(c.Instance)+`"`)
			}
			if c.RegID > 0 {
				wantParams = append(wantParams, "reg-id="+strconv.FormatUint(uint64(c.RegID), 10))
			}
			var gotParams []string
			for _, p := range xc.Params {
				gotParams = append(gotParams, p.Name+"="+p.Value)
			}
			if strings.Join(gotParams, "\x00") != strings.Join(wantParams, "\x00") {
				where("unknown-params %q, want %q", gotParams, wantParams)
			}
			if c.Instance == "" {
				if len(xc.PubGruu) != 0 {
					where("pub-gruu without instance")
				}
			} else if len(xc.PubGruu) != 1 || !strings.HasPrefix(xc.PubGruu[0].URI, xmlSafe(reg.AOR)+";gr=") ||
				strings.ContainsAny(xc.PubGruu[0].URI[len(xmlSafe(reg.AOR))+4:], ";?<>\"' &[]") {
				where("pub-gruu %v for AOR %q", xc.PubGruu, reg.AOR)
			}
		}
	}
}

// TestBasicEventsRendering: a basic-events document says refreshed for
// shortened (with the new expires) and unregistered for the endings a
// basic watcher does not know (expires 0, no retry-after); the events it
// knows are unchanged; every document stays schema-valid.
func TestBasicEventsRendering(t *testing.T) {
	probation := func(c *bridge.ContactView) { c.RetryAfter = 120 }
	tests := []struct {
		name    string
		contact bridge.ContactView
		want    string
	}{
		{"shortened", joePhone(withEvent(bridge.EventShortened)), `state="active" event="refreshed" expires="3580"`},
		{"deactivated", joePhone(withTerminated(bridge.EventDeactivated)), `state="terminated" event="unregistered" expires="0" duration`},
		{"probation", joePhone(withTerminated(bridge.EventProbation), probation), `state="terminated" event="unregistered" expires="0" duration`},
		{"rejected", joePhone(withTerminated(bridge.EventRejected)), `state="terminated" event="unregistered" expires="0" duration`},
		{"registered", joePhone(withEvent(bridge.EventRegistered)), `state="active" event="registered" expires="3580"`},
		{"created", joePhone(withEvent(bridge.EventCreated)), `state="active" event="created" expires="3580"`},
		{"refreshed", joePhone(withEvent(bridge.EventRefreshed)), `state="active" event="refreshed" expires="3580"`},
		{"expired", joePhone(withTerminated(bridge.EventExpired)), `state="terminated" event="expired" expires="0" duration`},
		{"unregistered", joePhone(withTerminated(bridge.EventUnregistered)), `state="terminated" event="unregistered" expires="0" duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := partialDoc(3, bridge.RegActive, tt.contact)
			doc.BasicEvents = true
			got := AppendReginfo(nil, doc, renderNow)
			if !bytes.Contains(got, []byte(tt.want)) || bytes.Contains(got, []byte("retry-after")) {
				t.Errorf("want %q and no retry-after in\n%s", tt.want, got)
			}
			validateXML(t, schemaReginfo, got)
			// The same contact for every other watcher: its own event.
			doc.BasicEvents = false
			if full := AppendReginfo(nil, doc, renderNow); !bytes.Contains(full, []byte(`event="`+string(tt.contact.Event)+`"`)) {
				t.Errorf("without BasicEvents, event %s is not rendered:\n%s", tt.contact.Event, full)
			}
		})
	}
}
