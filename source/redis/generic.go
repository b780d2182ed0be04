package redis

import (
	"strconv"

	"github.com/regbridge/regbridge/source"
)

// DefaultPrefix is the generic layout's default key prefix.
const DefaultPrefix = "reg:contact:"

// Field names of the generic layout: one hash per binding, key
// "<prefix><binding key>". docs/stores.md#the-generic-layout documents them
// for people writing a registrar; keep the two in step.
const (
	fieldAOR       = "aor"        // required: sip:, sips: or tel: URI
	fieldURI       = "uri"        // required: the contact URI
	fieldExpires   = "expires"    // required: Unix seconds, 0 = permanent
	fieldCallID    = "callid"     // Call-ID of the last REGISTER
	fieldCSeq      = "cseq"       // CSeq number of the last REGISTER
	fieldQ         = "q"          // 0 to 1; absent or -1 = unspecified
	fieldUserAgent = "user_agent" // User-Agent of the last REGISTER
	fieldInstance  = "instance"   // +sip.instance without quotes
	fieldRegID     = "reg_id"     // RFC 5626 reg-id, 0 = none
	fieldReceived  = "received"   // source address the registrar saw
	fieldPath      = "path"       // Path header value(s)
	fieldSocket    = "socket"     // registrar socket, e.g. udp:192.0.2.1:5060
	fieldModified  = "modified"   // Unix seconds of the last write
	fieldAdmin     = "admin"      // true/1: made by an operator, not a REGISTER
)

// decodeGeneric turns one hash of the generic layout into c. key is the
// part of the Redis key after the prefix. On error c is left partly
// written and must be discarded.
func decodeGeneric(key string, fields map[string]string, c *source.Contact) error {
	if key == "" || !source.Printable(key) {
		return badEntry("key is empty or not printable")
	}
	c.Key = key
	if c.AOR = fields[fieldAOR]; !source.ValidURI(c.AOR) {
		return badEntry("aor is not a sip:, sips: or tel: URI")
	}
	if c.URI = fields[fieldURI]; !source.ValidURI(c.URI) {
		return badEntry("uri is not a sip:, sips: or tel: URI")
	}
	sec, ok := epochValue(fields[fieldExpires])
	if !ok {
		return badEntry("expires is not Unix seconds")
	}
	c.Expires = unixTime(sec)
	if m := fields[fieldModified]; m != "" {
		if sec, ok = epochValue(m); !ok {
			return badEntry("modified is not Unix seconds")
		}
		c.Modified = unixTime(sec)
	}
	if c.Q, ok = qValue(fields[fieldQ]); !ok {
		return badEntry("q is not -1 or between 0 and 1")
	}
	if c.CSeq, ok = uint32Value(fields[fieldCSeq]); !ok {
		return badEntry("cseq is not an integer between 0 and 2^32-1")
	}
	if c.RegID, ok = uint32Value(fields[fieldRegID]); !ok {
		return badEntry("reg_id is not an integer between 0 and 2^32-1")
	}
	if a := fields[fieldAdmin]; a != "" {
		admin, err := strconv.ParseBool(a)
		if err != nil {
			return badEntry("admin is not a boolean")
		}
		c.Administrative = admin
	}
	c.CallID = fields[fieldCallID]
	c.UserAgent = fields[fieldUserAgent]
	c.Instance = fields[fieldInstance]
	c.Received = fields[fieldReceived]
	c.Path = fields[fieldPath]
	c.Socket = fields[fieldSocket]
	return nil
}
