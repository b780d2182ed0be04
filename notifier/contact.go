package notifier

import (
	"net"
	"strings"
)

// contactFor returns our Contact header value for a subscriber reached
// over transport (UDP, TCP, TLS, WS, WSS) from source: the listener of
// that transport, with the address that routes to the subscriber when the
// listener is a wildcard.
//
// The URI names the transport: sip: for UDP, ;transport=tcp, and for TLS
// sips: when the SUBSCRIBE asked for SIPS (RFC 3261 12.1.1 requires it
// then) or sip:...;transport=tls otherwise. WebSocket uses transport=ws
// for both WS and WSS (RFC 7118 5.2); over WSS the scheme is sips, since
// a plain sip: URI with transport=ws would name the unencrypted variant.
func (n *Notifier) contactFor(transport, source string, secure bool) string {
	network := strings.ToLower(transport)
	srcHost, _, _ := net.SplitHostPort(source)
	srcIP := net.ParseIP(srcHost)
	var pick string
	for _, b := range n.bound {
		if b.Network != network {
			continue
		}
		host, _, _ := net.SplitHostPort(b.Addr)
		ip := net.ParseIP(host)
		if pick == "" || (ip != nil && srcIP != nil && (ip.To4() == nil) == (srcIP.To4() == nil)) {
			pick = b.Addr
		}
	}
	host, port, _ := net.SplitHostPort(pick)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && srcIP != nil {
		// A UDP "connect" sends nothing; it only asks the kernel which
		// local address routes to the subscriber.
		if c, err := net.Dial("udp", source); err == nil {
			host, _, _ = net.SplitHostPort(c.LocalAddr().String())
			c.Close()
		}
	}
	hostport := net.JoinHostPort(host, port)
	var uri string
	switch network {
	case "udp":
		uri = "sip:regbridge@" + hostport
	case "tls":
		if secure {
			uri = "sips:regbridge@" + hostport
		} else {
			uri = "sip:regbridge@" + hostport + ";transport=tls"
		}
	case "ws":
		uri = "sip:regbridge@" + hostport + ";transport=ws"
	case "wss":
		uri = "sips:regbridge@" + hostport + ";transport=ws"
	default:
		uri = "sip:regbridge@" + hostport + ";transport=" + network
	}
	return "<" + uri + ">"
}
