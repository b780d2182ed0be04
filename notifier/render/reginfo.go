package render

// Rendering of application/reginfo+xml documents: RFC 3680 section 5
// (document rules 5.1, schema 5.4) with the RFC 5628 gruuinfo extension
// (section 5, schema section 9). Pure functions of their inputs and an
// explicit now; no I/O.

import (
	"math"
	"strconv"
	"time"

	"github.com/regbridge/regbridge/bridge"
)

// ContentTypeReginfo is the media type of reginfo documents (RFC 3680
// section 8.2).
const ContentTypeReginfo = "application/reginfo+xml"

const (
	xmlDecl     = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
	nsReginfo   = "urn:ietf:params:xml:ns:reginfo"
	nsGruuinfo  = "urn:ietf:params:xml:ns:gruuinfo"
	paramInst   = "+sip.instance"
	paramRegID  = "reg-id"
	gruuParamGr = ";gr="
)

// Document is one reginfo document (RFC 3680 section 5).
type Document struct {
	// Version is the subscription's document counter (RFC 3680 5.1): 0 in
	// the first NOTIFY, one more in each later one.
	Version uint32
	// Full selects state="full" (every registration of the subscription)
	// rather than state="partial" (only the registrations that changed).
	Full bool
	// Registrations are rendered in order, one <registration> each. In a
	// partial document each holds only its changed contacts.
	Registrations []bridge.Registration
	// BasicEvents renders each contact event as the nearest one a watcher
	// knowing only the basic events understands (basicEvent; which watchers
	// get them is notifier configuration).
	BasicEvents bool
}

// AppendReginfo appends the application/reginfo+xml document to dst. now is
// used for the expires and duration-registered attributes.
//
// Contact attributes follow RFC 3680 5.1: expires on active, non-permanent
// contacts (it is a MUST for event="shortened", so the bridge must not
// report a permanent binding as shortened) and expires="0" on terminated
// ones (no time left; see appendContact); retry-after on every
// probation contact (MUST); duration-registered when the start of the
// binding is known; q when the store has one; callid and cseq together,
// when the store knows the REGISTER. A contact with a +sip.instance gets it
// and its reg-id as <unknown-param> children and a <gr:pub-gruu> (RFC 5628
// section 5: SHOULD when a public GRUU exists, which for a GRUU-capable
// registrar is whenever there is an instance).
func AppendReginfo(dst []byte, doc Document, now time.Time) []byte {
	dst = append(dst, xmlDecl...)
	dst = append(dst, `<reginfo xmlns="`+nsReginfo+`"`...)
	// The gr prefix is declared only when used, so that documents without
	// GRUUs look like the RFC 3680 examples.
	if hasInstance(doc.Registrations) {
		dst = append(dst, ` xmlns:gr="`+nsGruuinfo+`"`...)
	}
	dst = appendVersionState(dst, doc.Version, doc.Full, len(doc.Registrations) == 0)
	if len(doc.Registrations) == 0 {
		return dst
	}
	for i := range doc.Registrations {
		dst = appendRegistration(dst, &doc.Registrations[i], doc.BasicEvents, now)
	}
	return append(dst, "</reginfo>\n"...)
}

func hasInstance(regs []bridge.Registration) bool {
	for i := range regs {
		for j := range regs[i].Contacts {
			if regs[i].Contacts[j].Instance != "" {
				return true
			}
		}
	}
	return false
}

func appendRegistration(dst []byte, reg *bridge.Registration, basic bool, now time.Time) []byte {
	dst = append(dst, `  <registration aor="`...)
	dst = appendAttr(dst, reg.AOR)
	dst = append(dst, `" id="`...)
	dst = appendAttr(dst, reg.ID)
	dst = append(dst, `" state="`...)
	dst = appendAttr(dst, string(reg.State))
	if len(reg.Contacts) == 0 {
		return append(dst, "\"/>\n"...)
	}
	dst = append(dst, "\">\n"...)
	for i := range reg.Contacts {
		dst = appendContact(dst, reg.AOR, &reg.Contacts[i], basic, now)
	}
	return append(dst, "  </registration>\n"...)
}

