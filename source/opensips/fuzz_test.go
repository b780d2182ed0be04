package opensips

import (
	"math"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// FuzzDecode feeds arbitrary values of every driver type into each column
// of an OpenSIPS location row, on the SQLite and the server layouts:
// Decode must never panic, what it accepts must be usable as is, and
// decoding the same row again (the layout reuses its buffers) gives the
// same contact.
func FuzzDecode(f *testing.F) {
	f.Add(int64(1<<62|5), "alice", "", "sip:alice@192.0.2.10:5060", "2026-11-22 11:30:15", 1.0, int64(1795000000), "cid", "<urn:uuid:x>", uint16(0x1234), "example.com")
	f.Add(int64(-1), "bob@h", "d", "tel:+1", "1900-01-01 00:00:01", math.NaN(), int64(0), "", "", uint16(0x2222), "")
	f.Add(int64(42), " ", "\x00", "sips:\xff", "2026-02-30 10:00:00", math.Inf(1), int64(math.MaxInt64), "x", "y", uint16(0x4321), "")
	f.Fuzz(func(t *testing.T, id int64, user, domain, contact, text string, real float64, integer int64, callid, instance string, kinds uint16, cfgDomain string) {
		k := func(n int) uint8 { return uint8(kinds>>(n%16)) & 7 }
		pick := func(kind uint8, s string) any { return sourcetest.Pick(kind, s, real, integer) }
		raw := [numCols]any{
			colContactID:    id,
			colUsername:     pick(k(1)|1, user),
			colDomain:       pick(k(2), domain),
			colContact:      pick(k(3)|1, contact),
			colReceived:     pick(k(4), contact),
			colPath:         pick(k(5), domain),
			colExpires:      pick(k(6), text),
			colQ:            pick(k(7), text),
			colCallID:       pick(k(8), callid),
			colCSeq:         pick(k(9), text),
			colLastModified: pick(k(10), text),
			colUserAgent:    pick(k(11), callid),
			colInstance:     pick(k(12), instance),
		}
		if k(0)&1 == 0 {
			raw[colContactID] = pick(k(0), text)
		}
		row := make([]sqlwatch.Value, numCols)
		for i := range raw {
			if err := row[i].Scan(raw[i]); err != nil {
				return
			}
		}
		for _, server := range []bool{false, true} {
			l := &layout{table: "location", domain: cfgDomain, loc: berlin, server: server}
			var c source.Contact
			if l.Decode(row, &c) != nil {
				continue
			}
			checkUsable(t, &c)
			var again source.Contact
			if err := l.Decode(row, &again); err != nil || again != c {
				t.Fatalf("second decode of the same row: %v\n%+v\nwant %+v", err, again, c)
			}
		}
	})
}

var berlin, _ = time.LoadLocation("Europe/Berlin")

// checkUsable fails unless an accepted contact can be reported as is.
func checkUsable(t *testing.T, c *source.Contact) {
	t.Helper()
	if c.Key == "" || !source.Printable(c.Key) || !source.ValidURI(c.URI) {
		t.Fatalf("accepted contact with an unusable key or URI: %+v", c)
	}
	if len(c.AOR) < 5 || c.AOR[:4] != "sip:" || !source.Printable(c.AOR) {
		t.Fatalf("accepted contact with an unusable AOR: %+v", c)
	}
	if c.Q != -1 && (c.Q < 0 || c.Q > 1) {
		t.Fatalf("q out of range: %v", c.Q)
	}
	for _, tm := range []time.Time{c.Expires, c.Modified} {
		if y := tm.Year(); !tm.IsZero() && (y < 1 || y > 9999) {
			t.Fatalf("time out of range: %v", tm)
		}
	}
	for _, s := range []string{c.CallID, c.UserAgent, c.Instance, c.Received, c.Path} {
		if !source.Printable(s) {
			t.Fatalf("accepted a text field that is not printable: %q in %+v", s, c)
		}
	}
}
