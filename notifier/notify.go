package notifier

import (
	"net"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// buildNotify builds the NOTIFY of job j (RFC 6665 3.2, RFC 3261 12.2.1.1):
// within the dialog, to the remote target through the route set, with the
// subscription's Event and its current Subscription-State.
func (n *Notifier) buildNotify(j *job, body []byte) *sip.Request {
	d := &j.d
	req := sip.NewRequest(sip.NOTIFY, d.target)
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
	for _, r := range d.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	req.AppendHeader(sip.NewHeader("Contact", d.contact))
	req.AppendHeader(sip.NewHeader("Event", j.event))
	req.AppendHeader(sip.NewHeader("Subscription-State", subscriptionState(j)))
	req.AppendHeader(sip.NewHeader("Content-Type", ContentTypeReginfo))
	req.SetBody(body)

	req.SetTransport(d.transport)
	if len(d.routes) == 0 && (sip.IsReliable(d.transport) || d.symmetric) {
		// Reuse the subscriber's flow: its TCP connection, or the source
		// address and port of a UDP subscriber behind NAT (RFC 3581).
		req.SetDestination(d.source)
	}
	if !sip.IsReliable(d.transport) {
		n.setUDPSource(req)
	}
	return req
}

// subscriptionState renders the Subscription-State header (RFC 6665 4.1.3).
func subscriptionState(j *job) string {
	if j.final != nil {
		return "terminated;reason=" + string(*j.final)
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
