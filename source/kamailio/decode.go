package kamailio

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/regbridge/regbridge/source"
)

// Column positions in a rawRow; columns lists their names in the same order.
const (
	colID = iota
	colRUID
	colUsername
	colDomain
	colContact
	colReceived
	colPath
	colExpires
	colQ
	colCallID
	colCSeq
	colLastModified
	colUserAgent
	colInstance
	colRegID
	numCols
)

// columns are the location columns read, by name (never SELECT *: the
// table may carry extra columns, and positions are not part of the schema).
var columns = [numCols]string{
	colID:           "id",
	colRUID:         "ruid",
	colUsername:     "username",
	colDomain:       "domain",
	colContact:      "contact",
	colReceived:     "received",
	colPath:         "path",
	colExpires:      "expires",
	colQ:            "q",
	colCallID:       "callid",
	colCSeq:         "cseq",
	colLastModified: "last_modified",
	colUserAgent:    "user_agent",
	colInstance:     "instance",
	colRegID:        "reg_id",
}

// administrativePrefix starts the ruid of bindings added by Kamailio's
// ul.add RPC rather than by a REGISTER.
const administrativePrefix = "ulcx"

// rawRow is one location row as the driver returned it: nil, int64,
// float64, string or []byte per column, whatever the declared type says
// (SQLite stores what it is given).
type rawRow [numCols]any

// selectQuery is the snapshot query for table (a validated identifier).
func selectQuery(table string) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(" FROM ")
	b.WriteString(quoteIdent(table))
	return b.String()
}

// quoteIdent quotes an SQL identifier. The names it gets are fixed column
// names or a table name already checked by validIdent; quoting keeps a
// table named like a keyword working.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// validIdent reports whether s is a plain SQL identifier.
func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// errBadRow marks a row that cannot be reported; the wrapped text says why.
var errBadRow = errors.New("bad location row")

func badRow(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRow}, args...)...)
}

// decodeRow turns r into c. domain is the configured AOR domain for rows
// whose domain column is NULL or empty. On error c is left partly written
// and must be discarded.
func decodeRow(r *rawRow, domain string, c *source.Contact) error {
	var ok bool
	if c.Key, ok = text(r[colRUID]); !ok || c.Key == "" || !printable(c.Key) {
		return badRow("ruid is not a non-empty printable string")
	}
	user, ok := text(r[colUsername])
	if !ok || user == "" || !printable(user) {
		return badRow("username is not a non-empty printable string")
	}
	dom, ok := text(r[colDomain])
	if !ok || !printable(dom) {
		return badRow("domain is not a printable string")
	}
	c.AOR = aor(user, dom, domain)
	if c.URI, ok = text(r[colContact]); !ok || !validURI(c.URI) {
		return badRow("contact is not a sip:, sips: or tel: URI")
	}
	if r[colExpires] == nil {
		return badRow("expires is NULL")
	}
	if c.Expires, ok = storedTime(r[colExpires]); !ok {
		return badRow("expires is not a valid time")
	}
	if c.Modified, ok = storedTime(r[colLastModified]); !ok {
		return badRow("last_modified is not a valid time")
	}
	if c.Q, ok = qValue(r[colQ]); !ok {
		return badRow("q is not -1 or between 0 and 1")
	}
	if c.CSeq, ok = uint32Value(r[colCSeq]); !ok {
		return badRow("cseq is not an integer between 0 and 2^32-1")
	}
	if c.RegID, ok = uint32Value(r[colRegID]); !ok {
		return badRow("reg_id is not an integer between 0 and 2^32-1")
	}
	if c.CallID, ok = text(r[colCallID]); !ok {
		return badRow("callid is not a string")
	}
	if c.UserAgent, ok = text(r[colUserAgent]); !ok {
		return badRow("user_agent is not a string")
	}
	if c.Instance, ok = text(r[colInstance]); !ok {
		return badRow("instance is not a string")
	}
	if c.Received, ok = text(r[colReceived]); !ok {
		return badRow("received is not a string")
	}
	if c.Path, ok = text(r[colPath]); !ok {
		return badRow("path is not a string")
	}
	c.Administrative = strings.HasPrefix(c.Key, administrativePrefix)
	return nil
}

// aor builds the address-of-record. usrloc with use_domain=1 splits the AOR
// at the first '@' into username and domain; with use_domain=0 (default)
// username holds the whole AOR, normally only the user part, and domain is
// NULL, so the configured domain completes it. A username that already
// holds user@host is used as it is.
func aor(user, dom, fallback string) string {
	switch {
	case dom != "":
		return "sip:" + user + "@" + dom
	case fallback == "" || strings.IndexByte(user, '@') >= 0:
		return "sip:" + user
	default:
		return "sip:" + user + "@" + fallback
	}
}

// text returns a string column; NULL is the empty string (nullable
// columns). BLOBs are taken as text: SQLite keeps whatever a tool bound.
func text(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case []byte:
		return string(v), true
	default:
		return "", false
	}
}

// printable reports whether s is valid UTF-8 without whitespace or control
// characters: keys, user names and domains end up in URIs and XML.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// validURI accepts what usrloc stores as a contact: a sip:, sips: or tel:
// URI (scheme case-insensitive) with something after the scheme and no
// whitespace or control characters.
func validURI(s string) bool {
	i := strings.IndexByte(s, ':')
	if i < 0 || i == len(s)-1 {
		return false
	}
	switch strings.ToLower(s[:i]) {
	case "sip", "sips", "tel":
	default:
		return false
	}
	return printable(s)
}

