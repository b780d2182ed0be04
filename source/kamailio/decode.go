package kamailio

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Column positions in a row; columns lists their names in the same order.
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

// watchColumns are what usrloc rewrites on every create, refresh or in-place
// contact change (docs/stores.md#how-store-changes-become-events); the change
// check hashes them.
var watchColumns = []string{"ruid", "username", "domain", "contact", "expires", "callid", "cseq", "last_modified"}

// administrativePrefix starts the ruid of bindings added by Kamailio's
// ul.add RPC rather than by a REGISTER.
const administrativePrefix = "ulcx"

// errBadRow marks a row that cannot be reported; the wrapped text says why.
var errBadRow = errors.New("bad location row")

func badRow(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRow}, args...)...)
}

// Years 1 to 9999, the range time.Time formats; anything outside is
// garbage, not a registration time.
const (
	minUnix = sqlwatch.MinUnix
	maxUnix = sqlwatch.MaxUnix
)

// unixEpochJulian is the Julian day number of 1970-01-01T00:00:00Z.
const unixEpochJulian = 2440587.5

// timeCodec is how a time column is stored.
type timeCodec uint8

const (
	// timeSQLite: db_sqlite's REAL Julian day; INTEGER (an integral
	// Julian day kept as such by NUMERIC affinity) or TEXT in UTC from
	// other tools.
	timeSQLite timeCodec = iota
	// timeWall: DATETIME / TIMESTAMP WITHOUT TIME ZONE text, the
	// registrar's wall clock in its own time zone (db_mysql, db_postgres).
	timeWall
	// timeEpoch: BIGINT Unix seconds (usrloc expires_type=1).
	timeEpoch
)

// decodeTime decodes expires or last_modified. Epoch 0 (a permanent
// binding's expires: "1970-01-01 01:00:00" when the registrar runs in CET)
// and NULL become the zero Time. Only exactly epoch 0, as Kamailio's own
// check: epoch 10 is usrloc's "un-registered" marker and must stay in the
// past, and a 1970 wall clock written in another zone is, for Kamailio
// too, a long-expired binding.
func decodeTime(v *sqlwatch.Value, codec timeCodec, loc *time.Location) (time.Time, bool) {
	if v.Kind == sqlwatch.Null {
		return time.Time{}, true
	}
	switch codec {
	case timeWall:
		return v.WallInstant(loc)
	case timeEpoch:
		return v.Epoch()
	}
	switch v.Kind {
	case sqlwatch.Float:
		sec, ok := julianToUnix(v.Float)
		return unixTime(sec), ok
	case sqlwatch.Int:
		sec, ok := exactJulianToUnix(v.Int)
		return unixTime(sec), ok
	case sqlwatch.Text, sqlwatch.Time:
		return v.WallInstant(time.UTC)
	}
	return time.Time{}, false
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
