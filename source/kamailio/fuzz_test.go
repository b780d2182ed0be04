package kamailio

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
)

// FuzzDecode feeds arbitrary values of every driver type into each column:
// decodeRow must never panic, and what it accepts must be usable.
func FuzzDecode(f *testing.F) {
	perm := TimeToJulian(t0)
	f.Add("uloc-1", "alice", "", "sip:alice@192.0.2.1", "1970-01-01 00:00:00", perm, int64(7), "cid", "<urn:uuid:x>", uint16(0x1111), "example.com")
	f.Add("ulcx-1", "bob@h", "d", "tel:+1", "2026-02-30 10:00:00", math.NaN(), int64(-1), "", "", uint16(0x2222), "")
	f.Add("", " ", "\x00", "sips:\xff", "soon", math.Inf(1), int64(math.MaxInt64), "x", "y", uint16(0x4321), "")
	f.Fuzz(func(t *testing.T, ruid, user, domain, contact, text string, real float64, integer int64, callid, instance string, kinds uint16, cfgDomain string) {
		k := func(n int) uint8 { return uint8(kinds>>(n%16)) & 7 }
		r := rawRow{
			colID:           sourcetest.Pick(k(0), text, real, integer),
			colRUID:         sourcetest.Pick(k(1)|1, ruid, real, integer), // mostly strings
			colUsername:     sourcetest.Pick(k(2)|1, user, real, integer),
			colDomain:       sourcetest.Pick(k(3), domain, real, integer),
			colContact:      sourcetest.Pick(k(4)|1, contact, real, integer),
			colReceived:     sourcetest.Pick(k(5), contact, real, integer),
			colPath:         sourcetest.Pick(k(6), domain, real, integer),
			colExpires:      sourcetest.Pick(k(7), text, real, integer),
			colQ:            sourcetest.Pick(k(8), text, real, integer),
			colCallID:       sourcetest.Pick(k(9), callid, real, integer),
			colCSeq:         sourcetest.Pick(k(10), text, real, integer),
			colLastModified: sourcetest.Pick(k(11), text, real, integer),
			colUserAgent:    sourcetest.Pick(k(12), callid, real, integer),
			colInstance:     sourcetest.Pick(k(13), instance, real, integer),
			colRegID:        sourcetest.Pick(k(14), text, real, integer),
		}
		var c source.Contact
		// The server layouts (db_mysql/db_postgres wall clock in a DST
		// zone, expires_type=1 epochs) must hold the same promises.
		for _, typ := range []string{"DATETIME", "BIGINT"} {
			types := make([]string, numCols)
			types[colExpires], types[colLastModified] = typ, typ
			var sc source.Contact
			if decodeRowAs(&r, cfgDomain, berlin, types, &sc) == nil {
				checkUsable(t, sc)
			}
		}
		if err := decodeRow(&r, cfgDomain, &c); err != nil {
			return
		}
		checkUsable(t, c)
	})
}

var berlin, _ = time.LoadLocation("Europe/Berlin")

// checkUsable fails unless an accepted contact can be reported as is.
func checkUsable(t *testing.T, c source.Contact) {
	t.Helper()
	if c.Key == "" || c.AOR == "" || c.URI == "" {
		t.Fatalf("accepted contact with empty Key/AOR/URI: %+v", c)
	}
	if !strings.HasPrefix(c.AOR, "sip:") || !source.ValidURI([]byte(c.URI)) || !source.Printable([]byte(c.Key)) {
		t.Fatalf("accepted unusable contact: %+v", c)
	}
	if c.Q != -1 && (c.Q < 0 || c.Q > 1) {
		t.Fatalf("q out of range: %v", c.Q)
	}
	if y := c.Expires.Year(); !c.Expires.IsZero() && (y < 1 || y > 9999) {
		t.Fatalf("expires out of range: %v", c.Expires)
	}
}
