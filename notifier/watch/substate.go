package watch

import (
	"strconv"
	"strings"
	"time"
)

// Subscription-State values (RFC 6665 section 4.1.3).
const (
	subActive     = "active"
	subPending    = "pending"
	subTerminated = "terminated"
)

// subState is a parsed Subscription-State header value.
type subState struct {
	state  string
	reason string
	// expires and retryAfter are -1 when absent.
	expires    time.Duration
	retryAfter time.Duration
}

// parseSubState parses "active;expires=3600" or
// "terminated;reason=probation;retry-after=60". State and parameter names
// are case-insensitive; unparsable numbers count as absent.
func parseSubState(v string) subState {
	s := subState{expires: -1, retryAfter: -1}
	parts := strings.Split(v, ";")
	s.state = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch name {
		case "reason":
			s.reason = strings.ToLower(val)
		case "expires":
			s.expires = seconds(val)
		case "retry-after":
			s.retryAfter = seconds(val)
		}
	}
	return s
}

func seconds(v string) time.Duration {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return -1
	}
	return time.Duration(n) * time.Second
}

// retryForbidden reports whether a terminated reason tells the subscriber not
// to subscribe again (RFC 6665 section 4.2.2 table;
// docs/sip.md#subscribe-and-notify).
func retryForbidden(reason string) bool {
	switch reason {
	case "noresource", "rejected", "invariant":
		return true
	}
	return false
}
