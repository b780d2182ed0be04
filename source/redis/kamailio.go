package redis

import (
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
)

// kamailioEntryType is db_redis's key type for one row: the usual keys
// modparam is "location=entry:ruid&...", so a binding lives in the hash
// "<version:><table>:entry::<ruid>".
const kamailioEntryType = ":entry::"

// administrativePrefix starts the ruid of bindings added by Kamailio's
// ul.add RPC rather than by a REGISTER.
const administrativePrefix = "ulcx"

// kamailioTimeLayout is how db_redis writes a time column: strftime
// "%Y-%m-%d %H:%M:%S" of localtime_r, i.e. in the registrar's time zone.
const kamailioTimeLayout = "2006-01-02 15:04:05"

// kamailioPrefix is the key prefix of table's entry hashes. table is the
// name as written in the keys modparam, which may carry db_redis's version
// code ("v2:location"): Kamailio prepends it, colon included, to every key.
func kamailioPrefix(table string) string { return table + kamailioEntryType }

// decodeKamailio turns one db_redis entry hash into c. key is the part of
// the Redis key after the entry prefix (the ruid); fields is HGETALL's
// answer. Every value is text; a NULL usrloc sent is an empty string and a
// column usrloc left out is absent, so both mean "no value"
// (docs/stores.md#kamailios-db_redis-layout).
// loc is the registrar's time zone, domain the AOR domain for use_domain=0.
// On error c is left partly written and must be discarded.
func decodeKamailio(key string, fields map[string]string, loc *time.Location, domain string, c *source.Contact) error {
	if key == "" || !source.Printable(key) {
		return badEntry("key has no printable ruid")
	}
	c.Key = key
	user := fields["username"]
	if user == "" || !source.Printable(user) {
		return badEntry("username is not a non-empty printable string")
	}
	dom := fields["domain"]
	if !source.Printable(dom) {
		return badEntry("domain is not a printable string")
	}
	c.AOR = string(source.AppendAOR(nil, user, dom, domain))
	if c.URI = fields["contact"]; !source.ValidURI(c.URI) {
		return badEntry("contact is not a sip:, sips: or tel: URI")
	}
	exp, ok := fields["expires"]
	if !ok || exp == "" {
		return badEntry("expires is missing")
	}
	if c.Expires, ok = kamailioTime(exp, loc); !ok {
		return badEntry("expires is not a valid time")
	}
	if c.Modified, ok = kamailioTime(fields["last_modified"], loc); !ok {
		return badEntry("last_modified is not a valid time")
	}
	if c.Q, ok = qValue(fields["q"]); !ok {
		return badEntry("q is not -1 or between 0 and 1")
	}
	if c.CSeq, ok = uint32Value(fields["cseq"]); !ok {
		return badEntry("cseq is not an integer between 0 and 2^32-1")
	}
	if c.RegID, ok = uint32Value(fields["reg_id"]); !ok {
		return badEntry("reg_id is not an integer between 0 and 2^32-1")
	}
	c.CallID = fields["callid"]
	c.UserAgent = fields["user_agent"]
	c.Instance = fields["instance"]
	c.Received = fields["received"]
	c.Path = fields["path"]
	c.Socket = fields["socket"]
	ruid := fields["ruid"]
	if ruid == "" {
		ruid = key
	}
	c.Administrative = strings.HasPrefix(ruid, administrativePrefix)
	return nil
}

// kamailioTime decodes a time column. db_redis writes local wall-clock
// text in the registrar's zone; with usrloc expires_type=1 (the admin
// changed the schema file's time columns to int) it is decimal epoch
// seconds instead. Epoch 0, Kamailio's "permanent", and the empty string
// (no value) give the zero Time. A wall-clock time inside a DST fall-back
// hour is ambiguous; Kamailio's own mktime guesses too, so a contact
// expiring in that hour may be off by an hour (docs/stores.md#time-encoding).
func kamailioTime(s string, loc *time.Location) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	if sec, ok := epochValue(s); ok {
		return unixTime(sec), true
	}
	if len(s) < len(kamailioTimeLayout) {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(kamailioTimeLayout, s, loc)
	if err != nil {
		return time.Time{}, false
	}
	if u := t.Unix(); u == 0 && t.Nanosecond() == 0 {
		return time.Time{}, true
	} else if u < minUnix || u > maxUnix {
		return time.Time{}, false
	}
	return t.UTC(), true
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