func appendContact(dst []byte, aor string, c *bridge.ContactView, basic bool, now time.Time) []byte {
	event := c.Event
	if basic {
		event = basicEvent(event)
	}
	dst = append(dst, `    <contact id="`...)
	dst = appendAttr(dst, c.ID)
	dst = append(dst, `" state="`...)
	dst = appendAttr(dst, string(c.State))
	dst = append(dst, `" event="`...)
	dst = appendAttr(dst, string(event))
	dst = append(dst, '"')
	switch {
	case c.State == bridge.ContactTerminated:
		// A terminated binding has no time left: expires="0". The schema
		// (RFC 3680 5.4) allows it on any contact, and subscribers that
		// mirror reginfo into a location table act on expires, not on
		// state: Kamailio's pua_reginfo skips a contact without it ("No
		// expires for this contact!") and would keep the binding.
		dst = append(dst, ` expires="0"`...)
	case !c.Permanent():
		dst = append(dst, ` expires="`...)
		dst = strconv.AppendUint(dst, wholeSeconds(c.Expires.Sub(now)), 10)
		dst = append(dst, '"')
	}
	if event == bridge.EventProbation {
		dst = append(dst, ` retry-after="`...)
		dst = strconv.AppendUint(dst, uint64(c.RetryAfter), 10)
		dst = append(dst, '"')
	}
	if !c.Since.IsZero() {
		dst = append(dst, ` duration-registered="`...)
		dst = strconv.AppendUint(dst, wholeSeconds(now.Sub(c.Since)), 10)
		dst = append(dst, '"')
	}
	if validQ(c.Q) {
		dst = append(dst, ` q="`...)
		dst = appendQValue(dst, c.Q)
		dst = append(dst, '"')
	}
	if c.CallID != "" {
		dst = append(dst, ` callid="`...)
		dst = appendAttr(dst, c.CallID)
		dst = append(dst, `" cseq="`...)
		dst = strconv.AppendUint(dst, uint64(c.CSeq), 10)
		dst = append(dst, '"')
	}
	dst = append(dst, ">\n      <uri>"...)
	dst = appendText(dst, c.URI)
	dst = append(dst, "</uri>\n"...)
	// Schema order (RFC 3680 5.4): uri, display-name, unknown-param*, then
	// elements of other namespaces such as gr:pub-gruu.
	if c.Instance != "" {
		// The Contact header carries the instance as a quoted string; RFC
		// 3680 5.1 puts the parameter value into unknown-param as it
		// appears in the header, quotes included (as in RFC 5628 section 7).
		dst = append(dst, `      <unknown-param name="`+paramInst+`">"`...)
		dst = appendText(dst, c.Instance)
		dst = append(dst, "\"</unknown-param>\n"...)
	}
	if c.RegID > 0 {
		dst = append(dst, `      <unknown-param name="`+paramRegID+`">`...)
		dst = strconv.AppendUint(dst, uint64(c.RegID), 10)
		dst = append(dst, "</unknown-param>\n"...)
	}
	if c.Instance != "" {
		dst = append(dst, `      <gr:pub-gruu uri="`...)
		dst = appendAttr(dst, aor)
		dst = append(dst, gruuParamGr...)
		dst = appendGrValue(dst, c.Instance)
		dst = append(dst, "\"/>\n"...)
	}
	return append(dst, "    </contact>\n"...)
}

// wholeSeconds is d in whole seconds, rounded down, and 0 when d is
// negative (a binding already past its expiry, a clock step backwards).
func wholeSeconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Second)
}

// validQ reports whether q is a q-value worth rendering: source.Contact uses
// -1 for "unspecified", and NaN or infinity from a broken row mean nothing.
func validQ(q float32) bool {
	return q >= 0 && !math.IsInf(float64(q), 1)
}

// appendQValue appends q (>= 0) rounded to three decimals with trailing
// zeros dropped: "1", "0.5", "0.125". That is the RFC 3261 qvalue form for
// 0 <= q <= 1 and so also a valid PIDF priority (RFC 3863 4.1.5).
func appendQValue(dst []byte, q float32) []byte {
	milli := math.Round(float64(q) * 1000)
	if milli >= 1<<53 {
		// Far outside any q-value; still render the number the store has.
		return strconv.AppendFloat(dst, float64(q), 'f', -1, 32)
	}
	m := uint64(milli)
	dst = strconv.AppendUint(dst, m/1000, 10)
	frac := m % 1000
	if frac == 0 {
		return dst
	}
	dst = append(dst, '.', byte('0'+frac/100))
	if frac%100 != 0 {
		dst = append(dst, byte('0'+frac/10%10))
		if frac%10 != 0 {
			dst = append(dst, byte('0'+frac%10))
		}
	}
	return dst
}

// appendGrValue appends the gr parameter value of a public GRUU: the
// instance ID without its enclosing angle brackets, as Kamailio builds it
// ("<urn:uuid:X>" gives gr=urn:uuid:X). Bytes that are not SIP paramchars
// (RFC 3261 section 25.1) are percent-encoded, so a hostile instance cannot
// end the parameter, add parameters or make the URI invalid; a real
// instance ID (a urn:uuid or urn:gsma:imei URN) is copied unchanged. "[" and
// "]" are paramchars in SIP but not allowed in an RFC 3986 path, which
// xs:anyURI validators check, so they are encoded too (an escaped character
// is equivalent to itself in SIP URI comparison).
func appendGrValue(dst []byte, instance string) []byte {
	if len(instance) >= 2 && instance[0] == '<' && instance[len(instance)-1] == '>' {
		instance = instance[1 : len(instance)-1]
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(instance); i++ {
		c := instance[i]
		if grSafe(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&0xF])
	}
	return dst
}

// grSafe reports whether c may appear unescaped in the gr value: RFC 3261
// unreserved and param-unreserved characters except "[" and "]", and
// except "&" and "'", which are percent-encoded as well so that the value
// never needs XML escaping.
func grSafe(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '!', '~', '*', '(', ')', // mark, less "'"
		'/', ':', '+', '$': // param-unreserved, less "[", "]", "&"
		return true
	}
	return false
}

// basicEvent is the event a watcher that knows only the basic contact
// events (Document.BasicEvents) gets for ev: the one it knows
// that leaves its copy of the binding in the same state. A shortened
// binding is still active with a new expiry (as after a refresh); one
// ended by the registrar or an operator is gone (as after an
// un-REGISTER).
func basicEvent(ev bridge.Event) bridge.Event {
	switch ev {
	case bridge.EventShortened:
		return bridge.EventRefreshed
	case bridge.EventDeactivated, bridge.EventProbation, bridge.EventRejected:
		return bridge.EventUnregistered
	}
	return ev
}
