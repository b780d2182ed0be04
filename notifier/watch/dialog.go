package watch

import (
	"net"
	"slices"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// dialog is the subscriber's half of one SUBSCRIBE dialog (RFC 3261 12,
// RFC 6665 4.1.2): the first 2xx to the SUBSCRIBE or the first NOTIFY,
// whichever is processed first, fixes the remote tag and the route set;
// later NOTIFYs from another tag (a fork) are refused (RFC 3680 4.9).
type dialog struct {
	callID    string
	localTag  string
	localCSeq uint32

	established bool
	remoteTag   string
	// remoteCSeq is the highest NOTIFY CSeq seen (valid when haveRemote).
	remoteCSeq uint32
	haveRemote bool
	// target is the notifier's Contact (remote target); nil until known.
	target *sip.Uri
	// routes is the route set in the order Route headers are sent.
	routes []sip.Uri
}

func newDialog() dialog {
	return dialog{
		callID:   sip.GenerateTagN(24),
		localTag: sip.GenerateTagN(16),
		// RFC 3261 8.1.1.5: any value below 2**31 works; start low so
		// in-dialog increments never overflow.
		localCSeq: 0,
	}
}

// matchNotify checks an incoming NOTIFY against the dialog and, when it
// belongs to it, records what it establishes or refreshes. It returns the
// status code to answer with when the NOTIFY must be refused.
func (d *dialog) matchNotify(req *sip.Request) (code int, reason string) {
	callID := req.CallID()
	to, from := req.To(), req.From()
	if callID == nil || string(*callID) != d.callID || to == nil || from == nil {
		return 481, "Subscription Does Not Exist"
	}
	if tag, _ := to.Params.Get("tag"); tag != d.localTag {
		return 481, "Subscription Does Not Exist"
	}
	fromTag, _ := from.Params.Get("tag")
	if fromTag == "" || (d.established && fromTag != d.remoteTag) {
		return 481, "Subscription Does Not Exist"
	}
	cseq := req.CSeq()
	if cseq == nil {
		return 400, "Missing CSeq"
	}
	if d.haveRemote && cseq.SeqNo < d.remoteCSeq {
		// RFC 3261 12.2.2: out of order.
		return 500, "Out Of Order"
	}
	if !d.established {
		// The NOTIFY creates the dialog (RFC 6665 4.1.2.4): as the UAS of
		// it we keep its Record-Route in order.
		d.established = true
		d.remoteTag = fromTag
		d.routes = recordRoutes(req.GetHeaders("Record-Route"))
	}
	d.remoteCSeq, d.haveRemote = cseq.SeqNo, true
	if c := req.Contact(); c != nil {
		d.target = c.Address.Clone()
	}
	return 0, ""
}

// confirm records a 2xx answer to one of our SUBSCRIBEs.
func (d *dialog) confirm(res *sip.Response) {
	to := res.To()
	if to == nil {
		return
	}
	tag, _ := to.Params.Get("tag")
	if !d.established {
		d.established = true
		d.remoteTag = tag
		// As the UAC, the route set is the Record-Route reversed (RFC 3261
		// 12.1.2).
		d.routes = recordRoutes(res.GetHeaders("Record-Route"))
		slices.Reverse(d.routes)
	} else if tag != d.remoteTag {
		return
	}
	if c := res.Contact(); c != nil {
		d.target = c.Address.Clone()
	}
}

func recordRoutes(hs []sip.Header) []sip.Uri {
	var out []sip.Uri
	for _, h := range hs {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			out = append(out, *rr.Address.Clone())
			continue
		}
		var u sip.Uri
		if _, err := sip.ParseAddressValue(h.Value(), &u, nil); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// subscribeParams is what a SUBSCRIBE of the dialog is built from; taken
// under the dialog lock so the request can be built and sent without it.
type subscribeParams struct {
	callID, localTag, remoteTag string
	cseq                        uint32
	target                      *sip.Uri
	routes                      []sip.Uri
}

// next reserves the next local CSeq and returns the parameters of the next
// SUBSCRIBE of this dialog.
func (d *dialog) next() subscribeParams {
	d.localCSeq++
	p := subscribeParams{
		callID:    d.callID,
		localTag:  d.localTag,
		remoteTag: d.remoteTag,
		cseq:      d.localCSeq,
		routes:    slices.Clone(d.routes),
	}
	if d.target != nil {
		p.target = d.target.Clone()
	}
	return p
}

// buildSubscribe builds a SUBSCRIBE for event (reg or a winfo package)
// accepting the body type accept. The
// Request-URI is the AOR for the initial request and the remote target
// inside the dialog; destination, transport, Contact and Via are the
// caller's.
func buildSubscribe(p subscribeParams, aor, from sip.Uri, expires uint32, event, accept string) *sip.Request {
	target := aor
	if p.remoteTag != "" && p.target != nil {
		target = *p.target
	}
	req := sip.NewRequest(sip.SUBSCRIBE, target)

	fromH := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	fromH.Params.Add("tag", p.localTag)
	toH := &sip.ToHeader{Address: aor, Params: sip.NewParams()}
	if p.remoteTag != "" {
		toH.Params.Add("tag", p.remoteTag)
	}
	callID := sip.CallIDHeader(p.callID)
	maxFwd := sip.MaxForwardsHeader(70)
	exp := sip.ExpiresHeader(expires)

	for _, r := range p.routes {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	req.AppendHeader(fromH)
	req.AppendHeader(toH)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.cseq, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&maxFwd)
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Accept", accept))
	req.AppendHeader(&exp)
	req.SetBody(nil)
	return req
}

// routeDestination returns host:port of the first route, or "".
func routeDestination(routes []sip.Uri) string {
	if len(routes) == 0 {
		return ""
	}
	r := routes[0]
	port := r.Port
	if port == 0 {
		port = 5060
	}
	return joinHostPort(r.Host, port)
}

func joinHostPort(host string, port int) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
