package notifier

import (
	"context"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/policy"
)

// Basic contact events: a per-watcher compatibility setting for reg
// subscribers that understand only part of RFC 3680 section 5.1's contact
// events. Kamailio's pua_reginfo (5.6 and earlier) knows registered,
// created, refreshed, expired, unregistered and terminated; it logs
// "Unknown Event" for shortened, deactivated, probation and rejected and
// skips the contact, so its mirror keeps a binding regbridge ended, or an
// expiry the registrar shortened. Sending those watchers the full set
// would make them diverge silently; an operator who runs such a watcher
// names it instead, and its documents use the nearest event it knows.

// BasicEventWatchers selects the watchers that get basic contact events.
type BasicEventWatchers struct {
	// UserAgents are substrings of the SUBSCRIBE's User-Agent, compared
	// without regard to case.
	UserAgents UserAgents `env:"BASIC_EVENTS_USER_AGENTS" desc:"comma-separated User-Agent substrings (case-insensitive) of reg watchers that understand only registered, created, refreshed, expired and unregistered: they get shortened as refreshed and deactivated, probation and rejected as unregistered (Kamailio pua_reginfo: kamailio)"`
	// Networks are the source networks of such watchers.
	Networks policy.Networks `env:"BASIC_EVENTS_NETWORKS" desc:"comma-separated CIDRs whose reg watchers get basic contact events, as for REGBRIDGE_BASIC_EVENTS_USER_AGENTS"`
}

// UserAgents is a list of lower-case User-Agent substrings.
type UserAgents []string

// EnvDecode parses "kamailio, acme-sbc"; empty entries are dropped.
func (u *UserAgents) EnvDecode(ctx context.Context, val string) error {
	var out UserAgents
	for part := range strings.SplitSeq(val, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, strings.ToLower(part))
		}
	}
	*u = out
	return nil
}

// match reports whether a SUBSCRIBE from src carrying userAgent comes
// from a watcher that gets basic events.
func (w *BasicEventWatchers) match(userAgent string, src netip.Addr) bool {
	if w.Networks.Contains(src) {
		return true
	}
	if len(w.UserAgents) == 0 || userAgent == "" {
		return false
	}
	ua := strings.ToLower(userAgent)
	for _, s := range w.UserAgents {
		if strings.Contains(ua, s) {
			return true
		}
	}
	return false
}

// matchRequest applies match to an initial SUBSCRIBE.
func (w *BasicEventWatchers) matchRequest(req *sip.Request) bool {
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	return w.match(ua, policy.SourceAddr(req))
}
