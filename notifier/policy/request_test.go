package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func request(t testing.TB, headers ...string) *sip.Request {
	t.Helper()
	raw := "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:pcscf@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n" +
		"Call-ID: c\r\nCSeq: 1 SUBSCRIBE\r\nEvent: reg\r\n"
	for _, h := range headers {
		raw += h + "\r\n"
	}
	msg, err := sip.ParseMessage([]byte(raw + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

func TestAssertedIdentity(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
	}{
		{"none", nil, ""},
		{"name-addr", []string{`P-Asserted-Identity: "Alice" <sip:alice@example.com>`}, "sip:alice@example.com"},
		{"addr-spec", []string{`P-Asserted-Identity: sip:alice@example.com`}, "sip:alice@example.com"},
		{"sips", []string{`P-Asserted-Identity: <sips:alice@example.com>`}, "sips:alice@example.com"},
		{"sip and tel in one header", []string{`P-Asserted-Identity: <sip:alice@example.com;user=phone>, <tel:+15551234>`}, "sip:alice@example.com"},
		{"tel first, sip in a second header", []string{`P-Asserted-Identity: <tel:+15551234>`, `P-Asserted-Identity: <sip:alice@example.com>`}, "sip:alice@example.com"},
		{"comma inside a quoted display name", []string{`P-Asserted-Identity: "Smith, Alice" <sip:alice@example.com>`}, "sip:alice@example.com"},
		{"tel only", []string{`P-Asserted-Identity: <tel:+15551234>`}, ""},
		{"two SIP identities assert nothing", []string{`P-Asserted-Identity: <sip:alice@example.com>, <sip:bob@example.com>`}, ""},
		{"no user part", []string{`P-Asserted-Identity: <sip:example.com>`}, ""},
		{"unreadable", []string{`P-Asserted-Identity: <sip:alice@example.com`}, ""},
		{"too long", []string{`P-Asserted-Identity: "` + strings.Repeat("x", maxAssertedLen) + `" <sip:alice@example.com>`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AssertedIdentity(request(t, tt.headers...)); got != tt.want {
				t.Errorf("AssertedIdentity = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSourceAddr(t *testing.T) {
	req := request(t)
	req.SetSource("[::ffff:10.1.2.3]:5060")
	if got := SourceAddr(req); got != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("SourceAddr = %v", got)
	}
	req.SetSource("garbage")
	if got := SourceAddr(req); got.IsValid() {
		t.Errorf("SourceAddr of garbage = %v", got)
	}
}

// FuzzAssertedIdentity: no header value panics, and whatever comes out is
// a sip/sips user@host URI that Decide accepts as an identity.
func FuzzAssertedIdentity(f *testing.F) {
	for _, s := range []string{
		`"Alice" <sip:alice@example.com>`,
		`<sip:alice@example.com;user=phone>, <tel:+15551234>`,
		`"a,\"b" <sips:x@[2001:db8::1]:5061>`,
		`<sip:alice@example.com`,
		`sip:@`,
		`<<sip:a@b>>`,
		`"unterminated <sip:a@b>`,
		"",
	} {
		f.Add(s)
	}
	base := request(f)
	f.Fuzz(func(t *testing.T, v string) {
		req := base.Clone()
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", v))
		got := AssertedIdentity(req)
		if got == "" {
			return
		}
		if !strings.HasPrefix(got, "sip:") && !strings.HasPrefix(got, "sips:") {
			t.Fatalf("AssertedIdentity(%q) = %q: not sip/sips", v, got)
		}
		_ = canonicalIdentity(got) // must not panic; may still be ""
	})
}

// FuzzDecide: any identity and AOR text gives a decision with a rule, and
// Allow never happens for an outsider without an identity.
func FuzzDecide(f *testing.F) {
	f.Add("sip:alice@example.com", "sip:alice@example.com", "192.0.2.1")
	f.Add("", "sip:bob@example.com", "10.0.0.1")
	f.Add("sips:as@apps.example.com", "sip:x@[::1]:5060;a=b?c=d", "::1")
	p, err := New(Config{
		Watchers: []string{"sip:as@apps.example.com"}, WatcherDomains: []string{"example.com"},
		TrustedNetworks: Networks{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, aor, src string) {
		addr, _ := netip.ParseAddr(src)
		d := p.Decide(Input{Identity: id, AssertedIdentity: id, AOR: aor, Source: addr, CanChallenge: true})
		if d.Rule == "" {
			t.Fatalf("no rule for %q -> %q", id, aor)
		}
		if d.Verdict == Allow && canonicalIdentity(id) == "" {
			t.Fatalf("allowed %q -> %q from %s without an identity", id, aor, src)
		}
		if d.Verdict == Allow && d.Rule == RuleSelf && canonicalIdentity(id) != canonicalIdentity(aor) {
			t.Fatalf("self rule for %q -> %q", id, aor)
		}
	})
}
