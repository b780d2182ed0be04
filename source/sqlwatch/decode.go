package sqlwatch

import (
	"fmt"
	"math"
	"time"
)

// Helpers for Layout.Decode: the column rules SIP registrars' location
// tables share (Kamailio and OpenSIPS usrloc descend from one design).

// TextOrNull returns a string column's bytes; NULL is empty (nullable
// columns). A number in a string column is not text: only a broken tool
// writes one.
func (v *Value) TextOrNull() ([]byte, bool) {
	switch v.Kind {
	case Null:
		return nil, true
	case Text:
		return v.Bytes, true
	}
	return nil, false
}

// StringOrNull is TextOrNull as a string, reusing old when unchanged.
func (v *Value) StringOrNull(old string) (string, bool) {
	switch v.Kind {
	case Null:
		return "", true
	case Text:
		return v.String(old), true
	}
	return "", false
}

// TextField is one nullable text column of a row and the string it is
// decoded into.
type TextField struct {
	Col  int    // position in the row
	Name string // column name, for the error
	Dst  *string
}

// DecodeTexts decodes nullable text columns (NULL reads as "") into their
// strings, in order; the error names the first column that is not text.
func DecodeTexts(row []Value, fields ...TextField) error {
	for _, f := range fields {
		s, ok := row[f.Col].StringOrNull("")
		if !ok {
			return fmt.Errorf("%s is not a string", f.Name)
		}
		*f.Dst = s
	}
	return nil
}

// Uint32 decodes a CSeq or reg-id column; NULL is 0 (absent).
func (v *Value) Uint32() (uint32, bool) {
	if v.Kind == Null {
		return 0, true
	}
	n, ok := v.Int64()
	if !ok || n < 0 || n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// QValue decodes a q column: -1 is "not specified", otherwise q in [0, 1].
// NULL is unspecified too.
func (v *Value) QValue() (float32, bool) {
	if v.Kind == Null {
		return -1, true
	}
	f, ok := v.Float64()
	if ok && (f == -1 || (f >= 0 && f <= 1)) {
		return float32(f), true
	}
	return 0, false
}

// Range of instants time.Time formats as a four-digit year; anything
// outside is garbage, not a registration time.
const (
	MinUnix = -62135596800 // 0001-01-01T00:00:00Z
	MaxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

// Epoch decodes Unix seconds (an integer column, or its text). Epoch 0 is
// the zero Time: a permanent binding's expires in every registrar.
func (v *Value) Epoch() (time.Time, bool) {
	sec, ok := v.Int64()
	if !ok || sec < 0 || sec > MaxUnix {
		return time.Time{}, false
	}
	if sec == 0 {
		return time.Time{}, true
	}
	return time.Unix(sec, 0).UTC(), true
}

// WallInstant is WallClock for a registrar's time column: the instant in
// UTC, epoch 0 (a permanent binding written as local text, such as
// "1970-01-01 01:00:00" in CET) as the zero Time, and only years 1 to 9999.
// Only exactly epoch 0 is permanent, as in the registrars' own checks:
// epoch 10 is Kamailio's "un-registered" marker and must stay in the past.
func (v *Value) WallInstant(loc *time.Location) (time.Time, bool) {
	t, ok := v.WallClock(loc)
	if !ok || t.Unix() < MinUnix || t.Unix() > MaxUnix {
		return time.Time{}, false
	}
	if t.Unix() == 0 && t.Nanosecond() == 0 {
		return time.Time{}, true
	}
	return t.UTC(), true
}

// Intern returns b as a string, reusing old when it holds the same text.
func Intern(b []byte, old string) string {
	if string(b) == old { // compiled without a copy
		return old
	}
	return string(b)
}
