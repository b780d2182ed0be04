package sqlwatch

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Partial is implemented by the sessions of database servers (MySQL,
// PostgreSQL): they can read parts of the table, and every row they hand
// to Snapshot or Where carries one more Value after the table's columns:
// the hash of its watched columns that the fingerprint sums. Keeping those
// hashes lets the watcher compute the fingerprint of what it believes the
// table holds and compare it with the server's (incremental.go).
type Partial interface {
	// Aggregate is the fingerprint as numbers: rows and hash sum.
	Aggregate(ctx context.Context) (rows, sum int64, err error)
	// Where reads the rows matching cond (from Since or InKeys), with
	// their hashes, calling fn for each; row is valid only during the call.
	Where(ctx context.Context, cond string, fn func(row []Value)) error
	// Keys reads the key of every row (index-only on the key's index).
	Keys(ctx context.Context, fn func(key []byte)) error
	// Since is the condition "col is at or after v minus slack"; ok is
	// false when v's form is not understood (then: full read).
	Since(col string, v *Value, slack time.Duration) (cond string, ok bool)
	// Consistent runs fn in a read-only REPEATABLE READ transaction, so
	// every query fn makes sees one state of the table.
	Consistent(ctx context.Context, fn func() error) error
	// Quote quotes an identifier.
	Quote(id string) string
}

// InKeys is the condition "col is one of keys" for keys that SafeKey
// accepts, as SQL string literals (numeric key columns accept them too).
func InKeys(col string, keys []string) string {
	var b strings.Builder
	b.WriteString(col)
	b.WriteString(" IN (")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		b.WriteString(k)
		b.WriteByte('\'')
	}
	b.WriteByte(')')
	return b.String()
}

// SafeKey reports whether k can go into a query as a literal without any
// escaping in every dialect and sql_mode: registrar keys (Kamailio ruids,
// OpenSIPS contact_ids, Asterisk contact ids) are made of these. Anything
// else makes the watcher read the whole table instead.
func SafeKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("._-@:+;=~!$*", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// wallText reports whether b is a server's DATETIME/TIMESTAMP text
// ("2006-01-02 15:04:05" with optional fraction), safe to quote.
func wallText(b []byte) bool {
	if len(b) < len(time.DateTime) {
		return false
	}
	for i, c := range b {
		switch {
		case i < len(time.DateTime) && time.DateTime[i] >= '0' && time.DateTime[i] <= '9':
			if c < '0' || c > '9' {
				return false
			}
		case i < len(time.DateTime):
			if c != time.DateTime[i] {
				return false
			}
		case i == len(time.DateTime):
			if c != '.' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// intText parses a decimal integer column value (Int, or Text digits).
func intValue(v *Value) (int64, bool) {
	switch v.Kind {
	case Int:
		return v.Int, true
	case Text:
		n, err := strconv.ParseInt(string(v.Bytes), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// sinceCond builds Since for a server: epochs compare as integers,
// wall-clock text through the dialect's timestamp literal (lit).
func sinceCond(col string, v *Value, slack time.Duration, lit func(wall string, slackSec int64) string) (string, bool) {
	sec := int64((slack + time.Second - 1) / time.Second)
	if n, ok := intValue(v); ok {
		return col + " >= " + strconv.FormatInt(n-sec, 10), true
	}
	if v.Kind == Text && wallText(v.Bytes) {
		return col + " >= " + lit(string(v.Bytes), sec), true
	}
	return "", false
}

// laterValue reports whether a is after b for values of one time column:
// integers numerically, wall-clock text lexically (fixed width).
func laterValue(a, b *Value) bool {
	if b.Kind == Null {
		return a.Kind != Null
	}
	if x, ok := intValue(a); ok {
		if y, ok := intValue(b); ok {
			return x > y
		}
	}
	switch {
	case a.Kind == Text && b.Kind == Text:
		return string(a.Bytes) > string(b.Bytes)
	case a.Kind == Float && b.Kind == Float:
		return a.Float > b.Float
	}
	return false
}
