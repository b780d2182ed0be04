package render

// Rendering of application/pidf+xml documents (RFC 3863) derived from
// registration state, as RFC 3680 section 3.2 suggests a presence server
// may do. Pure functions of their inputs; no I/O.

import (
	"time"

	"github.com/regbridge/regbridge/bridge"
)

// ContentTypePIDF is the media type of PIDF documents (RFC 3863 section 7).
const ContentTypePIDF = "application/pidf+xml"

const (
	nsPIDF = "urn:ietf:params:xml:ns:pidf"
	// closedTupleID names the one tuple of a registration without active
	// contacts. Contact tuples start with "c", so it cannot collide.
	closedTupleID = "reg"
)

// AppendPIDF appends an application/pidf+xml document (RFC 3863) derived
// from one registration (RFC 3680 3.2).
//
// The entity is the AOR as given (RFC 3863 4.1.1 asks for a pres: URI, but
// the schema takes any URI and subscribers know the AOR). Each active
// contact becomes a tuple with basic status open, its URI as <contact>
// (priority from q when 0 <= q <= 1) and ts as <timestamp>; its id is "c"
// plus the contact ID made an NCName. A registration without active
// contacts becomes a single closed tuple "reg" whose contact is the AOR.
//
// RFC 3863 4.1.7 forbids successive documents with the same timestamp; the
// caller passes the time of the change, and the timestamp keeps ts's
// sub-second digits so that changes within one second stay distinct.
func AppendPIDF(dst []byte, reg bridge.Registration, ts time.Time) []byte {
	dst = append(dst, xmlDecl...)
	dst = append(dst, `<presence xmlns="`+nsPIDF+`" entity="`...)
	dst = appendAttr(dst, reg.AOR)
	dst = append(dst, "\">\n"...)
	open := false
	for i := range reg.Contacts {
		c := &reg.Contacts[i]
		// Registration.Contacts holds active contacts; skip a terminated
		// one should a caller pass it anyway.
		if c.State == bridge.ContactTerminated {
			continue
		}
		open = true
		dst = append(dst, `  <tuple id="c`...)
		dst = appendNCNameTail(dst, c.ID)
		dst = append(dst, "\">\n    <status>\n      <basic>open</basic>\n    </status>\n    <contact"...)
		if validQ(c.Q) && c.Q <= 1 {
			dst = append(dst, ` priority="`...)
			dst = appendQValue(dst, c.Q)
			dst = append(dst, '"')
		}
		dst = append(dst, '>')
		dst = appendText(dst, c.URI)
		dst = append(dst, "</contact>\n"...)
		dst = appendTimestamp(dst, ts)
		dst = append(dst, "  </tuple>\n"...)
	}
	if !open {
		dst = append(dst, `  <tuple id="`+closedTupleID+`">`+"\n    <status>\n      <basic>closed</basic>\n    </status>\n    <contact>"...)
		dst = appendText(dst, reg.AOR)
		dst = append(dst, "</contact>\n"...)
		dst = appendTimestamp(dst, ts)
		dst = append(dst, "  </tuple>\n"...)
	}
	return append(dst, "</presence>\n"...)
}

// appendTimestamp appends the <timestamp> element: RFC 3339 in UTC with
// uppercase T and Z (RFC 3863 4.1.7), fractional seconds only when ts has
// them, trailing zeros dropped.
func appendTimestamp(dst []byte, ts time.Time) []byte {
	dst = append(dst, "    <timestamp>"...)
	dst = ts.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, "</timestamp>\n"...)
}

// appendNCNameTail appends id so that it can follow a name-start character
// in an xs:ID (an NCName, RFC 3863 4.4): ASCII letters, digits, "-" and "."
// are copied, every other byte becomes "_" and two hex digits. The mapping
// is one-to-one ("_" itself is encoded), so distinct contact IDs keep
// distinct tuple IDs, which xs:ID requires.
func appendNCNameTail(dst []byte, id string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.':
			dst = append(dst, c)
		default:
			dst = append(dst, '_', hex[c>>4], hex[c&0xF])
		}
	}
	return dst
}
