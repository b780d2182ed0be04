package redis

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The checks below are the same rules source/kamailio applies to its rows
// (its helpers are unexported). They belong in package source, shared by
// every adapter; until they move there, keep the two copies in step.

// errBadEntry marks an entry that cannot be reported; the wrapped text
// says why.
var errBadEntry = errors.New("bad contact entry")

func badEntry(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadEntry}, args...)...)
}

// qValue decodes a q-value written as decimal text ("1.000000" from
// db_redis): -1 is "not specified", otherwise it must lie in [0, 1]. An
// absent or empty value is unspecified.
func qValue(s string) (float32, bool) {
	if s == "" {
		return -1, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	if f == -1 || (f >= 0 && f <= 1) {
		return float32(f), true
	}
	return 0, false
}

// uint32Value decodes a decimal cseq or reg_id; empty is 0 (absent).
// db_redis pads some integer types with leading zeros, which ParseUint
// accepts.
func uint32Value(s string) (uint32, bool) {
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}

// Range of instants time.Time formats as a four-digit year; anything
// outside is garbage, not a registration time.
const (
	minUnix = -62135596800 // 0001-01-01T00:00:00Z
	maxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

// epochValue decodes decimal Unix seconds (digits only: no sign, no
// fraction), within years 1970 to 9999.
func epochValue(s string) (int64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > maxUnix {
		return 0, false
	}
	return v, true
}

// abs returns |d|, saturating at the largest Duration.
func abs[T ~int64](d T) T {
	if d < 0 {
		if d == math.MinInt64 {
			return math.MaxInt64
		}
		return -d
	}
	return d
}
