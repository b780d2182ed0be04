package notifier

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
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
		if local, ok := n.localRoutes.local(source); ok {
			host = local
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

// routeCache remembers, per subscriber address, the local address the
// kernel routes to it from, for listeners on a wildcard address (the
// container default). Asking costs a socket, a connect, a getsockname and
// a close; a burst of SUBSCRIBEs from one network asks once a minute.
type routeCache struct {
	mu   sync.Mutex
	m    map[netip.Addr]routeEntry
	dial func(source string) (string, error) // nil: dialRoute
}

type routeEntry struct {
	host string
	at   time.Time
}

const (
	routeCacheMax = 4096        // entries; the cache starts over when full
	routeTTL      = time.Minute // routes change rarely; interfaces may
)

// local returns the local address that routes to source (host:port).
func (c *routeCache) local(source string) (string, bool) {
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		return "", false
	}
	ip, now := ap.Addr().Unmap(), time.Now()
	c.mu.Lock()
	e, ok := c.m[ip]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < routeTTL {
		return e.host, true
	}
	dial := c.dial
	if dial == nil {
		dial = dialRoute
	}
	host, err := dial(source)
	if err != nil {
		return "", false
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= routeCacheMax {
		c.m = make(map[netip.Addr]routeEntry)
	}
	c.m[ip] = routeEntry{host, now}
	c.mu.Unlock()
	return host, true
}

// dialRoute asks the kernel: a UDP "connect" sends nothing, it only picks
// the route and so the local address.
func dialRoute(source string) (string, error) {
	c, err := net.Dial("udp", source)
	if err != nil {
		return "", err
	}
	defer c.Close()
	host, _, err := net.SplitHostPort(c.LocalAddr().String())
	return host, err
}
