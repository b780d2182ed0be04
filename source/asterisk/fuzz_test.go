package asterisk

import (
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// checkAccepted fails when a decoder accepted a contact the bridge and the
// XML renderer could not use.
func checkAccepted(t *testing.T, c *source.Contact) {
	t.Helper()
	if c.Key == "" || !source.Printable(c.Key) || !strings.Contains(c.Key, dynamicSeparator) {
		t.Fatalf("accepted unusable key: %+v", c)
	}
	if !strings.HasPrefix(c.AOR, "sip:") || !source.Printable(c.AOR) || !source.ValidURI(c.URI) {
		t.Fatalf("accepted unusable AOR or URI: %+v", c)
	}
	if y := c.Expires.Year(); !c.Expires.IsZero() && (y < 1970 || y > 9999 || c.Expires.Location() != time.UTC) {
		t.Fatalf("expires out of range: %v", c.Expires)
	}
	if c.Q != -1 || c.CSeq != 0 {
		t.Fatalf("Asterisk stores no q or CSeq: %+v", c)
	}
}

// FuzzDecodeAstDB feeds arbitrary keys and values of the astdb table.
func FuzzDecodeAstDB(f *testing.F) {
	f.Add("/registrar/contact/1001;@0123456789abcdef0123456789abcdef",
		astContact{aor: "1001", uri: "sip:1001@192.0.2.1", callID: "c", userAgent: "ua", expires: time.Unix(1795000000, 0)}.json(), "example.com")
	f.Add("/registrar/contact/1002;@ff", `{"uri":"sip:x@y","expiration_time":1795000000,"user_agent":null}`, "")
	f.Add("/registrar/contact/a;@b", `{"uri":"sip:\u0000","expiration_time":"-0"}`, "")
	f.Add("/registrar/contact/a b;@", `[]`, "a@b")
	f.Fuzz(func(t *testing.T, key, value, domain string) {
		if !validDomain(domain) {
			domain = "" // AstDBConfig.Validate rejects it
		}
		l := &astdbLayout{prefix: "/registrar/contact/", domain: domain}
		var c source.Contact
		if err := l.Decode([]sqlwatch.Value{text(key), text(value)}, &c); err != nil {
			return
		}
		checkAccepted(t, &c)
	})
}

// FuzzDecodeRealtime feeds arbitrary ps_contacts columns, NULL or text.
func FuzzDecodeRealtime(f *testing.F) {
	f.Add("1001;@ab", "sip:1001@192.0.2.1", "1795000000", "ua", "cid", "<sip:p;lr>", uint8(0))
	f.Add("1001@@ab", "sips:x", "0", "", "", "", uint8(0x3f))
	f.Add(";@", "tel:", "+17", "\xff", "", "", uint8(0x15))
	f.Fuzz(func(t *testing.T, id, uri, exp, ua, callID, path string, nulls uint8) {
		col := func(i int, s string) sqlwatch.Value {
			if nulls&(1<<i) != 0 {
				return sqlwatch.Value{}
			}
			return text(s)
		}
		row := []sqlwatch.Value{col(0, id), col(1, uri), col(2, exp), col(3, ua), col(4, callID), col(5, path), text("pbx1")}
		l := &realtimeLayout{table: DefaultTable, domain: "example.com"}
		var c source.Contact
		if err := l.Decode(row, &c); err != nil {
			return
		}
		checkAccepted(t, &c)
	})
}
