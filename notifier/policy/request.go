package policy

import (
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// maxAssertedLen bounds the P-Asserted-Identity text looked at; a real
// one is a URI or two.
const maxAssertedLen = 2048

// AssertedIdentity returns the sip: or sips: URI of the request's
// P-Asserted-Identity (RFC 3325 9.1: one or two values, at most one SIP
// URI and one tel URI, possibly in separate headers), as sip:user@host,
// or "" when there is none or it does not parse. Whether to believe it is
// Decide's business (trusted networks only).
func AssertedIdentity(req *sip.Request) string {
	seen := 0
	found := ""
	for _, h := range req.GetHeaders("P-Asserted-Identity") {
		v := h.Value()
		seen += len(v)
		if seen > maxAssertedLen {
			return ""
		}
		for _, part := range splitValues(v) {
			var u sip.Uri
			var params sip.HeaderParams
			if _, err := sip.ParseAddressValue(strings.TrimSpace(part), &u, &params); err != nil {
				return "" // an unreadable assertion asserts nothing
			}
			scheme := strings.ToLower(u.Scheme)
			if scheme != "sip" && scheme != "sips" {
				continue // tel: and others do not name an AOR here
			}
			if found != "" {
				return "" // two SIP identities: RFC 3325 allows one
			}
			if u.User == "" || u.Host == "" {
				return ""
			}
			found = scheme + ":" + u.User + "@" + u.Host
		}
	}
	return found
}

// splitValues splits a header value at commas outside quotes and angle
// brackets.
func splitValues(v string) []string {
	var out []string
	quoted, angle, escaped := false, false, false
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"' && !angle:
			quoted = !quoted
		case quoted:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// SourceAddr returns the address the request came from (its transport
// source, host:port), or the zero Addr.
func SourceAddr(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
