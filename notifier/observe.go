package notifier

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge/vocab"
)

// Observer receives the notifier's measurements, for metrics. Its methods
// are called on the hot path: they must be cheap and never block.
type Observer interface {
	// SubscribeAnswered is called for every final response to SUBSCRIBE.
	SubscribeAnswered(code int)
	// NotifyDone is called when a NOTIFY transaction ends. outcome is
	// "ok", a status code class such as "4xx", "timeout" or "transport";
	// rtt is the transaction time; seenAt is when the source saw the
	// oldest change the document carries (zero for documents not caused
	// by a change).
	NotifyDone(transport, outcome string, rtt time.Duration, seenAt time.Time)
}

// SetObserver installs o; call it before Run. The default observes nothing.
func (n *Notifier) SetObserver(o Observer) { n.obs = o }

type nopObserver struct{}

func (nopObserver) SubscribeAnswered(int)                               {}
func (nopObserver) NotifyDone(string, string, time.Duration, time.Time) {}

// respond tells the observer and sends a final response with extra
// headers. A failure to send is not returned: nothing is left to undo, and
// the subscriber retransmits its request.
func (n *Notifier) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	n.obs.SubscribeAnswered(code) // before: whoever sees the response sees it counted
	_ = tx.Respond(res)
}

// outcome names the result of a NOTIFY transaction for the observer.
func outcome(res *sip.Response, err error) string {
	switch {
	case err == nil && res != nil:
		if res.IsSuccess() {
			return "ok"
		}
		return string(rune('0'+res.StatusCode/100)) + "xx"
	case isTimeout(err):
		return "timeout"
	default:
		return "transport"
	}
}

// Subscriptions lists the live subscriptions, for the admin API, in the
// JSON vocabulary: transport in lower case, the expiry as ExpiresAt (the
// API fills in the seconds left when it answers).
func (n *Notifier) Subscriptions() []vocab.Subscription {
	n.subsMu.RLock()
	all := make([]*subscription, 0, len(n.subs))
	for _, s := range n.subs {
		all = append(all, s)
	}
	n.subsMu.RUnlock()
	out := make([]vocab.Subscription, 0, len(all))
	for _, s := range all {
		s.mu.Lock()
		out = append(out, vocab.Subscription{
			AOR: s.aor, Event: s.event, Subscriber: uriAddr(s.d.remoteURI), Contact: s.d.target.String(),
			Transport: strings.ToLower(s.d.transport), Source: s.d.source, CallID: s.d.callID,
			ExpiresAt: s.expiresAt.UTC(), Version: int64(s.version) - 1,
		})
		s.mu.Unlock()
	}
	return out
}

// uriAddr is the user@host of a URI's text (the URI itself when it does
// not parse).
func uriAddr(uri string) string {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return uri
	}
	return u.Addr()
}
