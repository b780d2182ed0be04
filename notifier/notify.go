package notifier

import (
	"net"
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

// buildNotify builds the NOTIFY of job j (RFC 6665 3.2, RFC 3261 12.2.1.1):
// within the dialog, to the remote target through the route set, with the
// subscription's Event and its current Subscription-State.
func (n *Notifier) buildNotify(j *job, body []byte) *sip.Request {
	d := &j.d
	target := d.target
	var routes []string
	if d.routes != nil {
		routes = d.routes.values
	}
	strict := len(routes) > 0 && d.routes.strict
	if strict {
		// RFC 3261 12.2.1.1: the first route becomes the Request-URI
		// (without parameters a Request-URI may not carry), the rest
		// stay Route headers, and the remote target is the last Route.
		target = *d.routes.first.Clone()
		target.Headers = nil
		if target.UriParams != nil {
			target.UriParams.Remove("method")
		}
		routes = routes[1:]
	}
	req := sip.NewRequest(sip.NOTIFY, target)
	from := &sip.FromHeader{Address: d.localURI, Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{DisplayName: d.remoteName, Address: d.remoteURI, Params: sip.NewParams()}
	to.Params.Add("tag", d.remoteTag)
	callID := sip.CallIDHeader(d.callID)
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.localCSeq, MethodName: sip.NOTIFY})
	req.AppendHeader(&maxFwd)
	for _, r := range routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	if strict {
		req.AppendHeader(sip.NewHeader("Route", "<"+d.target.String()+">"))
	}
	req.AppendHeader(sip.NewHeader("Contact", d.contact))
	req.AppendHeader(sip.NewHeader("Event", j.event))
	req.AppendHeader(sip.NewHeader("Subscription-State", subscriptionState(j)))
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", j.contentType))
	}
	req.SetBody(body)

	switch {
	case d.routes != nil && len(d.routes.values) > 0:
		// The next hop is the first route (RFC 3261 12.2.1.1), over the
		// transport it names, else SIPS means TLS, else the transport
		// the SUBSCRIBE came on.
		first := &d.routes.first
		req.SetTransport(routeTransport(first, d.transport))
		req.SetDestination(hostPort(first, req.Transport()))
	case sip.IsReliable(d.transport) || d.symmetric:
		// Reuse the subscriber's flow: its TCP, TLS or WebSocket
		// connection, or the source address and port of a UDP subscriber
		// behind NAT (RFC 3581).
		req.SetTransport(d.transport)
		req.SetDestination(d.source)
	default:
		req.SetTransport(d.transport)
	}
	if !sip.IsReliable(req.Transport()) {
		n.setUDPSource(req)
	}
	return req
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

// subscriptionState renders the Subscription-State header (RFC 6665 4.1.3).
func subscriptionState(j *job) string {
	if j.final != nil {
		v := "terminated;reason=" + string(j.final.reason)
		if j.final.retryAfter > 0 && j.final.reason.retryAfterMeaningful() {
			v += ";retry-after=" + strconv.FormatUint(uint64(j.final.retryAfter), 10)
		}
		return v
	}
	return "active;expires=" + strconv.FormatUint(uint64(j.remain), 10)
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
