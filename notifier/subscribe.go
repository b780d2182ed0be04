package notifier

import (
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
)

// Package names and header values regbridge serves.
const (
	eventReg    = "reg"
	allowEvents = "reg"
	allow       = "SUBSCRIBE, NOTIFY, OPTIONS"
)

// onSubscribe handles every SUBSCRIBE (RFC 6665 4.2.1). Each branch sends
// its final response before returning: sipgo ends the transaction then.
func (n *Notifier) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	if n.closed.Load() {
		n.respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
		return
	}
	event, ok := eventHeader(req)
	if !ok || eventPackage(event) != eventReg {
		n.respond(tx, req, 489, "Bad Event", sip.NewHeader("Allow-Events", allowEvents))
		return
	}
	if !acceptsReginfo(req) {
		n.respond(tx, req, 406, "Not Acceptable", sip.NewHeader("Accept", ContentTypeReginfo))
		return
	}
	expires, ok := n.requestedExpires(req)
	if !ok {
		n.respond(tx, req, 400, "Bad Expires")
		return
	}
	if expires > 0 && expires < n.cfg.MinExpires && expires < time.Hour {
		n.respond(tx, req, 423, "Interval Too Brief",
			sip.NewHeader("Min-Expires", strconv.Itoa(int(n.cfg.MinExpires/time.Second))))
		return
	}
	expires = min(expires, n.cfg.MaxExpires)
	if req.To() == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil {
		n.respond(tx, req, 400, "Missing Mandatory Header")
		return
	}
	if _, ok := req.To().Params.Get("tag"); ok {
		n.refresh(req, tx, event, expires)
		return
	}
	n.subscribe(req, tx, event, expires)
}

// subscribe creates a subscription from an initial SUBSCRIBE.
func (n *Notifier) subscribe(req *sip.Request, tx sip.ServerTransaction, event string, expires time.Duration) {
	contact := req.Contact()
	if contact == nil || contact.Address.Host == "" {
		n.respond(tx, req, 400, "Missing Contact")
		return
	}
	fromTag, _ := req.From().Params.Get("tag")
	if fromTag == "" {
		n.respond(tx, req, 400, "Missing From Tag")
		return
	}
	if !n.states.Ready() {
		// Until the first snapshot is loaded a full document would claim
		// contacts are missing that are not.
		n.respond(tx, req, 503, "Registrations Not Loaded Yet", sip.NewHeader("Retry-After", "1"))
		return
	}
	aor := req.Recipient.Addr()
	d := dialog{
		callID:     req.CallID().Value(),
		remoteTag:  fromTag,
		localURI:   *req.To().Address.Clone(),
		remoteURI:  *req.From().Address.Clone(),
		remoteName: req.From().DisplayName,
		target:     *contact.Address.Clone(),
		remoteCSeq: req.CSeq().SeqNo,
		localCSeq:  rand.Uint32N(1 << 16), // any start below 2^31 (RFC 3261 8.1.1.5)
		transport:  req.Transport(),
		source:     req.Source(),
	}
	for _, rr := range req.GetHeaders("Record-Route") {
		d.routes = append(d.routes, rr.Value())
	}
	if via := req.Via(); via != nil && via.Params != nil && sip.IsReliable(d.transport) == false {
		d.symmetric = via.Params.Has("rport")
	}
	d.contact = n.contactFor(d.transport, d.source)

	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	d.localTag, _ = res.To().Params.Get("tag")
	n.decorate(res, d.contact, expires)

	canonical := bridge.CanonicalAOR(aor)
	s := &subscription{
		id:        dialogID(d.callID, d.localTag, d.remoteTag),
		aor:       aor,
		canonical: canonical,
		regID:     bridge.RegistrationID(aor),
		event:     event,
		d:         d,
		expiresAt: time.Now().Add(expires),
		full:      true,
		inFlight:  true, // claimed: the first NOTIFY is queued below
	}
	if expires == 0 {
		// A fetch: one NOTIFY with full state ends it (RFC 6665 4.4.3).
		reason := ReasonTimeout
		s.final = &reason
	} else {
		s.timer = time.AfterFunc(expires, func() { n.end(s, ReasonTimeout) })
	}
	n.obs.SubscribeAnswered(200)
	if err := tx.Respond(res); err != nil {
		n.log.Info("sending 200 to SUBSCRIBE failed", "aor", aor, "call_id", d.callID, "err", err)
		if s.timer != nil {
			s.timer.Stop()
		}
		return
	}
	n.add(s)
	n.enqueue(s)
	n.log.Debug("subscribed", "aor", aor, "call_id", d.callID, "subscriber", d.remoteURI.Addr(), "expires", int(expires/time.Second))
}

