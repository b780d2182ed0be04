package asterisk

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
)

// dynamicSeparator splits a dynamic contact id "<aor>;@<md5 of the URI>"
// (docs/stores.md#asterisk). Static contacts from pjsip.conf use "@@" and are never
// stored.
const dynamicSeparator = ";@"

// fields are the sorcery contact fields regbridge reads, as text: AstDB
// JSON members and ps_contacts columns carry the same names.
type fields struct {
	uri, userAgent, callID, path string
	// expires is expiration_time in Unix seconds; expiresOK is false when
	// the stored value is no integer.
	expires   int64
	expiresOK bool
}

// errBadRow marks a row that cannot be reported; the wrapped text says why.
var errBadRow = errors.New("bad contact row")

func badRow(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRow}, args...)...)
}

// decodeContact turns one stored contact into c. id is the sorcery object
// id, the binding's key; domain completes the AOR (an Asterisk AOR is an
// object name such as "1001", not a SIP URI).
//
// Asterisk keeps no CSeq, so CSeq is 0. call_id is the Call-ID of the
// REGISTER that created the binding (refreshes do not rewrite it); with an
// unchanged Call-ID and CSeq a later expiry reads as a refresh and an
// earlier one as shortened, which for Asterisk can only be a phone that
// re-registered asking for less time. expiration_time 0 never comes from
// Asterisk (it always stores now + granted expires); like every regbridge
// source it is read as permanent.
func decodeContact(id string, f *fields, domain string, c *source.Contact) error {
	aor, ok := aorName(id)
	if !ok {
		return badRow("id %q is not a dynamic contact id <aor>;@<hash>", truncate(id))
	}
	c.Key = id
	switch {
	case domain == "" || strings.IndexByte(aor, '@') >= 0:
		c.AOR = "sip:" + aor
	default:
		c.AOR = "sip:" + aor + "@" + domain
	}
	if c.URI = f.uri; !source.ValidURI(c.URI) {
		return badRow("uri is not a sip:, sips: or tel: URI")
	}
	if !f.expiresOK || f.expires < 0 || f.expires > maxUnix {
		return badRow("expiration_time is not Unix seconds")
	}
	if f.expires != 0 {
		c.Expires = time.Unix(f.expires, 0).UTC()
	}
	c.Q = -1 // Asterisk stores no q
	c.CallID = f.callID
	c.UserAgent = f.userAgent
	c.Path = f.path
	return nil
}

// aorName returns the AOR part of a dynamic contact id.
func aorName(id string) (string, bool) {
	i := strings.Index(id, dynamicSeparator)
	if i <= 0 || i+len(dynamicSeparator) == len(id) || !source.Printable(id) {
		return "", false
	}
	return id[:i], true
}

// maxUnix is 9999-12-31T23:59:59Z: later is garbage, not an expiry.
const maxUnix = 253402300799

// validDomain is what a configured AOR domain must look like.
func validDomain(d string) bool {
	return d == "" || (source.Printable(d) && strings.IndexByte(d, '@') < 0)
}

// truncate bounds untrusted text quoted in errors and logs.
func truncate(s string) string {
	const maxLen = 128
	if len(s) > maxLen {
		return strings.ToValidUTF8(s[:maxLen], "?")
	}
	return strings.ToValidUTF8(s, "?")
}
