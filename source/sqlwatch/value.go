package sqlwatch

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/regbridge/regbridge/source"
)

// Kind says which field of a Value holds the column.
type Kind uint8

// Value kinds. PostgreSQL (simple protocol) returns every column as Text;
// MySQL returns strings, dates and decimals as Text and parses integers and
// floats; SQLite returns its storage class.
const (
	Null  Kind = iota
	Int        // Int (SQLite INTEGER)
	Float      // Float (SQLite REAL)
	Text       // Bytes (TEXT and BLOB; every column of a server store)
	Time       // Time, a wall clock read as UTC (modernc.org/sqlite parses TEXT in DATETIME columns)
)

// Value is one column of one row as the driver returned it, without a
// copy: Bytes points into the driver's buffer and is valid only until the
// next row. Decoders keep what they need with String.
type Value struct {
	Kind  Kind
	Int   int64
	Float float64
	Bytes []byte
	Time  time.Time
	// str is set when the driver handed over a Go string (SQLite TEXT):
	// String returns it instead of copying Bytes.
	str string
}

// Scan implements sql.Scanner, which database/sql calls with the driver's
// value itself (no conversion, no copy).
func (v *Value) Scan(src any) error {
	switch s := src.(type) {
	case nil:
		*v = Value{}
	case int64:
		*v = Value{Kind: Int, Int: s}
	case float64:
		*v = Value{Kind: Float, Float: s}
	case float32: // go-sql-driver/mysql returns FLOAT columns so
		*v = Value{Kind: Float, Float: float64(s)}
	case uint64: // and large BIGINT UNSIGNED values so
		if s > math.MaxInt64 {
			// Not an error: that would fail the whole snapshot. As a
			// Float it fails Int64, so only this row is skipped.
			*v = Value{Kind: Float, Float: float64(s)}
			break
		}
		*v = Value{Kind: Int, Int: int64(s)}
	case []byte:
		*v = Value{Kind: Text, Bytes: s}
	case string:
		*v = Value{Kind: Text, Bytes: unsafe.Slice(unsafe.StringData(s), len(s)), str: s}
	case bool:
		*v = Value{Kind: Int}
		if s {
			v.Int = 1
		}
	case time.Time:
		*v = Value{Kind: Time, Time: s}
	default:
		return fmt.Errorf("unsupported column type %T", src)
	}
	return nil
}

// SetText makes v a Text value over b (nil: NULL), for drivers that return
// raw text (pgx RawValues).
func (v *Value) SetText(b []byte) {
	if b == nil {
		*v = Value{}
		return
	}
	*v = Value{Kind: Text, Bytes: b}
}

// String returns a Text value as a string; old is returned (no allocation)
// when it already holds the same text, which is the common case when
// decoding a row that did not change since the last snapshot. Other kinds
// give "".
func (v *Value) String(old string) string {
	switch {
	case v.Kind != Text:
		return ""
	case v.str != "":
		return v.str
	case string(v.Bytes) == old: // compiled without a copy
		return old
	default:
		return string(v.Bytes)
	}
}

// AppendText appends the value as text (integers in decimal) to b; used to
// look rows up by key without allocating.
func (v *Value) AppendText(b []byte) []byte {
	switch v.Kind {
	case Text:
		return append(b, v.Bytes...)
	case Int:
		return strconv.AppendInt(b, v.Int, 10)
	case Float:
		return strconv.AppendFloat(b, v.Float, 'g', -1, 64)
	case Time:
		return v.Time.AppendFormat(b, time.DateTime)
	}
	return b
}

// Int64 decodes an integer column: Int, an integral Float, or decimal
// Text. NULL and anything else are not integers.
func (v *Value) Int64() (int64, bool) {
	switch v.Kind {
	case Int:
		return v.Int, true
	case Float:
		if v.Float >= -(1<<63) && v.Float < 1<<63 && v.Float == float64(int64(v.Float)) {
			return int64(v.Float), true
		}
	case Text:
		return parseInt(v.Bytes)
	}
	return 0, false
}

// Float64 decodes a numeric column.
func (v *Value) Float64() (float64, bool) {
	switch v.Kind {
	case Int:
		return float64(v.Int), true
	case Float:
		return v.Float, true
	case Text:
		if len(v.Bytes) == 0 || len(v.Bytes) > 64 {
			return 0, false
		}
		f, err := strconv.ParseFloat(string(v.Bytes), 64)
		return f, err == nil
	}
	return 0, false
}

// parseInt parses an optionally signed decimal without allocating,
// rejecting anything outside int64.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	n, ok := source.ParseUint(b)
	switch {
	case !ok:
		return 0, false
	case neg && n <= 1<<63:
		return -int64(n-1) - 1, true // -2^63 has no positive counterpart
	case !neg && n <= math.MaxInt64:
		return int64(n), true
	}
	return 0, false
}

// WallClock decodes a date-time without zone, as the registrar wrote it in
// its own time zone loc: Text "YYYY-MM-DD HH:MM:SS" (a 'T' instead of the
// space and a fraction of a second are accepted), or a Time whose wall
// clock is taken as it is. Impossible dates (2026-02-30, MySQL's
// 0000-00-00) are rejected rather than normalised. In a daylight-saving
// fall-back hour the wall clock is ambiguous; the instant is one of the
// two, as with the registrar's own mktime.
func (v *Value) WallClock(loc *time.Location) (time.Time, bool) {
	switch v.Kind {
	case Time:
		y, mo, d := v.Time.Date()
		h, mi, s := v.Time.Clock()
		return time.Date(y, mo, d, h, mi, s, v.Time.Nanosecond(), loc), true
	case Text:
		return parseWallClock(v.Bytes, loc)
	}
	return time.Time{}, false
}

func parseWallClock(b []byte, loc *time.Location) (time.Time, bool) {
	// 2006-01-02 15:04:05
	// 0123456789012345678
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || (b[10] != ' ' && b[10] != 'T') ||
		b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		x := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return -1
			}
			x = x*10 + int(c-'0')
		}
		return x
	}
	y, mo, d, h, mi, s := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)
	if y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysIn(time.Month(mo), y) || h < 0 || h > 23 ||
		mi < 0 || mi > 59 || s < 0 || s > 59 {
		return time.Time{}, false
	}
	ns := 0
	if rest := b[19:]; len(rest) > 0 {
		if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
			return time.Time{}, false
		}
		digits := rest[1:]
		for i := range 9 {
			ns *= 10
			if i < len(digits) {
				c := digits[i]
				if c < '0' || c > '9' {
					return time.Time{}, false
				}
				ns += int(c - '0')
			}
		}
	}
	return time.Date(y, time.Month(mo), d, h, mi, s, ns, loc), true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Equal reports whether a Text value's bytes equal s, without allocating.
func (v *Value) Equal(s string) bool {
	return v.Kind == Text && string(v.Bytes) == s // compiled without a copy
}
