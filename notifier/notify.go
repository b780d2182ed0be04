package notifier

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// routeSet is the dialog's route set (RFC 3261 12.1.1): the Record-Route
// values of the SUBSCRIBE in order, kept as received (every parameter is
// copied into the Route headers), and the first one parsed, for the next
// hop and loose or strict routing.
type routeSet struct {
	values []string
	first  sip.Uri
	strict bool // the first hop lacks ;lr: an RFC 2543 strict router
}

// newRouteSet reads the Record-Route headers of req, nil when it has none
// (the usual case: the dialog then holds no route set at all); sipgo has
// already split comma-separated values into separate headers.
func newRouteSet(req *sip.Request) *routeSet {
	rs := &routeSet{}
	for _, h := range req.GetHeaders("Record-Route") {
		rs.values = append(rs.values, h.Value())
	}
	if len(rs.values) == 0 {
		return nil
	}
	if rr := req.RecordRoute(); rr != nil {
		rs.first = *rr.Address.Clone()
		rs.strict = rs.first.UriParams == nil || !rs.first.UriParams.Has("lr")
	}
	return rs
}

// hop is where a dialog's NOTIFY goes (RFC 3261 12.2.1.1): its
// Request-URI and Route headers, the transport, and the next hop's
// address when it is known without resolving the Request-URI.
type hop struct {
	ruri      sip.Uri
	routes    []string // Route header values, in order
	last      string   // strict routing: the remote target, the last Route
	transport string
	dest      string // host:port; "" leaves it to sipgo (DNS, RFC 3263)
}

// hopOf works out the hop of dialog d.
func hopOf(d *dialog) hop {
	h := hop{ruri: d.target, transport: d.transport}
	if d.routes != nil && len(d.routes.values) > 0 {
		h.routes = d.routes.values
		first := &d.routes.first
		if d.routes.strict {
			// RFC 3261 12.2.1.1: the first route becomes the Request-URI
			// (without parameters a Request-URI may not carry), the rest
			// stay Route headers, and the remote target is the last Route.
			h.ruri = *first.Clone()
			h.ruri.Headers = nil
			if h.ruri.UriParams != nil {
				h.ruri.UriParams.Remove("method")
			}
			h.routes = h.routes[1:]
			h.last = d.target.String()
		}
		// The next hop is the first route, over the transport it names,
		// else SIPS means TLS, else the transport the SUBSCRIBE came on.
		h.transport = routeTransport(first, d.transport)
		h.dest = hostPort(first, h.transport)
		return h
	}
	switch {
	case sip.IsReliable(d.transport) || d.symmetric:
		// Reuse the subscriber's flow: its TCP, TLS or WebSocket
		// connection, or the source address and port of a UDP subscriber
		// behind NAT (RFC 3581).
		h.dest = d.source
	case d.target.UriParams == nil || !d.target.UriParams.Has("maddr"):
		if _, err := netip.ParseAddr(strings.Trim(d.target.Host, "[]")); err == nil {
			h.dest = hostPort(&d.target, d.transport) // an address: no DNS to do
		}
	}
	return h
}

// via is the top Via of a NOTIFY regbridge sends itself (udptx.go); the
// zero via leaves the Via to sipgo.
type via struct {
	proto  string // UDP, TCP, TLS, WS or WSS
	sentBy string
	branch string // prefix; the id follows in hex
	id     uint64
}

