package vocab

import "strings"

// ContactTransport is the transport a binding was registered over, lower
// case as in the metrics: the protocol of the registrar's socket when the
// store has it ("tcp:192.0.2.1:5060"), else the transport parameter of the
// received address or of the contact URI, else the URI scheme's default
// (RFC 3261 18.1: tls for sips:, udp for sip:).
func ContactTransport(socket, received, uri string) string {
	if proto, _, ok := strings.Cut(socket, ":"); ok && proto != "" {
		return strings.ToLower(proto)
	}
	for _, u := range [...]string{received, uri} {
		if t := uriParam(u, "transport"); t != "" {
			return strings.ToLower(t)
		}
	}
	if len(uri) >= 5 && strings.EqualFold(uri[:5], "sips:") {
		return "tls"
	}
	if uri == "" {
		return ""
	}
	return "udp"
}

// uriParam returns the value of a SIP URI parameter (before any headers
// part), or "".
func uriParam(uri, name string) string {
	uri, _, _ = strings.Cut(uri, "?")
	uri = strings.Trim(uri, "<>")
	params := strings.Split(uri, ";")
	for _, p := range params[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Trim(strings.TrimSpace(v), ">")
		}
	}
	return ""
}