// refresh handles an in-dialog SUBSCRIBE: a refresh or an unsubscribe.
func (n *Notifier) refresh(req *sip.Request, tx sip.ServerTransaction, event string, expires time.Duration) {
	toTag, _ := req.To().Params.Get("tag")
	fromTag, _ := req.From().Params.Get("tag")
	s := n.lookup(dialogID(req.CallID().Value(), toTag, fromTag))
	if s == nil {
		n.respond(tx, req, 481, "Subscription Does Not Exist")
		return
	}
	s.mu.Lock()
	if s.done || s.final != nil {
		s.mu.Unlock()
		n.respond(tx, req, 481, "Subscription Does Not Exist")
		return
	}
	if event != s.event {
		s.mu.Unlock()
		n.respond(tx, req, 403, "Dialog Sharing Not Supported")
		return
	}
	if seq := req.CSeq().SeqNo; seq <= s.d.remoteCSeq {
		s.mu.Unlock()
		n.respond(tx, req, 500, "CSeq Out Of Order")
		return
	} else {
		s.d.remoteCSeq = seq
	}
	if c := req.Contact(); c != nil && c.Address.Host != "" {
		s.d.target = *c.Address.Clone() // target refresh
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	n.decorate(res, s.d.contact, expires)
	var claimed bool
	if expires == 0 {
		reason := ReasonTimeout
		s.final = &reason
		s.timer.Stop()
	} else {
		s.expiresAt = time.Now().Add(expires)
		s.timer.Reset(expires)
		s.full = true // RFC 6665 4.2.1.2: a NOTIFY with full state follows
	}
	claimed = s.claim()
	s.mu.Unlock()
	n.obs.SubscribeAnswered(200)
	if err := tx.Respond(res); err != nil {
		n.log.Info("sending 200 to refresh failed", "aor", s.aor, "call_id", s.d.callID, "err", err)
	}
	if claimed {
		n.enqueue(s)
	}
}

// onOptions answers capability queries (RFC 3261 11.2, RFC 6665 4.4.4).
func (n *Notifier) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allow))
	res.AppendHeader(sip.NewHeader("Allow-Events", allowEvents))
	res.AppendHeader(sip.NewHeader("Accept", ContentTypeReginfo))
	_ = tx.Respond(res)
}

// decorate adds the headers every 2xx to SUBSCRIBE carries.
func (n *Notifier) decorate(res *sip.Response, contact string, expires time.Duration) {
	res.AppendHeader(sip.NewHeader("Contact", contact))
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	res.AppendHeader(sip.NewHeader("Allow-Events", allowEvents))
	res.AppendHeader(sip.NewHeader("Allow", allow))
}

// eventHeader returns the single Event header's value (long or compact
// form). Two or more Event headers are an error (RFC 6665 8.2.1).
func eventHeader(req *sip.Request) (string, bool) {
	hs := req.GetHeaders("Event")
	hs = append(hs, req.GetHeaders("o")...)
	if len(hs) != 1 {
		return "", false
	}
	v := strings.TrimSpace(hs[0].Value())
	if strings.ContainsRune(v, ',') {
		return "", false // one event type only
	}
	return v, v != ""
}

// eventPackage returns the package name of an Event value: the token
// before any parameter, compared byte by byte (RFC 6665 8.2.1).
func eventPackage(v string) string {
	name, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(name)
}

// acceptsReginfo reports whether the SUBSCRIBE's Accept headers allow
// application/reginfo+xml; no Accept means they do (RFC 3680 4.5).
func acceptsReginfo(req *sip.Request) bool {
	hs := req.GetHeaders("Accept")
	if len(hs) == 0 {
		return true
	}
	for _, h := range hs {
		for item := range strings.SplitSeq(h.Value(), ",") {
			mt, _, _ := strings.Cut(item, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case ContentTypeReginfo, "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// requestedExpires reads Expires; absent means the package default.
func (n *Notifier) requestedExpires(req *sip.Request) (time.Duration, bool) {
	h := req.GetHeader("Expires")
	if h == nil {
		return DefaultExpires, true
	}
	v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(v) * time.Second, true
}

// contactFor returns our Contact header value for a subscriber reached
// over transport from source: the listener of that transport, with the
// address that routes to the subscriber when the listener is a wildcard.
func (n *Notifier) contactFor(transport, source string) string {
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
	uri := "sip:regbridge@" + net.JoinHostPort(host, port)
	if network != "udp" {
		uri += ";transport=" + network
	}
	return "<" + uri + ">"
}

// dialogID keys subscriptions by the dialog's three identifiers.
func dialogID(callID, localTag, remoteTag string) string {
	return callID + "\x00" + localTag + "\x00" + remoteTag
}