// appendNotify appends the NOTIFY of job j (RFC 6665 3.2, RFC 3261
// 12.2.1.1) to dst as it goes on the wire: within the dialog, to hop h,
// with the subscription's Event and its current Subscription-State, then
// the extra header lines (a digest answer), then body. It is the one place
// a NOTIFY is written; buildNotify parses it for sipgo's transports.
func appendNotify(dst []byte, j *job, h *hop, v via, body []byte, extra ...string) []byte {
	d := &j.d
	w := (*byteWriter)(&dst)
	dst = append(dst, "NOTIFY "...)
	h.ruri.StringWrite(w)
	dst = append(dst, " SIP/2.0\r\n"...)
	if v.sentBy != "" {
		dst = append(dst, "Via: SIP/2.0/"...)
		dst = append(dst, v.proto...)
		dst = append(dst, ' ')
		dst = append(dst, v.sentBy...)
		dst = append(dst, ";rport;branch="...)
		dst = append(dst, v.branch...)
		dst = strconv.AppendUint(dst, v.id, 16)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "From: <"...)
	dst = append(dst, d.localURI...)
	dst = append(dst, ">;tag="...)
	dst = append(dst, d.localTag...)
	dst = append(dst, "\r\nTo: "...)
	if d.remoteName != "" {
		dst = append(dst, '"')
		dst = append(dst, d.remoteName...)
		dst = append(dst, `" `...)
	}
	dst = append(dst, '<')
	dst = append(dst, d.remoteURI...)
	dst = append(dst, ">;tag="...)
	dst = append(dst, d.remoteTag...)
	dst = append(dst, "\r\nCall-ID: "...)
	dst = append(dst, d.callID...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = strconv.AppendUint(dst, uint64(d.localCSeq), 10)
	dst = append(dst, " NOTIFY\r\nMax-Forwards: 70\r\n"...)
	for _, r := range h.routes {
		dst = append(dst, "Route: "...)
		dst = append(dst, r...)
		dst = append(dst, "\r\n"...)
	}
	if h.last != "" {
		dst = append(dst, "Route: <"...)
		dst = append(dst, h.last...)
		dst = append(dst, ">\r\n"...)
	}
	dst = append(dst, "Contact: "...)
	dst = append(dst, d.contact...)
	dst = append(dst, "\r\nEvent: "...)
	dst = append(dst, j.event...)
	dst = append(dst, "\r\nSubscription-State: "...)
	dst = appendSubscriptionState(dst, j)
	if len(body) > 0 {
		dst = append(dst, "\r\nContent-Type: "...)
		dst = append(dst, j.contentType...)
	}
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	for _, x := range extra {
		dst = append(dst, "\r\n"...)
		dst = append(dst, x...)
	}
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}

// buildNotify is the NOTIFY of job j to hop h as a sipgo request, for
// the transports sipgo carries (a new TCP, TLS or WebSocket connection,
// UDP to a name to resolve): appendNotify's wire form parsed, with its transport, next hop
// and, over UDP, our listener as its source. sipgo adds the Via.
func (n *Notifier) buildNotify(j *job, h *hop, body []byte, extra ...string) (*sip.Request, error) {
	if tcp := j.d.transport == "TCP" || j.d.transport == "TLS"; tcp && h.transport == j.d.transport &&
		h.dest == j.d.source && !n.hasConnection(h.transport, h.dest) {
		// The subscriber's connection is gone: it closed it (Kamailio
		// closes idle TCP connections after 120 s by default), or this
		// instance restarted or took the subscription over. Its source
		// port was the client side of that connection, which nothing
		// listens on; a new connection goes to its Contact, the remote
		// target (RFC 3261 12.2.1.1, 18.1.1). A WebSocket client has no
		// reachable Contact (RFC 7118 5.2): its NOTIFY fails as before.
		to := *h
		to.dest = ""
		if _, err := netip.ParseAddr(strings.Trim(j.d.target.Host, "[]")); err == nil {
			to.dest = hostPort(&j.d.target, to.transport) // an address: no DNS to do
		}
		h = &to
	}
	m, err := ownParser.ParseSIP(appendNotify(nil, j, h, via{}, body, extra...))
	if err != nil {
		return nil, fmt.Errorf("building NOTIFY: %w", err)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		return nil, errors.New("building NOTIFY: not a request")
	}
	req.SetTransport(h.transport)
	if h.dest != "" {
		req.SetDestination(h.dest)
	}
	if !sip.IsReliable(req.Transport()) {
		n.setUDPSource(req)
	}
	return req, nil
}

// ownParser parses the NOTIFYs regbridge writes itself: sipgo's default
// parser refuses messages over 64 KB, a limit for what strangers send,
// while a NOTIFY too large for UDP goes over TCP at any size (large.go).
var ownParser = func() *sip.Parser {
	p := sip.NewParser()
	p.MaxMessageLength = math.MaxInt32
	return p
}()

// hasConnection reports whether sipgo holds an open connection of
// transport to addr. A notifier without sipgo (a test's) has no pool to
// ask: it keeps the flow.
func (n *Notifier) hasConnection(transport, addr string) bool {
	if n.ua == nil {
		return true
	}
	c, err := n.ua.TransportLayer().GetConnection(transport, addr)
	return err == nil && c != nil
}

// routeTransport is the transport towards a route URI.
func routeTransport(u *sip.Uri, dflt string) string {
	if u.UriParams != nil {
		if tp, ok := u.UriParams.Get("transport"); ok && tp != "" {
			return sip.NetworkToUpper(strings.ToLower(tp))
		}
	}
	if u.IsEncrypted() {
		if dflt == "WS" || dflt == "WSS" {
			return "WSS"
		}
		return "TLS"
	}
	return dflt
}

// hostPort is the host:port of a URI, with the transport's default port.
func hostPort(u *sip.Uri, transport string) string {
	port := u.Port
	if port == 0 {
		port = int(sip.DefaultPort(transport))
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))
}

// appendSubscriptionState appends the Subscription-State header's value
// (RFC 6665 4.1.3).
func appendSubscriptionState(dst []byte, j *job) []byte {
	if j.final != nil {
		dst = append(dst, "terminated;reason="...)
		dst = append(dst, j.final.reason...)
		if j.final.retryAfter > 0 && j.final.reason.retryAfterMeaningful() {
			dst = append(dst, ";retry-after="...)
			dst = strconv.AppendUint(dst, uint64(j.final.retryAfter), 10)
		}
		return dst
	}
	dst = append(dst, "active;expires="...)
	return strconv.AppendUint(dst, uint64(j.remain), 10)
}

// setUDPSource makes a UDP NOTIFY leave from our listening socket, so the
// subscriber (and any NAT on the way) sees the address it subscribed to.
func (n *Notifier) setUDPSource(req *sip.Request) {
	host, _, err := net.SplitHostPort(req.Destination())
	if err != nil {
		return
	}
	dst := net.ParseIP(host)
	for _, b := range n.bound {
		if b.Network != "udp" {
			continue
		}
		lhost, lport, _ := net.SplitHostPort(b.Addr)
		ip := net.ParseIP(lhost)
		if ip == nil || (dst != nil && (ip.To4() == nil) != (dst.To4() == nil)) {
			continue
		}
		port, _ := strconv.Atoi(lport)
		req.Laddr = sip.Addr{IP: ip, Port: port}
		return
	}
}
