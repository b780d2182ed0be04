package notifier

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/limit"
	"github.com/regbridge/regbridge/notifier/policy"
	"github.com/regbridge/regbridge/substore"
)

// Header values regbridge sends.
const (
	allow = "SUBSCRIBE, NOTIFY, OPTIONS, CANCEL"
	// supported lists the option tags regbridge supports (RFC 3261 20.37):
	// none, so the header is present and empty. An empty Supported says
	// exactly that; a Require naming any tag gets 420.
	supported = ""
	// acceptBodies is the Accept of a 415: the SUBSCRIBE body types
	// regbridge understands, none (an empty Accept means no body,
	// RFC 3261 20.1).
	acceptBodies = ""
)

// onSubscribe handles a SUBSCRIBE over sipgo's transports (RFC 6665
// 4.2.1). Each branch sends its final response before returning: sipgo
// ends the transaction then.
func (n *Notifier) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	tx = n.track(req, tx)
	if res := n.admitRequest(req); res != nil {
		_ = tx.Respond(res)
		return
	}
	n.handleSubscribe(req, tx)
}

// onAdmittedSubscribe handles a UDP SUBSCRIBE that admitRequest let
// through before its transaction was created (udpsrv.go).
func (n *Notifier) onAdmittedSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	n.handleSubscribe(req, n.track(req, tx))
}

// handleSubscribe handles an admitted SUBSCRIBE.
func (n *Notifier) handleSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	src := policy.SourceAddr(req)
	if tags := unsupportedRequire(req); tags != "" {
		n.respond(tx, req, 420, "Bad Extension", sip.NewHeader("Unsupported", tags))
		return
	}
	if unsupportedBody(req) {
		n.respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", acceptBodies))
		return
	}
	event, ok := eventHeader(req)
	var pkg *eventPackage
	if ok {
		pkg = n.packageNamed(eventPackageName(event))
	}
	if pkg == nil {
		n.respond(tx, req, 489, "Bad Event", sip.NewHeader("Allow-Events", n.allowEvents))
		return
	}
	// Authentication and authorization come right after the package is
	// known (RFC 6665 4.2.1.1-4.2.1.3), before anything that would let a
	// stranger probe further. A refresh is bound to a dialog that was
	// admitted already (its To tag is ours and unguessable).
	var adm admission
	if to := req.To(); to != nil && !to.Params.Has("tag") {
		var ok bool
		if adm, ok = n.admitSubscriber(context.Background(), req, tx, src, subscribedAOR(req)); !ok {
			return
		}
	}
	if !accepts(req, pkg.contentType) {
		n.respond(tx, req, 406, "Not Acceptable", sip.NewHeader("Accept", pkg.contentType))
		return
	}
	expires, ok := requestedExpires(req, pkg.defExpires)
	if !ok {
		n.respond(tx, req, 400, "Bad Expires")
		return
	}
	// RFC 6665 4.2.1.1: 423 only when 0 < Expires < 3600 and below the
	// minimum; a request of an hour or more is always acceptable.
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
		n.refresh(req, tx, pkg, event, expires)
		return
	}
	n.subscribe(req, tx, pkg, event, expires, adm)
}

