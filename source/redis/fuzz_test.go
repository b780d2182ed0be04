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

// FuzzKeyspaceKey feeds arbitrary keyspace channels and key prefixes (a
// table or prefix an operator configures, keys anyone with write access
// to the server creates): a key taken from an event is on this database,
// under the prefix, and one the snapshot's SCAN pattern lists too, so the
// event and the snapshot paths agree on which keys are bindings; and its
// suffix either decodes into a contact whose key is that suffix or is
// refused.
func FuzzKeyspaceKey(f *testing.F) {
	f.Add("location", uint8(0), "__keyspace@0__:location:entry::uloc-1", false)
	f.Add("v2:loc*[x]", uint8(3), "__keyspace@3__:v2:loc*[x]:entry::a?b", false)
	f.Add("reg:contact:", uint8(15), "__keyspace@15__:reg:contact:b1", true)
	f.Add("a\\b", uint8(1), "__keyspace@1__:a\\b:entry::", false)
	f.Fuzz(func(t *testing.T, table string, db uint8, channel string, generic bool) {
		cfg := Config{Addr: "127.0.0.1:1", DB: int(db % 16), Table: table}
		if generic {
			cfg = Config{Addr: "127.0.0.1:1", DB: int(db % 16), Layout: LayoutGeneric, Prefix: table}
		}
		w, err := New(cfg, nil)
		if err != nil {
			return
		}
		key, ok := w.keyOf(channel)
		if !ok {
			return
		}
		if channel != w.channel+key || !strings.HasPrefix(key, w.prefix) {
			t.Fatalf("channel %q: key %q is not this database's key under %q", channel, key, w.prefix)
		}
		if !globMatch(w.pattern, key) {
			t.Fatalf("key %q from an event is not listed by SCAN MATCH %q", key, w.pattern)
		}
		suffix := key[len(w.prefix):]
		var c source.Contact
		if generic {
			err = decodeGeneric(suffix, map[string]string{"aor": "sip:alice@example.com", "uri": "sip:alice@192.0.2.1", "expires": "0"}, &c)
		} else {
			err = decodeKamailio(suffix, map[string]string{"username": "alice", "contact": "sip:alice@192.0.2.1",
				"expires": "1970-01-01 00:00:00", "ruid": suffix, "callid": "c", "cseq": "1"}, time.UTC, "example.com", &c)
		}
		if err != nil {
			return
		}
		if c.Key != suffix {
			t.Fatalf("contact key %q, want the key's suffix %q", c.Key, suffix)
		}
		checkAccepted(t, &c)
	})
}

// globMatch is Redis's stringmatchlen for the patterns globEscape builds
// and the keys they meet: '*', '?', '[...]' with ranges and '^', and '\'
// quoting the next byte.
func globMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if globMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			s = s[1:]
		case '[':
			if s == "" {
				return false
			}
			p, not, match := pattern[1:], false, false
			if len(p) > 0 && p[0] == '^' {
				not, p = true, p[1:]
			}
			for len(p) > 0 && p[0] != ']' {
				switch {
				case p[0] == '\\' && len(p) >= 2:
					match = match || p[1] == s[0]
					p = p[2:]
				case len(p) >= 3 && p[1] == '-':
					lo, hi := min(p[0], p[2]), max(p[0], p[2])
					match = match || (lo <= s[0] && s[0] <= hi)
					p = p[3:]
				default:
					match = match || p[0] == s[0]
					p = p[1:]
				}
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
			if len(p) > 0 {
				p = p[1:] // the ']'
			}
			pattern = p
			continue
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if s == "" || pattern[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		pattern = pattern[1:]
	}
	return s == ""
}
