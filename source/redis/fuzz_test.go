package redis

import (
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// checkAccepted fails when a decoder accepted a contact the bridge and the
// XML renderer could not use.
func checkAccepted(t *testing.T, c *source.Contact) {
	t.Helper()
	if c.Key == "" || !source.Printable(c.Key) {
		t.Fatalf("accepted unusable key: %+v", c)
	}
	if !source.ValidURI(c.AOR) || !source.ValidURI(c.URI) {
		t.Fatalf("accepted unusable AOR or URI: %+v", c)
	}
	if c.Q != -1 && (c.Q < 0 || c.Q > 1) {
		t.Fatalf("q out of range: %v", c.Q)
	}
	for _, tm := range []time.Time{c.Expires, c.Modified} {
		if y := tm.Year(); !tm.IsZero() && (y < 1 || y > 9999) {
			t.Fatalf("time out of range: %v", tm)
		}
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Fatalf("time not in UTC: %v", tm)
		}
	}
}

// zones the fuzzer picks the registrar's zone from.
var fuzzZones = []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"}

// FuzzDecodeKamailio feeds arbitrary text into every field db_redis
// writes: decodeKamailio must never panic, and what it accepts must be
// usable.
func FuzzDecodeKamailio(f *testing.F) {
	f.Add("uloc-1", "alice", "", "sip:alice@192.0.2.1", "2026-11-22 04:21:28", "2026-11-22 03:21:28", "-1.000000", "1", "0", uint8(1), "example.com", true)
	f.Add("ulcx-2", "bob@h", "d", "tel:+1", "1970-01-01 01:00:00", "", "1.000000", "0000000042", "", uint8(2), "", false)
	f.Add("x", " ", "\x00", "sips:\xff", "2026-02-30 10:00:00", "1795000000", "NaN", "-1", "4294967296", uint8(3), "", true)
	f.Add("k", "u", "", "sip:u@h", "99999999999999999999", "0", "1e300", "+1", "0x1", uint8(4), "", true)
	f.Fuzz(func(t *testing.T, key, user, domain, contact, expires, modified, q, cseq, regID string, zone uint8, cfgDomain string, withDomain bool) {
		loc, err := time.LoadLocation(fuzzZones[int(zone)%len(fuzzZones)])
		if err != nil {
			t.Fatal(err)
		}
		if !source.Printable(cfgDomain) || strings.IndexByte(cfgDomain, '@') >= 0 {
			cfgDomain = "" // Config.Validate rejects it
		}
		fields := map[string]string{
			"username": user, "contact": contact, "expires": expires, "last_modified": modified,
			"q": q, "cseq": cseq, "reg_id": regID, "callid": key, "user_agent": user, "ruid": key,
		}
		if withDomain {
			fields["domain"] = domain
		}
		var c source.Contact
		if err := decodeKamailio(key, fields, loc, cfgDomain, &c); err != nil {
			return
		}
		checkAccepted(t, &c)
		if !strings.HasPrefix(c.AOR, "sip:") {
			t.Fatalf("Kamailio AOR not a sip: URI: %q", c.AOR)
		}
	})
}

// FuzzDecodeGeneric does the same for the generic layout.
func FuzzDecodeGeneric(f *testing.F) {
	f.Add("b1", "sip:alice@example.com", "sip:alice@192.0.2.1", "1795000000", "1794996400", "0.5", "7", "1", "true")
	f.Add("b2", "tel:+1", "sips:x", "0", "", "", "", "", "")
	f.Add("", "alice", "http://x", "-1", "x", "2", "-7", "z", "maybe")
	f.Fuzz(func(t *testing.T, key, aorURI, uri, expires, modified, q, cseq, regID, admin string) {
		fields := map[string]string{
			"aor": aorURI, "uri": uri, "expires": expires, "modified": modified,
			"q": q, "cseq": cseq, "reg_id": regID, "admin": admin,
		}
		var c source.Contact
		if err := decodeGeneric(key, fields, &c); err != nil {
			return
		}
		checkAccepted(t, &c)
	})
}