// subscribe creates a subscription from an initial SUBSCRIBE.
func (n *Notifier) subscribe(req *sip.Request, tx sip.ServerTransaction, pkg *eventPackage, event string, expires time.Duration, adm admission) {
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
	if !n.regs.Ready() {
		// Until the first snapshot is loaded a full document would claim
		// contacts are missing that are not.
		n.respond(tx, req, 503, "Registrations Not Loaded Yet", sip.NewHeader("Retry-After", "1"))
		return
	}
	aor := subscribedAOR(req)
	var lease *limit.Lease
	if expires > 0 { // a fetch holds no place under the caps
		var ok bool
		if lease, ok = n.acquire(req, tx, adm, aor); !ok {
			return
		}
	}
	d := dialog{
		callID:     req.CallID().Value(),
		remoteTag:  fromTag,
		localURI:   req.To().Address.String(),
		remoteURI:  req.From().Address.String(),
		remoteName: req.From().DisplayName,
		target:     *contact.Address.Clone(),
		remoteCSeq: req.CSeq().SeqNo,
		localCSeq:  rand.Uint32N(1 << 16), // any start below 2^31 (RFC 3261 8.1.1.5)
		transport:  sip.NetworkToUpper(req.Transport()),
		source:     req.Source(),
	}
	d.routes = newRouteSet(req)
	if via := req.Via(); via != nil && via.Params != nil && !sip.IsReliable(d.transport) {
		d.symmetric = via.Params.Has("rport")
	}
	d.contact = n.contactFor(d.transport, d.source, secureRequest(req))

	canonical := bridge.CanonicalAOR(aor)
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if n.parts != nil {
		res.To().Params.Add("tag", n.parts.DialogTag(canonical))
	}
	d.localTag, _ = res.To().Params.Get("tag")
	n.decorate(res, d.contact, expires)
	// Under partitions owned elsewhere the subscription is stored and
	// answered here, and the owner sends its NOTIFYs, the fetch's too.
	elsewhere := n.elsewhere(canonical)

	s := &subscription{
		id:        dialogID(d.callID, d.localTag, d.remoteTag),
		aor:       aor,
		canonical: canonical,
		regID:     bridge.RegistrationID(aor),
		pkg:       pkg,
		event:     event,
		basic:     !pkg.presence && n.cfg.BasicEvents.matchRequest(req),
		d:         d,
		expiresAt: time.Now().Add(expires),
		full:      true,
		inFlight:  true, // claimed: the first NOTIFY is queued below
	}
	if expires == 0 {
		// A fetch: one NOTIFY with full state ends it (RFC 6665 4.4.3).
		s.final = &ending{reason: ReasonTimeout}
	} else {
		s.timer = time.AfterFunc(expires, func() { n.end(s, ending{reason: ReasonTimeout}) })
	}
	if n.store != nil && (expires > 0 || elsewhere) {
		if adm.neutral {
			n.neutral.Store(s.id, struct{}{})
		}
		s.stored = true
		if err := n.save(n.recordOf(s), true); err != nil {
			n.log.Warn("storing subscription failed", "aor", aor, "call_id", d.callID, "err", err)
			n.neutral.Delete(s.id)
			if s.timer != nil {
				s.timer.Stop()
			}
			lease.Release()
			n.respond(tx, req, 503, "Subscription Store Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
	}
	hook(&n.hooks.beforeAdd)
	// Known before answered: a refresh or an unsubscribe sent the moment
	// the 200 arrives finds the subscription. The first NOTIFY is queued
	// only after the 200 (s is claimed meanwhile, so changes coalesce).
	n.leases.hold(s.id, lease)
	if adm.neutral {
		n.neutral.Store(s.id, struct{}{})
	}
	if !n.add(s) {
		// Shutdown has taken the list of subscriptions to end: this one
		// would get no final NOTIFY.
		n.remove(s)
		n.respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
		return
	}
	n.watchStarted(s, adm.identity)
	n.obs.SubscribeAnswered(200)
	if err := tx.Respond(res); err != nil {
		// The subscriber never got its 200: forget the subscription here
		// and in the store, so that no instance NOTIFYs it.
		n.log.Info("sending 200 to SUBSCRIBE failed", "aor", aor, "call_id", d.callID, "err", err)
		n.remove(s)
		return
	}
	hook(&n.hooks.answered)
	// Checked again: when this instance started serving the partition
	// meanwhile, its inbox poll may already have met this save while s
	// was here, and left it to s (Continue keeps what it knows).
	if elsewhere && n.elsewhere(canonical) {
		n.drop(s) // the partition's owner sends the first NOTIFY
	} else {
		n.enqueue(s)
	}
	n.log.Debug("subscribed", "aor", aor, "call_id", d.callID, "event", pkg.name,
		"subscriber", d.remoteURI, "transport", d.transport, "expires", int(expires/time.Second))
}

// refresh handles an in-dialog SUBSCRIBE: a refresh or an unsubscribe.
func (n *Notifier) refresh(req *sip.Request, tx sip.ServerTransaction, pkg *eventPackage, event string, expires time.Duration) {
	toTag, _ := req.To().Params.Get("tag")
	fromTag, _ := req.From().Params.Get("tag")
	s := n.lookup(dialogID(req.CallID().Value(), toTag, fromTag))
	if n.store != nil {
		var err error
		s, err = n.takeOver(dialogID(req.CallID().Value(), toTag, fromTag), s)
		if errors.Is(err, errClosed) {
			n.respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		if err != nil && s == nil {
			n.log.Warn("loading subscription failed", "call_id", req.CallID().Value(), "err", err)
			n.respond(tx, req, 503, "Subscription Store Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
	}
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
	if s.pkg != pkg || eventKey(event) != eventKey(s.event) {
		// Another package or id on this dialog would be a second
		// subscription sharing it (RFC 6665 4.5.2).
		s.mu.Unlock()
		n.respond(tx, req, 403, "Dialog Sharing Not Supported")
		return
	}
	seq := req.CSeq().SeqNo
	if seq <= s.d.remoteCSeq {
		s.mu.Unlock()
		n.respond(tx, req, 500, "CSeq Out Of Order")
		return
	}
	s.d.remoteCSeq = seq
	if c := req.Contact(); c != nil && c.Address.Host != "" {
		s.d.target = *c.Address.Clone() // target refresh
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	n.decorate(res, s.d.contact, expires)
	if expires == 0 {
		s.final = &ending{reason: ReasonTimeout}
		s.expiresAt = time.Now()
		s.timer.Stop()
	} else {
		s.expiresAt = time.Now().Add(expires)
		s.timer.Reset(expires)
		s.full = true // RFC 6665 4.2.1.2: a NOTIFY with full state follows
	}
	claimed := s.claim()
	// Owned elsewhere: the owner learns of the refresh or unsubscribe
	// from the record, and sends the NOTIFY it calls for.
	elsewhere := s.stored && n.elsewhere(s.canonical)
	var rec *substore.Record
	if s.stored && (expires > 0 || elsewhere) {
		rec = n.recordOf(s)
	}
	s.mu.Unlock()
	if rec != nil {
		if err := n.save(rec, false); err != nil {
			n.log.Info("storing refreshed subscription failed", "aor", s.aor, "call_id", rec.CallID, "err", err)
			if elsewhere {
				// The owner would never learn of it: the subscriber
				// tries again (RFC 6665 4.1.2.2 lets it).
				n.drop(s)
				n.respond(tx, req, 503, "Subscription Store Unavailable", sip.NewHeader("Retry-After", "5"))
				return
			}
		}
	}
	if expires > 0 {
		n.watchRefreshed(s)
	}
	n.obs.SubscribeAnswered(200)
	if err := tx.Respond(res); err != nil {
		n.log.Info("sending 200 to refresh failed", "aor", s.aor, "call_id", s.d.callID, "err", err)
	}
	switch {
	case elsewhere && n.elsewhere(s.canonical): // checked again, as for a new subscription
		n.drop(s)
	case claimed:
		n.enqueue(s)
	}
}

// onOptions answers capability queries (RFC 3261 11.2, RFC 6665 4.4.4).
// Accept lists the body types regbridge produces for its packages.
func (n *Notifier) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allow))
	res.AppendHeader(sip.NewHeader("Allow-Events", n.allowEvents))
	accept := ""
	for i, p := range n.packages {
		if strings.Contains(accept, p.contentType) {
			continue // reg.winfo and presence.winfo share one type
		}
		if i > 0 {
			accept += ", "
		}
		accept += p.contentType
	}
	res.AppendHeader(sip.NewHeader("Accept", accept))
	res.AppendHeader(sip.NewHeader("Supported", supported))
	_ = tx.Respond(res)
}

// onNoRoute answers methods regbridge does not handle: 405 with the
// Allow header RFC 3261 21.4.6 requires (sipgo's default omits it).
func (n *Notifier) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return // an ACK is never answered
	}
	res := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
	res.AppendHeader(sip.NewHeader("Allow", allow))
	_ = tx.Respond(res)
}

// decorate adds the headers every 2xx to SUBSCRIBE carries (RFC 3261
// 12.1.1, RFC 6665 3.1.1 and 4.4.4).
func (n *Notifier) decorate(res *sip.Response, contact string, expires time.Duration) {
	res.AppendHeader(sip.NewHeader("Contact", contact))
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	res.AppendHeader(sip.NewHeader("Allow-Events", n.allowEvents))
	res.AppendHeader(sip.NewHeader("Allow", allow))
	res.AppendHeader(sip.NewHeader("Supported", supported))
}

// dialogID keys subscriptions by the dialog's three identifiers.
func dialogID(callID, localTag, remoteTag string) string {
	return callID + "\x00" + localTag + "\x00" + remoteTag
}

// subscribedAOR is the resource a SUBSCRIBE asks for: its Request-URI
// without parameters. sips: asks for TLS on every hop, not for another
// resource: the registrar binds the same AOR (RFC 5630 3.1.2), and stores
// hold it as sip:.
func subscribedAOR(req *sip.Request) string {
	aor := req.Recipient.Addr()
	if rest, ok := strings.CutPrefix(aor, "sips:"); ok {
		aor = "sip:" + rest
	}
	return aor
}