// qValue decodes q: -1 is "not specified", otherwise q/1000 in [0, 1].
// NULL (only possible outside Kamailio's schema) is unspecified too.
func qValue(v any) (float32, bool) {
	var f float64
	switch v := v.(type) {
	case nil:
		return -1, true
	case float64:
		f = v
	case int64:
		f = float64(v)
	default:
		return 0, false
	}
	if f == -1 || (f >= 0 && f <= 1) {
		return float32(f), true
	}
	return 0, false
}

// uint32Value decodes cseq and reg_id; NULL is 0 (absent).
func uint32Value(v any) (uint32, bool) {
	switch v := v.(type) {
	case nil:
		return 0, true
	case int64:
		if v < 0 || v > math.MaxUint32 {
			return 0, false
		}
		return uint32(v), true
	default:
		return 0, false
	}
}

// Range of instants time.Time formats as a four-digit year; anything
// outside is garbage, not a registration time.
const (
	minUnix = -62135596800 // 0001-01-01T00:00:00Z
	maxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

// unixEpochJulian is the Julian day number of 1970-01-01T00:00:00Z.
const unixEpochJulian = 2440587.5

// storedTime decodes expires or last_modified as db_sqlite or another tool
// wrote it: REAL Julian day (db_sqlite's encoding), INTEGER (an integral
// Julian day that NUMERIC affinity stored as an integer) or TEXT in UTC.
// Epoch 0 (permanent for expires) and NULL become the zero Time. A REAL
// written by a tool as a true Julian day (julianday('...')) cannot be told
// from db_sqlite's and may decode one second late; harmless for expiry.
func storedTime(v any) (time.Time, bool) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, true
	case float64:
		sec, ok := julianToUnix(v)
		return unixTime(sec), ok
	case int64:
		sec, ok := exactJulianToUnix(v)
		return unixTime(sec), ok
	case string:
		return parseTextTime(v)
	case []byte:
		return parseTextTime(string(v))
	default:
		return time.Time{}, false
	}
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

// julianToUnix applies db_sqlite's inverse. Kamailio stores
// (t - 0.5)/86400 + 2440587.5, so 86400*(v - 2440587.5) + 0.5 is t plus or
// minus a few microseconds of float error: it must be rounded, truncating
// gives t-1 about half the time.
func julianToUnix(v float64) (int64, bool) {
	x := math.Round(86400*(v-unixEpochJulian) + 0.5)
	if !(x >= minUnix && x <= maxUnix) { // also false for NaN
		return 0, false
	}
	return int64(x), true
}

// exactJulianToUnix decodes an INTEGER Julian day. db_sqlite never
// writes one ((t - 0.5)/86400 + 2440587.5 is never integral for a whole
// second t), so it comes from a tool that stored a true Julian day, such as
// julianday('2024-01-01 12:00:00'), which NUMERIC affinity kept as an
// integer. A true Julian day has no half-second offset: applying
// db_sqlite's +0.5 rule here would land exactly on .5 and round one second
// late.
func exactJulianToUnix(v int64) (int64, bool) {
	const epochSeconds = 210866760000 // 2440587.5 * 86400
	if v < 0 || v > 1e8 {             // far outside years 1..9999; no overflow below
		return 0, false
	}
	sec := v*86400 - epochSeconds
	if sec < minUnix || sec > maxUnix {
		return 0, false
	}
	return sec, true
}

// JulianToTime converts a db_sqlite REAL Julian day to the instant Kamailio
// meant, in UTC, with the rounding rule t = round(86400*(v - 2440587.5) +
// 0.5). Epoch 0 (a permanent binding's expires) gives the zero Time, as do
// NaN, infinities and values outside years 1 to 9999.
func JulianToTime(v float64) time.Time {
	sec, ok := julianToUnix(v)
	if !ok {
		return time.Time{}
	}
	return unixTime(sec)
}

// TimeToJulian converts t (whole seconds) to the REAL Julian day db_sqlite
// writes: (t - 0.5)/86400 + 2440587.5. The zero Time gives the value of
// epoch 0, which is how Kamailio stores a permanent binding.
func TimeToJulian(t time.Time) float64 {
	var sec int64
	if !t.IsZero() {
		sec = t.Unix()
	}
	return (float64(sec)-0.5)/86400 + unixEpochJulian
}

// textTimeLayouts are the TEXT forms accepted, all read as UTC: what
// Kamailio's schema defaults and tools like kamctl or the sqlite3 shell
// write. time.Parse accepts fractional seconds after the seconds field even
// though the layouts do not show them.
var textTimeLayouts = [...]string{
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
}

func parseTextTime(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02 15:04:05") {
		return time.Time{}, false
	}
	layout := textTimeLayouts[0]
	if s[10] == 'T' {
		layout = textTimeLayouts[1]
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	if t.Unix() == 0 && t.Nanosecond() == 0 {
		return time.Time{}, true
	}
	return t, true
}

// rowKey names a row in the bad-row log: its ruid when it has a usable
// one (truncated, the log dedup set must stay small), else its id.
func rowKey(r *rawRow) string {
	if k, ok := r[colRUID].(string); ok && k != "" {
		const maxKeyLen = 128
		if len(k) > maxKeyLen {
			k = k[:maxKeyLen]
		}
		return k
	}
	switch id := r[colID].(type) {
	case int64:
		return "id:" + strconv.FormatInt(id, 10)
	default:
		return fmt.Sprintf("id:%v", id)
	}
}
